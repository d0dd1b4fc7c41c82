"""/proc/PID/maps parsing against live processes."""

from __future__ import annotations

import mmap
import os
import sys

import pytest

from damond.errors import DamonError
from damond.platform.maps import Vma, read_maps

PAGE = mmap.PAGESIZE


def _pid_max_plus_one() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1


def test_child_buffer_is_one_private_rw_vma(spawn):
    child = spawn(64)
    vmas = read_maps(child.pid)
    covering = [v for v in vmas if v.start <= child.addr < v.end]
    assert len(covering) == 1
    vma = covering[0]
    assert isinstance(vma, Vma)
    assert vma.end >= child.end
    assert vma.perms == "rw-p" and vma.writable and vma.readable and not vma.shared
    assert vma.path == "" and vma.inode == 0
    starts = [v.start for v in vmas]
    assert starts == sorted(starts)
    assert all(v.start < v.end and v.size == v.end - v.start for v in vmas)


def test_self_maps_name_the_interpreter_and_stack():
    vmas = read_maps("self")
    paths = {v.path for v in vmas}
    assert "[stack]" in paths
    assert any(p.startswith("/") and "python" in p for p in paths), sys.executable


def test_file_path_with_spaces_and_offset(tmp_path):
    path = tmp_path / "a file with  spaces"
    path.write_bytes(b"x" * 4 * PAGE)
    with open(path, "r+b") as f:
        m = mmap.mmap(f.fileno(), 2 * PAGE, offset=2 * PAGE)
    try:
        hits = [v for v in read_maps("self") if v.path == str(path)]
        assert len(hits) == 1
        assert hits[0].offset == 2 * PAGE
        assert hits[0].size == 2 * PAGE
        assert hits[0].perms[3] == "s" and hits[0].inode == path.stat().st_ino
    finally:
        m.close()


def test_missing_process_is_esrch():
    with pytest.raises(DamonError) as info:
        read_maps(_pid_max_plus_one())
    assert info.value.errno_name == "ESRCH"


def test_exited_process_is_esrch(spawn):
    child = spawn(1)
    pid = child.pid
    child.exit()
    with pytest.raises(DamonError) as info:
        read_maps(pid)
    assert info.value.errno_name == "ESRCH"


def test_proc_dirfd_paths_follow_the_original_process(spawn):
    child = spawn(4)
    fd = os.open(f"/proc/{child.pid}", os.O_RDONLY | os.O_DIRECTORY)
    try:
        via_fd = read_maps(f"self/fd/{fd}")
        assert via_fd == read_maps(child.pid)
        child.exit()
        with pytest.raises(DamonError) as info:
            read_maps(f"self/fd/{fd}")
        assert info.value.errno_name == "ESRCH"
    finally:
        os.close(fd)
