"""paddr's ``addr_unit`` (Linux 6.18, ``mm/damon/paddr.c`` and ``sysfs.c``): region addresses
are in units of ``addr_unit`` bytes, ``min_sz_region`` is ``max(PAGE_SIZE / addr_unit, 1)``
for paddr only, and reported bytes are divided back into units.

The host has no page_idle, so a paddr kdamond cannot start here (tests/ops/test_vaddr_host.py
checks that refusal); these tests drive paddr's own steps on real physical pages instead: the
pages of a sleeping child process, found through its pagemap.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from damond.core.build import build_context
from damond.core.operations import SchemeAction
from damond.core.spec import ContextSpec, FilterSpec, SchemeSpec
from damond.ops import page_walk
from damond.platform.pagemap import Pagemap, pfn
from damond.platform.pagesize import PAGE_SIZE
from damond.plugins import paddr

OPS = ["vaddr", "fvaddr", "paddr", "sim"]


def _ctx(ops: str, addr_unit: int, schemes=()):
    spec = ContextSpec(ops=ops, addr_unit=addr_unit, schemes=list(schemes))
    return build_context(spec, avail_operations=OPS, min_region=PAGE_SIZE)


@pytest.mark.parametrize("unit", [1, 2, 4, PAGE_SIZE, 4 * PAGE_SIZE])
def test_min_region_follows_addr_unit_for_paddr_only(unit):
    assert _ctx("paddr", unit).min_region == max(PAGE_SIZE // unit, 1)
    assert _ctx("paddr", unit).addr_unit == unit
    # 6.18 accepts addr_unit for the other sets and ignores it ("respected by only paddr")
    assert _ctx("vaddr", unit).min_region == PAGE_SIZE
    assert _ctx("fvaddr", unit).min_region == PAGE_SIZE


CHILD = r"""
import mmap, sys, time
m = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for o in range(0, len(m), 4096):
    m[o] = 1
import ctypes
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), len(m), flush=True)
time.sleep(600)
"""


@pytest.fixture
def child_pfns():
    if page_walk.unavailable() is not None:
        pytest.skip(f"no PFNs here: {page_walk.unavailable()}")
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        start, size = map(int, proc.stdout.readline().split())
        with Pagemap(proc.pid) as pm:
            pfns = pfn(pm.read_range(start, start + size))
        assert (pfns != 0).all()
        yield pfns
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("unit", [1, 4, 512, PAGE_SIZE])
def test_stat_counts_physical_pages_in_units(child_pfns, unit):
    anon = SchemeSpec(action="stat", filters=[FilterSpec(type="anon", matching=True,
                                                         allow=True)])
    ctx = _ctx("paddr", unit, [anon])
    scheme = ctx.schemes[0]
    for p in child_pfns[:8].tolist():
        phys = p * PAGE_SIZE
        a = SchemeAction(0, phys // unit, (phys + PAGE_SIZE) // unit, 0, "stat")
        # one anonymous 4 KiB page: folio_size / addr_unit core units
        assert paddr._stat_filter_passed(scheme, a, unit) == PAGE_SIZE // unit
    # a page the anon filter rejects counts nothing, in any unit
    ctx_rej = _ctx("paddr", unit, [SchemeSpec(action="stat", filters=[
        FilterSpec(type="anon", matching=True, allow=False)])])
    phys = int(child_pfns[0]) * PAGE_SIZE
    a = SchemeAction(0, phys // unit, (phys + PAGE_SIZE) // unit, 0, "stat")
    assert paddr._stat_filter_passed(ctx_rej.schemes[0], a, unit) == 0


def test_a_region_in_units_covers_the_physical_bytes_it_names(child_pfns):
    """Two adjacent child pages, when physically adjacent, in units of 2 pages: one region of
    one unit covers both; the same numbers read as bytes would cover a tiny range instead."""
    pfns = np.sort(child_pfns)
    adjacent = np.flatnonzero((np.diff(pfns) == 1) & (pfns[:-1] % 2 == 0))
    if not len(adjacent):
        pytest.skip("no two of the child's pages are physically adjacent and aligned")
    first = int(pfns[adjacent[0]])
    unit = 2 * PAGE_SIZE
    anon = SchemeSpec(action="stat", filters=[FilterSpec(type="anon", matching=True,
                                                         allow=True)])
    scheme = _ctx("paddr", unit, [anon]).schemes[0]
    a = SchemeAction(0, first // 2, first // 2 + 1, 0, "stat")
    assert paddr._stat_filter_passed(scheme, a, unit) == 2 * (PAGE_SIZE // unit)
    assert paddr._stat_filter_passed(scheme, a, 1) == 0  # [first/2, first/2+1) bytes: no page
