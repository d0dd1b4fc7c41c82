"""Mounting a :class:`FuseTree`, serving it in the current trio loop, and unmounting.

pyfuse3 keeps one FUSE session per process (module state), so a process serves one mount;
``damond exec`` serves both the sysfs and the debugfs files from one mount of the whole tree
and binds its two directories into place.
"""

from __future__ import annotations

import os

import pyfuse3
import structlog
import trio

from damond.interfaces.fuse.backend import Backend
from damond.interfaces.fuse.mounts import FS_SUBTYPE, clear_stale, is_mounted
from damond.interfaces.fuse.tree import FuseTree
from damond.interfaces.vfs import DEBUGFS_DAMON

log = structlog.get_logger("damond.fuse")

#: the directory of the backend a mount shows by default: the one /sys/kernel/mm/damon is
SYSFS_DAMON = "/sys/kernel/mm/damon"
#: the kernel's debugfs directory (``damond mount --debugfs``)
DEBUGFS_ROOT = DEBUGFS_DAMON
#: concurrent requests served: writes are serialized by the backend anyway, reads are cheap
MAX_TASKS = 16


def mount_options() -> set[str]:
    """``default_permissions``: the kernel checks modes and owners, as for sysfs. Root's
    mount is ``allow_other`` (everybody may look, as at /sys); a user's mount is theirs."""
    options = {"default_permissions", f"fsname={FS_SUBTYPE}", f"subtype={FS_SUBTYPE}",
               "noatime"}
    if os.geteuid() == 0:
        options.add("allow_other")
    return options


def default_owner() -> tuple[int, int]:
    """Who the files belong to: root, as on sysfs, when root mounts; the mounting user
    otherwise (``default_permissions`` would lock them out of root's 0600 files)."""
    return os.geteuid(), os.getegid()


async def serve_fuse(backend: Backend, mountpoint: str, root: str = SYSFS_DAMON, *,
                     task_status: trio.TaskStatus[FuseTree] = trio.TASK_STATUS_IGNORED,
                     ) -> None:
    """Mount ``root`` of ``backend`` at ``mountpoint`` and serve it until it is unmounted
    (``umount``, ``fusermount3 -u``: then this returns) or this task is cancelled (then it
    unmounts). A dead damond mount left at ``mountpoint`` by a killed server is detached
    first; anything else mounted there makes the mount fail (OSError/RuntimeError)."""
    mountpoint = os.path.realpath(mountpoint)
    if clear_stale(mountpoint):
        log.warning("detached a stale damond mount", mountpoint=mountpoint)
    tree = FuseTree(backend, root, owner=default_owner())
    pyfuse3.init(tree, mountpoint, mount_options())
    log.info("damond files mounted", mountpoint=mountpoint, root=root)
    try:
        task_status.started(tree)
        await pyfuse3.main(max_tasks=MAX_TASKS)
    finally:
        # unmounted from outside: only release the session; else unmount ourselves
        still = _mounted(mountpoint)
        pyfuse3.close(unmount=still)
        log.info("damond files unmounted", mountpoint=mountpoint)


def _mounted(mountpoint: str) -> bool:
    try:
        return is_mounted(mountpoint)
    except OSError:
        return True
