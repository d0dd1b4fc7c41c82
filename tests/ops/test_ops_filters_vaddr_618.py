"""vaddr/fvaddr DAMOS ops filters per page (Linux 6.18 ``damos_va_stat()``,
``damos_va_migrate()``, ``damos_va_filter_out()``), on real processes of this host.

A child process holds an anonymous mapping (6 of its 8 MiB touched, no THP) and a 4 MiB file
mapping it wrote itself (so its page cache is charged to the child's memcg), and optionally a
THP-eligible mapping. The expected numbers come from the mappings' sizes and, for vaddr's
self-chosen regions, from an independent page-by-page count over pagemap and kpageflags.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from damond.core.spec import FilterSpec
from damond.ops import page_walk
from damond.platform.kpageflags import (
    KPF_ANON,
    KPF_HUGE,
    KPF_NOPAGE,
    KPF_ZERO_PAGE,
    folio_size_hint,
    has,
    read_flags,
)
from damond.platform.pagemap import Pagemap, pfn
from damond.platform.pagesize import PAGE_SIZE
from tests.control.conftest import Conn, damond, sockdir, start_damond  # noqa: F401 - fixtures

MiB = 1 << 20
ANON_TOUCHED = 6 * MiB
FILE_SIZE = 4 * MiB

CHILD = r"""
import json, mmap, os, sys, time
MiB = 1 << 20
anon = mmap.mmap(-1, 8 * MiB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
anon.madvise(mmap.MADV_NOHUGEPAGE)
for o in range(0, 6 * MiB, 4096):
    anon[o] = 1
with open(sys.argv[1], "wb") as f:
    f.write(os.urandom(4 * MiB))
fd = os.open(sys.argv[1], os.O_RDONLY)
filem = mmap.mmap(fd, 4 * MiB, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
sum(filem[o] for o in range(0, 4 * MiB, 4096))
import ctypes
a0 = ctypes.addressof(ctypes.c_char.from_buffer(anon))
h0 = 0
if sys.argv[2:] == ["huge"]:
    huge = mmap.mmap(-1, 8 * MiB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        huge.madvise(mmap.MADV_HUGEPAGE)
    for o in range(0, 8 * MiB, 4096):
        huge[o] = 2
    h0 = ctypes.addressof(ctypes.c_char.from_buffer(huge))
f0 = next(int(l.split("-")[0], 16) for l in open("/proc/self/maps")
          if l.rstrip().endswith(sys.argv[1]))
print(json.dumps({"anon": [a0, a0 + 8 * MiB], "file": [f0, f0 + 4 * MiB],
                  "huge": [h0, h0 + 8 * MiB]}), flush=True)
time.sleep(600)
"""

pytestmark = pytest.mark.skipif(page_walk.unavailable() is not None,
                                reason=f"no per-page view here: {page_walk.unavailable()}")


def _start_child(tmp_path, *extra: str):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "data.bin"), *extra],
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        yield proc.pid, info
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def child(tmp_path):
    """The child without THP-eligible memory: every anonymous folio is one page."""
    yield from _start_child(tmp_path)


@pytest.fixture
def huge_child(tmp_path):
    """The child with an 8 MiB MADV_HUGEPAGE mapping ("huge")."""
    yield from _start_child(tmp_path, "huge")


def _memcg_path(pid: int) -> str:
    """The child's memory cgroup: the v1 memory hierarchy's line, else the v2 one."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            return path
    return next(path for hid, _, path in lines if hid == "0")


def _stat(pid: int, filters, start: int, end: int) -> int:
    with Pagemap(pid) as pm:
        return page_walk.StatWalk().passed(pm, 0, filters, False, start, end)


def test_stat_counts_the_folios_that_pass(child):
    pid, info = child
    anon, file = info["anon"], info["file"]
    take_anon = [FilterSpec(type="anon", matching=True, allow=True)]
    drop_anon = [FilterSpec(type="anon", matching=True, allow=False)]
    assert _stat(pid, take_anon, *anon) == ANON_TOUCHED
    assert _stat(pid, take_anon, *file) == 0
    assert _stat(pid, drop_anon, *anon) == 0
    assert _stat(pid, drop_anon, *file) == FILE_SIZE
    # every page here is mapped; the untouched 2 MiB of the anon mapping have no folio
    assert _stat(pid, [FilterSpec(type="unmapped", matching=True, allow=True)], *anon) == 0
    assert _stat(pid, [FilterSpec(type="unmapped", matching=False, allow=True)], *anon) \
        == ANON_TOUCHED
    memcg = [FilterSpec(type="memcg", memcg_path=_memcg_path(pid), matching=True, allow=True)]
    assert _stat(pid, memcg, anon[0], anon[1]) == ANON_TOUCHED
    assert _stat(pid, memcg, *file) == FILE_SIZE
    # no ops filter: damos_va_stat() walks nothing and counts nothing
    assert _stat(pid, [], *anon) == 0


def test_a_core_filters_allow_skips_the_ops_filters(child):
    pid, info = child
    with Pagemap(pid) as pm:
        got = page_walk.StatWalk().passed(
            pm, 0, [FilterSpec(type="anon", matching=True, allow=True)], True, *info["file"])
    assert got == FILE_SIZE


def test_folios_match_the_kpageflags_head_and_tail_walk(huge_child):
    pid, info = huge_child
    with Pagemap(pid) as pm:
        pages = list(page_walk.walk(pm, *info["huge"]))
    assert pages, "the THP-eligible mapping has no resident page"
    heads = np.concatenate([p.heads for p in pages])
    sizes = np.concatenate([p.folio_sizes for p in pages])
    pfns = np.concatenate([p.pfns for p in pages])
    if (sizes == PAGE_SIZE).all():
        pytest.skip("no large folio formed (THP off or fragmented memory)")
    for k in range(0, len(pfns), 97):
        assert (int(heads[k]), int(sizes[k]) // PAGE_SIZE) == folio_size_hint(int(pfns[k]))
    huge = [FilterSpec(type="hugepage_size", sz_min=2 * MiB, sz_max=2 * MiB,
                       matching=True, allow=True)]
    with Pagemap(pid) as pm:
        passed = page_walk.StatWalk().passed(pm, 0, huge, False, *info["huge"])
    assert passed == int((sizes == 2 * MiB).sum()) * PAGE_SIZE  # whole 2 MiB folios mapped


def test_migrate_takes_only_passing_lru_pages(child):
    pid, info = child
    take_anon = [FilterSpec(type="anon", matching=True, allow=True)]
    drop_anon = [FilterSpec(type="anon", matching=True, allow=False)]
    anon = info["anon"]
    with Pagemap(pid) as pm:
        addrs = page_walk.migratable(pm, take_anon, False, *anon)
        entries = pm.read_range(*anon)
    present = np.flatnonzero(pfn(entries)).astype(np.uint64) * np.uint64(PAGE_SIZE)
    assert addrs.tolist() == (present + np.uint64(anon[0])).tolist()
    assert len(addrs) * PAGE_SIZE == ANON_TOUCHED
    with Pagemap(pid) as pm:
        assert not len(page_walk.migratable(pm, drop_anon, False, *anon))


# -- through a real daemon ---------------------------------------------------------------------


def _scheme(c: Conn, s: str, filters: list[tuple[str, ...]]) -> None:
    c.ok(f"echo stat > {s}/action")
    for name, value in (("sz/min", 0), ("sz/max", 1 << 40), ("nr_accesses/min", 0),
                        ("nr_accesses/max", 1 << 30), ("age/min", 0), ("age/max", 1 << 30)):
        c.ok(f"echo {value} > {s}/access_pattern/{name}")
    c.ok(f"echo {len(filters)} > {s}/ops_filters/nr_filters")
    for i, f in enumerate(filters):
        for key, value in zip(("type", "matching", "allow", "memcg_path"), f, strict=False):
            c.ok(f"echo {value} > {s}/ops_filters/{i}/{key}")


def _tried(c: Conn, k: str, si: int) -> list[tuple[int, int, int]]:
    c.ok(f"echo update_schemes_tried_regions > {k}/state")
    d = f"{k}/contexts/0/schemes/{si}/tried_regions"
    out = []
    for name in (n.rstrip("/") for n in c.ok(f"ls {d}")):
        if name.isdigit():
            out.append((int(c.value(f"{d}/{name}/start")), int(c.value(f"{d}/{name}/end")),
                        int(c.value(f"{d}/{name}/sz_filter_passed"))))
    return out


def _reference_anon_bytes(pid: int, ranges) -> int:
    """Present anonymous pages, page by page (every anonymous folio of the child is one page:
    THP is madvise-only here and the child asks for none)."""
    total = 0
    with Pagemap(pid) as pm:
        for s, e in ranges:
            pf = pfn(pm.read_range(s, e))
            pf = pf[pf != 0]
            fl = read_flags(pf)
            ok = has(fl, KPF_ANON) & ~has(fl, KPF_NOPAGE) & ~has(fl, KPF_ZERO_PAGE) \
                & ~has(fl, KPF_HUGE)
            total += int(ok.sum()) * PAGE_SIZE
    return total


def test_fvaddr_stat_ops_filters_through_the_daemon(child, start_damond):  # noqa: F811
    pid, info = child
    k = "kdamonds/0"
    ctx = f"{k}/contexts/0"
    with start_damond().conn() as c:
        c.ok("cd /sys/kernel/mm/damon/admin")
        c.ok("echo 1 > kdamonds/nr_kdamonds")
        c.ok(f"echo 1 > {k}/contexts/nr_contexts")
        c.ok(f"echo fvaddr > {ctx}/operations")
        c.ok(f"echo 1 > {ctx}/targets/nr_targets")
        c.ok(f"echo {pid} > {ctx}/targets/0/pid_target")
        ranges = sorted([info["anon"], info["file"]])
        c.ok(f"echo {len(ranges)} > {ctx}/targets/0/regions/nr_regions")
        for i, (s, e) in enumerate(ranges):
            c.ok(f"echo {s} > {ctx}/targets/0/regions/{i}/start")
            c.ok(f"echo {e} > {ctx}/targets/0/regions/{i}/end")
        c.ok(f"echo 3 > {ctx}/schemes/nr_schemes")
        _scheme(c, f"{ctx}/schemes/0", [("anon", "Y", "Y")])
        _scheme(c, f"{ctx}/schemes/1", [("anon", "Y", "N")])
        _scheme(c, f"{ctx}/schemes/2", [("memcg", "Y", "Y", _memcg_path(pid))])
        c.ok(f"echo on > {k}/state")
        time.sleep(0.5)
        assert sum(p for _, _, p in _tried(c, k, 0)) == ANON_TOUCHED
        assert sum(p for _, _, p in _tried(c, k, 1)) == FILE_SIZE
        assert sum(p for _, _, p in _tried(c, k, 2)) == ANON_TOUCHED + FILE_SIZE
        c.ok(f"echo update_schemes_stats > {k}/state")
        total = int(c.value(f"{ctx}/schemes/0/stats/sz_ops_filter_passed"))
        assert total > 0 and total % ANON_TOUCHED == 0
        c.ok(f"echo off > {k}/state")


def test_vaddr_stat_anon_filter_matches_a_page_by_page_count(child, start_damond):  # noqa: F811
    pid, info = child
    k = "kdamonds/0"
    ctx = f"{k}/contexts/0"
    with start_damond().conn() as c:
        c.ok("cd /sys/kernel/mm/damon/admin")
        c.ok("echo 1 > kdamonds/nr_kdamonds")
        c.ok(f"echo 1 > {k}/contexts/nr_contexts")
        c.ok(f"echo vaddr > {ctx}/operations")
        c.ok(f"echo 1 > {ctx}/targets/nr_targets")
        c.ok(f"echo {pid} > {ctx}/targets/0/pid_target")
        c.ok(f"echo 1 > {ctx}/schemes/nr_schemes")
        _scheme(c, f"{ctx}/schemes/0", [("anon", "Y", "Y")])
        c.ok(f"echo on > {k}/state")
        time.sleep(0.5)
        tried = _tried(c, k, 0)
        c.ok(f"echo off > {k}/state")
    got = sum(p for _, _, p in tried)
    assert got == _reference_anon_bytes(pid, [(s, e) for s, e, _ in tried])
    assert got >= ANON_TOUCHED  # the anon mapping lies inside vaddr's regions


def test_vaddr_refuses_a_young_ops_filter_for_stat(child, start_damond):  # noqa: F811
    pid, _ = child
    k = "kdamonds/0"
    ctx = f"{k}/contexts/0"
    with start_damond().conn() as c:
        c.ok("cd /sys/kernel/mm/damon/admin")
        c.ok("echo 1 > kdamonds/nr_kdamonds")
        c.ok(f"echo 1 > {k}/contexts/nr_contexts")
        c.ok(f"echo vaddr > {ctx}/operations")
        c.ok(f"echo 1 > {ctx}/targets/nr_targets")
        c.ok(f"echo {pid} > {ctx}/targets/0/pid_target")
        c.ok(f"echo 1 > {ctx}/schemes/nr_schemes")
        _scheme(c, f"{ctx}/schemes/0", [("young", "Y", "Y")])
        assert c.err(f"echo on > {k}/state") == "EINVAL"
        _scheme(c, f"{ctx}/schemes/0", [("anon", "Y", "Y")])
        c.ok(f"echo on > {k}/state")
        c.ok(f"echo off > {k}/state")
