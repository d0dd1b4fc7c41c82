"""clear_refs + smaps Referenced on a live child (the wss.pl method)."""

from __future__ import annotations

import mmap

import pytest

from damond.errors import DamonError
from damond.platform import refs
from damond.platform.maps import read_maps

PAGE = mmap.PAGESIZE


def _buffer_entry(child) -> refs.SmapsEntry:
    return next(e for e in refs.read_smaps(child.pid) if e.start <= child.addr < e.end)


def test_smaps_sizes_of_a_touched_buffer(spawn):
    child = spawn(200)
    e = _buffer_entry(child)
    assert e.size == e.end - e.start >= 200 * PAGE
    assert e.rss == e.anonymous == 200 * PAGE
    assert e.swap == 0 and e.anon_huge_pages == 0 and e.path == ""


def test_referenced_follows_clear_refs_and_touches(spawn, need):
    need("clear_refs")
    child = spawn(200)
    refs.clear_refs(child.pid, refs.CLEAR_REFS_ALL)
    assert _buffer_entry(child).referenced == 0
    child.read(0, 50)
    child.write(100, 130)
    assert _buffer_entry(child).referenced == 80 * PAGE
    refs.clear_refs(child.pid, refs.CLEAR_REFS_ANON)
    assert _buffer_entry(child).referenced == 0


def test_clear_refs_file_only_leaves_anon_referenced(spawn, need):
    need("clear_refs")
    child = spawn(32)
    refs.clear_refs(child.pid, refs.CLEAR_REFS_MAPPED)
    assert _buffer_entry(child).referenced == 32 * PAGE


def test_smaps_rollup_matches_the_per_vma_sum(spawn):
    child = spawn(100)
    refs.clear_refs(child.pid, refs.CLEAR_REFS_ALL)
    child.write(0, 40)
    rollup = refs.read_smaps_rollup(child.pid)
    per_vma = refs.read_smaps(child.pid)
    assert rollup["Rss"] == sum(e.rss for e in per_vma)
    assert rollup["Anonymous"] == sum(e.anonymous for e in per_vma)
    assert rollup["Referenced"] >= 40 * PAGE
    # a file page's PG_referenced is shared with every process using that file (libc, python),
    # so between the two reads only file-backed VMAs may change their Referenced
    file_rss = sum(e.rss for e in per_vma if e.anonymous == 0)
    assert abs(rollup["Referenced"] - sum(e.referenced for e in per_vma)) <= file_rss


def test_smaps_vmas_are_the_maps_vmas(spawn):
    child = spawn(8)
    assert [(e.start, e.end, e.path) for e in refs.read_smaps(child.pid)] == [
        (v.start, v.end, v.path) for v in read_maps(child.pid)
    ]


def test_fast_and_fallback_parsers_agree_on_real_smaps(spawn):
    child = spawn(8)
    with open(f"/proc/{child.pid}/smaps", "rb") as f:
        data = f.read()
    assert refs.parse_smaps(data) == refs._parse_smaps_slow(data)
    # a kernel that prints fields in another order still parses
    shuffled = data.replace(b"\nRss:", b"\nRss_moved_below:")
    parsed = refs.parse_smaps(shuffled)
    assert [e.size for e in parsed] == [e.size for e in refs.parse_smaps(data)]
    assert all(e.rss == 0 for e in parsed)


def test_errors():
    with pytest.raises(DamonError) as info:
        refs.clear_refs("self", 6)
    assert info.value.errno_name == "EINVAL"
    with open("/proc/sys/kernel/pid_max") as f:
        missing = int(f.read()) + 1
    for call in (lambda: refs.clear_refs(missing, 1), lambda: refs.read_smaps(missing),
                 lambda: refs.read_smaps_rollup(missing)):
        with pytest.raises(DamonError) as info:
            call()
        assert info.value.errno_name == "ESRCH"


def test_zombie_smaps_are_empty(spawn):
    import os

    child = spawn(4)
    child.proc.stdin.write("exit\n")
    child.proc.stdin.flush()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert refs.read_smaps(child.pid) == []
    assert read_maps(child.pid) == []
