"""Property tests of vaddr's region algorithms (``damond.plugins.vaddr``): three regions over
hypothesis-generated mappings (small gaps, so that ties are common) and the even split, for
``min_region`` 1 (the kernel's KUnit build) and 4096 (a real DAMON_MIN_REGION).

Runs are derandomized so a failure reproduces; hypothesis prints the falsifying example.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damond.errors import DamonError
from damond.plugins.vaddr import evenly_split, three_regions
from tests.core import kernel_reference as kref

MIN_REGIONS = [1, 4096]

SETTINGS = settings(derandomize=True, deadline=None, max_examples=60,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def vma_lists(draw, min_region: int):
    n = draw(st.integers(0, 12))
    addr = draw(st.integers(0, 100)) * min_region
    out = []
    for _ in range(n):
        # small gap sizes so that ties are common
        addr += draw(st.sampled_from([0, 0, 1, 2, 3, 3, 5, 8])) * min_region
        size = draw(st.integers(1, 6)) * min_region
        out.append((addr, addr + size))
        addr += size
    return out


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@settings(SETTINGS, max_examples=120)
@given(data=st.data())
def test_three_regions(min_region, data):
    vmas = data.draw(vma_lists(min_region))
    gaps = [(i, b[0] - a[1], (a[1], b[0])) for i, (a, b) in
            enumerate(zip(vmas, vmas[1:], strict=False)) if b[0] > a[1]]
    if len(gaps) < 2:
        with pytest.raises(DamonError) as e:
            three_regions(vmas, min_region)
        assert e.value.errno_name == "EINVAL"
        return
    # the two biggest gaps; among equal sizes the earlier one wins
    top = sorted(gaps, key=lambda g: (-g[1], g[0]))[:2]
    g1, g2 = sorted(g[2] for g in top)
    got = three_regions(vmas, min_region)
    assert got == [(vmas[0][0], g1[0]), (g1[1], g2[0]), (g2[1], vmas[-1][1])]
    # every mapping is covered by one of the three ranges
    for s, e in vmas:
        assert any(a <= s and e <= b for a, b in got)


def test_three_regions_tie_earlier_gap_wins():
    vmas = [(0, 10), (20, 30), (40, 50), (60, 70)]  # three gaps of 10
    assert three_regions(vmas, 1) == [(0, 10), (20, 30), (40, 70)]
    vmas = [(0, 10), (15, 30), (40, 50), (60, 70)]  # gaps 5, 10, 10
    assert three_regions(vmas, 1) == [(0, 30), (40, 50), (60, 70)]


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@SETTINGS
@given(start_units=st.integers(0, 1000), nr_units=st.integers(1, 500),
       extra=st.integers(0, 4095), nr_pieces=st.integers(1, 40))
def test_evenly_split(min_region, start_units, nr_units, extra, nr_pieces):
    start = start_units * min_region
    end = start + nr_units * min_region + extra % min_region
    sz_piece = kref.align_down((end - start) // nr_pieces, min_region)
    if nr_pieces > 1 and sz_piece == 0:
        with pytest.raises(DamonError):
            evenly_split(start, end, nr_pieces, min_region)
        return
    pieces = evenly_split(start, end, nr_pieces, min_region)
    assert len(pieces) == nr_pieces
    assert pieces[0][0] == start and pieces[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))
    assert all(s < e for s, e in pieces)
    if nr_pieces > 1:
        assert all(e - s == sz_piece for s, e in pieces[:-1])
