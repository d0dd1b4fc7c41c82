"""Which file operations of the FUSE tree reach the daemon: the tree's callbacks driven
directly (as pyfuse3 would, without a kernel mount) over the daemon's real files, each backend
call counted. Every round trip costs a caller 0.7 ms on the host and 40-80 ms in the emulated
guest, so one saved per file open is what a tried-regions walk mostly pays."""

from __future__ import annotations

import errno
import os
import time

import pyfuse3
import pytest

from damond.interfaces.fuse.backend import VfsBackend
from damond.interfaces.fuse.session import SYSFS_DAMON
from damond.interfaces.fuse.tree import SEEN_FRESH_S, FuseTree
from damond.ops.registry import OperationsRegistry
from damond.service.daemon import Daemon


class CountingBackend(VfsBackend):
    """The daemon's own files, with every request counted by kind."""

    def __init__(self, vfs) -> None:
        super().__init__(vfs)
        self.calls: list[tuple[str, str]] = []

    async def stat(self, path):
        self.calls.append(("stat", path))
        return await super().stat(path)

    async def read(self, path):
        self.calls.append(("read", path))
        return await super().read(path)


@pytest.fixture
async def tree(nursery):
    d = Daemon(OperationsRegistry(load_entry_points=False), seed=1)
    await nursery.start(d.scheduler.serve)
    await d.vfs.resolve(SYSFS_DAMON + "/admin/kdamonds/nr_kdamonds").node.write("1")
    yield FuseTree(CountingBackend(d.vfs), SYSFS_DAMON)
    await d.stop_all()


async def walk(tree: FuseTree, *names: str) -> int:
    inode = pyfuse3.ROOT_INODE
    for name in names:
        inode = (await tree.lookup(inode, os.fsencode(name))).st_ino
    return inode


async def read_file(tree: FuseTree, inode: int) -> bytes:
    fh = (await tree.open(inode, os.O_RDONLY, None)).fh
    try:
        return await tree.read(fh, 0, 4096)
    finally:
        await tree.release(fh)


async def test_open_of_a_cached_name_under_a_number_asks_the_daemon_nothing(tree):
    """The kernel keeps ``admin``, ``kdamonds`` and ``state`` cached (stable names) and looks
    up only ``0`` again on the next walk; open then trusts what it saw of ``state`` however
    long ago: one round trip for the lookup of ``0``, one for the read."""
    kds = await walk(tree, "admin", "kdamonds")
    state = await walk(tree, "admin", "kdamonds", "0", "state")
    assert await read_file(tree, state) == b"off\n"
    time.sleep(SEEN_FRESH_S + 0.1)
    calls = tree.backend.calls
    del calls[:]
    await tree.lookup(kds, b"0")  # the next walk's only lookup
    assert await read_file(tree, state) == b"off\n"
    assert calls == [("stat", SYSFS_DAMON + "/admin/kdamonds/0"),
                     ("read", SYSFS_DAMON + "/admin/kdamonds/0/state")]


async def test_open_of_a_number_seen_long_ago_asks_again(tree):
    """A numbered directory's files are not stable: past :data:`SEEN_FRESH_S` an open of one
    asks whether it is still there (``kdamonds/0`` removed: ENOENT at open, as on sysfs)."""
    kds = await walk(tree, "admin", "kdamonds")
    zero = await walk(tree, "admin", "kdamonds", "0")
    assert (await tree.getattr(zero)).st_ino == zero
    time.sleep(SEEN_FRESH_S + 0.1)
    await tree.backend.vfs.resolve(SYSFS_DAMON + "/admin/kdamonds/nr_kdamonds").node.write("0")
    with pytest.raises(pyfuse3.FUSEError) as e:
        await tree.open(zero, os.O_RDONLY, None)
    assert e.value.errno == errno.ENOENT
    with pytest.raises(pyfuse3.FUSEError) as e:
        await tree.lookup(kds, b"0")
    assert e.value.errno == errno.ENOENT
