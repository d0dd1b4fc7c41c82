"""Property and differential tests of the region algorithms of ``damond.core.regions``.

Hypothesis generates sorted, non-overlapping region lists with gaps and random counters, for
``min_region`` 1 (the kernel's KUnit build) and 4096 (a real DAMON_MIN_REGION). The merge and
``set_regions`` results are compared field by field with the scalar kernel ports of
``tests/core/kernel_reference.py``; the splits, which draw random numbers differently from the
kernel, are checked against the properties the kernel's algorithm guarantees.

Runs are derandomized so a failure reproduces; hypothesis prints the falsifying example.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from damond.core.regions import (
    SMALL_N_MERGE,
    SMALL_N_SPLIT,
    Regions,
    merge_regions,
    merge_regions_of,
    merge_regions_of_arrays,
    merge_regions_of_lists,
    set_regions,
    split_regions_of,
    split_regions_of_arrays,
    split_regions_of_lists,
)
from tests.core import kernel_reference as kref

MIN_REGIONS = [1, 4096]
P = 4096

SETTINGS = settings(derandomize=True, deadline=None, max_examples=60,
                    suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# generators


@st.composite
def region_rows(draw, min_region: int, *, max_n: int = 30, min_n: int = 0,
                aligned: bool | None = None, gaps: bool = True, max_nr: int = 25):
    """Rows ``(start, end, nr_accesses, nr_accesses_bp, last_nr_accesses, age)`` of sorted,
    non-overlapping, non-empty regions, with gaps unless ``gaps`` is False. Sizes and gaps are
    multiples of ``min_region`` unless ``aligned`` is False (or, when None, in a random subset
    of the lists). ``nr_accesses_bp`` is usually ``nr_accesses * 10000``."""
    n = draw(st.integers(min_n, max_n))
    unaligned = min_region > 1 and (aligned is False or (aligned is None and draw(st.booleans())))
    addr = draw(st.integers(0, 64)) * min_region
    if unaligned:
        addr += draw(st.integers(0, min_region - 1))
    rows = []
    for _ in range(n):
        gap = draw(st.integers(-24, 8)) if gaps else 0
        if gap > 0:
            addr += gap * min_region
        size = draw(st.integers(1, 12)) * min_region
        if unaligned:
            size += draw(st.integers(-min_region + 1, min_region - 1)) % min_region
            if gap > 0:
                addr += draw(st.integers(0, min_region - 1))
        nr = draw(st.integers(0, max_nr))
        bp = draw(st.integers(-max_nr * 10000, max_nr * 10000))
        bp = nr * 10000 if bp < 0 else bp
        last = draw(st.integers(0, max_nr))
        age = draw(st.integers(0, 300))
        rows.append((addr, addr + size, nr, bp, last, age))
        addr += size
    return rows


def to_regions(rows) -> Regions:
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return Regions.from_lists(*cols)


def rows_of(regions: Regions) -> list[tuple[int, ...]]:
    return list(zip(*regions.to_lists(), strict=True))


def krows(kregions) -> list[tuple[int, ...]]:
    return [r.as_tuple() for r in kregions]


def assert_sorted_disjoint(rows) -> None:
    for s, e, *_ in rows:
        assert s < e, rows
    for a, b in zip(rows, rows[1:], strict=False):
        assert a[1] <= b[0], (a, b)


def total_size(rows) -> int:
    return sum(e - s for s, e, *_ in rows)


def runs(rows) -> list[tuple[int, int]]:
    """Maximal contiguous address runs covered by the rows."""
    out: list[list[int]] = []
    for s, e, *_ in rows:
        if out and out[-1][1] == s:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [tuple(x) for x in out]


def _owner(piece, originals) -> int:
    for i, o in enumerate(originals):
        if o[0] <= piece[0] and piece[1] <= o[1]:
            return i
    raise AssertionError(f"{piece} lies in no original region")


# ---------------------------------------------------------------------------------------------
# the reference itself reproduces the kernel's KUnit vectors (DAMON_MIN_REGION 1)


def test_reference_merge_kunit_vector():  # damon_test_merge_regions_of
    sa = [0, 100, 114, 122, 130, 156, 170, 184, 230]
    ea = [100, 112, 122, 130, 156, 170, 184, 230, 10170]
    nrs = [0, 0, 10, 10, 20, 30, 1, 2, 5]
    regions = [kref.KRegion(s, e, n) for s, e, n in zip(sa, ea, nrs, strict=True)]
    kref.merge_regions_of(regions, 9, 9999)
    assert [(r.start, r.end) for r in regions] == [(0, 112), (114, 130), (130, 156),
                                                   (156, 170), (170, 230), (230, 10170)]


_OLD = [(10, 20), (20, 30), (50, 55), (55, 57), (57, 59), (70, 80), (80, 90), (90, 100)]


@pytest.mark.parametrize("old, new, expect", [  # damon_test_set_regions, apply_three_regions
    ([], [(5, 15), (15, 25)], [(5, 15), (15, 25)]),
    ([(4, 16), (24, 32)], [(18, 23)], [(18, 23)]),
    ([(4, 16), (24, 32)], [(8, 28)], [(8, 16), (16, 24), (24, 28)]),
    ([(0, 4), (4, 17)], [(0, 15), (25, 40)], [(0, 4), (4, 15), (25, 40)]),
    ([(0, 4), (42, 52)], [(0, 15), (25, 40), (44, 50)], [(0, 15), (25, 40), (44, 50)]),
    (_OLD, [(5, 27), (45, 55), (73, 104)],
     [(5, 20), (20, 27), (45, 55), (73, 80), (80, 90), (90, 104)]),
    (_OLD, [(5, 27), (56, 57), (65, 104)],
     [(5, 20), (20, 27), (56, 57), (65, 80), (80, 90), (90, 104)]),
    (_OLD, [(5, 27), (61, 63), (65, 104)],
     [(5, 20), (20, 27), (61, 63), (65, 80), (80, 90), (90, 104)]),
    (_OLD, [(5, 7), (30, 32), (65, 68)], [(5, 7), (30, 32), (65, 68)]),
])
def test_reference_set_regions_kunit_vectors(old, new, expect):
    out = kref.set_regions([kref.KRegion(s, e) for s, e in old], new, 1)
    assert [(r.start, r.end) for r in out] == expect


# ---------------------------------------------------------------------------------------------
# split_regions_of


def _cut_set(sz: int, min_region: int) -> set[int]:
    """Where the kernel may cut a region of ``sz`` bytes: ALIGN_DOWN(k * sz / 10) for k in
    1..9, minus the empty and full cuts it skips."""
    cuts = {kref.align_down(k * sz // 10, min_region) for k in range(1, 10)}
    return {c for c in cuts if 0 < c < sz}


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@pytest.mark.parametrize("nr_subs", [2, 3])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_split_regions_of_properties(min_region, nr_subs, data, seed):
    rows = data.draw(region_rows(min_region, max_n=25))
    rng = np.random.default_rng(seed)
    out = rows_of(split_regions_of(to_regions(rows), nr_subs, min_region, rng))

    assert_sorted_disjoint(out)
    assert total_size(out) == total_size(rows)
    pieces_of: dict[int, list] = {i: [] for i in range(len(rows))}
    for p in out:
        pieces_of[_owner(p, rows)].append(p)
    for i, orig in enumerate(rows):
        pieces = pieces_of[i]
        sz = orig[1] - orig[0]
        # the pieces tile the original region exactly
        assert pieces[0][0] == orig[0] and pieces[-1][1] == orig[1]
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))
        assert 1 <= len(pieces) <= nr_subs
        if sz <= 2 * min_region:
            assert len(pieces) == 1, (orig, pieces)
        for p in pieces:
            # counters are copied to every piece
            assert p[2:] == orig[2:]
            # cut offsets are multiples of min_region from the region start
            assert (p[0] - orig[0]) % min_region == 0
            if sz % min_region == 0:
                assert (p[1] - p[0]) % min_region == 0
        # where the cuts may fall: the first cut at 10%..90% of the region, the second one
        # (three-way split) inside the left piece of the first
        if len(pieces) == 2:
            assert pieces[0][1] - orig[0] in _cut_set(sz, min_region)
        elif len(pieces) == 3:
            c1 = pieces[2][0] - orig[0]
            c2 = pieces[1][0] - orig[0]
            assert c1 in _cut_set(sz, min_region)
            # the second cut is only tried while the left piece is above 2 * min_region
            assert c1 > 2 * min_region
            assert c2 in _cut_set(c1, min_region)


def test_split_regions_of_uses_every_tenth():
    """The cut point is drawn from 1..9 tenths: over many draws all nine appear, and nothing
    else does."""
    rng = np.random.default_rng(1234)
    seen = set()
    for _ in range(400):
        out = split_regions_of(Regions([0], [1000]), 2, 1, rng)
        seen.add(out.ranges()[0][1])
    assert seen == {100 * k for k in range(1, 10)}


@pytest.mark.parametrize("min_region", MIN_REGIONS)
def test_split_small_regions_untouched(min_region):
    rows = [(0, min_region, 1, 10000, 2, 3), (2 * min_region, 4 * min_region, 4, 40000, 5, 6)]
    rng = np.random.default_rng(0)
    for nr_subs in (2, 3):
        for _ in range(20):
            out = rows_of(split_regions_of(to_regions(rows), nr_subs, min_region, rng))
            assert out == rows


# ---------------------------------------------------------------------------------------------
# merge_regions_of: differential against the scalar kernel loop, and properties


@st.composite
def merge_inputs(draw, min_region: int):
    rows = draw(region_rows(min_region, max_n=40,
                            max_nr=draw(st.sampled_from([0, 3, 25]))))
    thres = draw(st.integers(0, 12))
    total = total_size(rows) or min_region
    sz_limit = draw(st.one_of(st.integers(min_region, max(min_region, total)),
                              st.just(total), st.just(2**63)))
    return rows, thres, sz_limit


@pytest.mark.parametrize("merge", [merge_regions_of_lists, merge_regions_of_arrays])
@pytest.mark.parametrize("min_region", MIN_REGIONS)
@settings(SETTINGS, max_examples=200)
@given(data=st.data())
def test_merge_regions_of_matches_kernel_loop(merge, min_region, data):
    """Both implementations (lists for few regions, arrays for many) against the kernel's."""
    rows, thres, sz_limit = data.draw(merge_inputs(min_region))
    got = rows_of(merge(to_regions(rows), thres, sz_limit))
    ref = kref.regions_from_tuples(rows)
    kref.merge_regions_of(ref, thres, sz_limit)
    assert got == krows(ref)


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@pytest.mark.parametrize("nr_subs", [2, 3])
@settings(SETTINGS, max_examples=150)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_split_lists_and_arrays_cut_alike(min_region, nr_subs, data, seed):
    """The list split draws the same numbers as the array split and cuts at the same
    points, so a seeded kdamond splits alike whichever one its region count picks; the
    generator is left in the same state too."""
    rows = data.draw(region_rows(min_region, max_n=40))
    rng_l, rng_a = np.random.default_rng(seed), np.random.default_rng(seed)
    got = rows_of(split_regions_of_lists(to_regions(rows), nr_subs, min_region, rng_l))
    want = rows_of(split_regions_of_arrays(to_regions(rows), nr_subs, min_region, rng_a))
    assert got == want
    assert rng_l.integers(1 << 62) == rng_a.integers(1 << 62)


def test_split_lists_wrap_draw_times_size_at_64_bits():
    """A region above 2**64 / 9 bytes: ``draw * size`` wraps as the kernel's unsigned long
    does, in both implementations."""
    rows = [(0, 2**63, 0, 0, 0, 0), (2**63, 2**64 - 1, 0, 0, 0, 0)]
    for seed in range(20):
        got = rows_of(split_regions_of_lists(to_regions(rows), 3, 1,
                                             np.random.default_rng(seed)))
        want = rows_of(split_regions_of_arrays(to_regions(rows), 3, 1,
                                               np.random.default_rng(seed)))
        assert got == want


def test_the_dispatch_takes_lists_up_to_small_n():
    """``merge_regions_of``/``split_regions_of`` pick by size; both sides of the limits
    agree."""
    def rows(n):
        return [(i * 10, i * 10 + 10, i % 3, (i % 3) * 10000, i % 2, i % 5) for i in range(n)]

    for n in (SMALL_N_MERGE, SMALL_N_MERGE + 1):
        assert (rows_of(merge_regions_of(to_regions(rows(n)), 1, 25))
                == rows_of(merge_regions_of_arrays(to_regions(rows(n)), 1, 25))
                == rows_of(merge_regions_of_lists(to_regions(rows(n)), 1, 25)))
    for n in (SMALL_N_SPLIT, SMALL_N_SPLIT + 1):
        a = rows_of(split_regions_of(to_regions(rows(n)), 3, 1, np.random.default_rng(7)))
        b = rows_of(split_regions_of_lists(to_regions(rows(n)), 3, 1,
                                           np.random.default_rng(7)))
        assert a == b


def test_merge_regions_of_chain_rounding():
    """A chain merge averages step by step (integer division at each step), not over the whole
    chain at once: (1*1 + 0*1)//2 = 0, then (0*2 + 1*1)//3 = 0, whereas the overall average
    is 2//3 = 0 too; with sizes 1,1,2 and counts 1,0,2: 0 then (0*2+2*2)//4 = 1."""
    rows = [(0, 1, 1, 0, 1, 0), (1, 2, 0, 0, 0, 0), (2, 4, 2, 0, 2, 0)]
    got = rows_of(merge_regions_of(to_regions(rows), 2, 100))
    assert got == [(0, 4, 1, 10000, 1, 1)]


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@SETTINGS
@given(data=st.data())
def test_merge_regions_of_properties(min_region, data):
    rows, thres, sz_limit = data.draw(merge_inputs(min_region))
    out = rows_of(merge_regions_of(to_regions(rows), thres, sz_limit))

    assert_sorted_disjoint(out)
    assert len(out) <= len(rows)
    assert total_size(out) == total_size(rows)
    # bounds conserved: every output region is a union of consecutive input regions
    starts = {r[0] for r in rows}
    ends = {r[1] for r in rows}
    covered = 0
    for o in out:
        assert o[0] in starts and o[1] in ends
        parts = [r for r in rows if o[0] <= r[0] and r[1] <= o[1]]
        assert parts and parts[0][0] == o[0] and parts[-1][1] == o[1]
        covered += len(parts)
        if len(parts) > 1:
            # a merge never builds a region above the size limit ...
            assert o[1] - o[0] <= sz_limit
            # ... and never bridges a gap
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
            # the merged count lies between the counts of its parts
            assert min(p[2] for p in parts) <= o[2] <= max(p[2] for p in parts)
            assert o[3] == o[2] * 10000
            assert o[4] == parts[0][4]  # last_nr_accesses: the leftmost part's
        else:
            assert o[2:5] == parts[0][2:5]
    assert covered == len(rows)
    # regions separated by a gap stay separate
    assert set(runs(out)) == set(runs(rows))


# ---------------------------------------------------------------------------------------------
# merge_regions: the v6.10 repeated merge


@st.composite
def multi_target_merge_inputs(draw, min_region: int, *, gaps: bool = True):
    nr_targets = draw(st.integers(1, 3))
    max_thres = draw(st.sampled_from([0, 1, 5, 20]))
    targets = [draw(region_rows(min_region, max_n=30, gaps=gaps, max_nr=max_thres))
               for _ in range(nr_targets)]
    threshold = draw(st.integers(0, max(0, max_thres // 10)))
    max_nr_regions = draw(st.integers(1, 40))
    return targets, threshold, max_nr_regions, max_thres


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@settings(SETTINGS, max_examples=120)
@given(data=st.data())
def test_merge_regions_matches_kernel_loop(min_region, data):
    targets, threshold, max_nr_regions, max_thres = data.draw(
        multi_target_merge_inputs(min_region))
    total = sum(total_size(t) for t in targets) or min_region
    sz_limit = data.draw(st.one_of(st.just(total),
                                   st.integers(min_region, max(min_region, total))))
    got = merge_regions([to_regions(t) for t in targets], threshold, sz_limit,
                        max_nr_regions, max_thres)
    ref = [kref.regions_from_tuples(t) for t in targets]
    kref.kdamond_merge_regions(ref, threshold, sz_limit, max_nr_regions, max_thres)
    assert [rows_of(g) for g in got] == [krows(r) for r in ref]


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@SETTINGS
@given(data=st.data())
def test_merge_regions_meets_max_nr_regions(min_region, data):
    """With ``sz_limit`` >= the total size and every ``nr_accesses`` within 0..max_thres, the
    repeated merge either meets ``max_nr_regions`` or merges every contiguous run into one
    region: once the threshold reaches max_thres, all adjacent neighbours qualify (a merged
    count stays between its parts' counts)."""
    targets, threshold, max_nr_regions, max_thres = data.draw(
        multi_target_merge_inputs(min_region))
    total = sum(total_size(t) for t in targets) or min_region
    got = merge_regions([to_regions(t) for t in targets], threshold, total,
                        max_nr_regions, max_thres)
    nr = sum(len(g) for g in got)
    nr_runs = sum(len(runs(t)) for t in targets)
    assert nr <= max(max_nr_regions, nr_runs)
    if nr > max_nr_regions:
        # the threshold had to grow to the maximum: every run is one region now
        assert all(len(g) == len(runs(t)) for g, t in zip(got, targets, strict=True))
    for g, t in zip(got, targets, strict=True):
        assert set(runs(rows_of(g))) == set(runs(t))
        assert total_size(rows_of(g)) == total_size(t)


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@SETTINGS
@given(data=st.data())
def test_merge_regions_no_gaps_single_region(min_region, data):
    """No gaps, sz_limit = total size, max_nr_regions below the count: one region results."""
    targets, threshold, _, max_thres = data.draw(
        multi_target_merge_inputs(min_region, gaps=False))
    rows = targets[0]
    assume(len(rows) >= 2)
    got = merge_regions([to_regions(rows)], threshold, total_size(rows), 1, max_thres)
    assert got[0].ranges() == [(rows[0][0], rows[-1][1])]


# ---------------------------------------------------------------------------------------------
# set_regions


@st.composite
def range_lists(draw, min_region: int, *, aligned_disjoint: bool, max_n: int = 6):
    """Sorted non-overlapping ranges. With ``aligned_disjoint`` the ranges stay disjoint and
    non-empty after alignment to ``min_region``; else anything a user may write (unaligned,
    empty, touching)."""
    n = draw(st.integers(1, max_n))
    addr = draw(st.integers(0, 40)) * min_region
    out = []
    for _ in range(n):
        if aligned_disjoint:
            addr += draw(st.integers(0, 20)) * min_region
            size = draw(st.integers(1, 20)) * min_region
            start = addr
            if min_region > 1 and draw(st.booleans()):
                # unaligned inside the same pages
                start += draw(st.integers(0, min_region - 1))
                end = addr + size - draw(st.integers(0, min_region - 1))
                end = max(end, start + 1)
            else:
                end = addr + size
            out.append((start, end))
            addr += size
            if min_region > 1:
                addr = kref.align_up(addr, min_region)
        else:
            addr += draw(st.integers(0, 20 * min_region))
            size = draw(st.integers(0, 20 * min_region))
            out.append((addr, addr + size))
            addr += size
    return out


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@settings(SETTINGS, max_examples=120)
@given(data=st.data())
def test_set_regions_matches_kernel(min_region, data):
    rows = data.draw(region_rows(min_region, max_n=15))
    ranges = data.draw(range_lists(min_region, aligned_disjoint=data.draw(st.booleans())))
    got = rows_of(set_regions(to_regions(rows), ranges, min_region))
    ref = kref.set_regions(kref.regions_from_tuples(rows), ranges, min_region)
    assert got == krows(ref)


@pytest.mark.parametrize("min_region", MIN_REGIONS)
@SETTINGS
@given(data=st.data())
def test_set_regions_properties(min_region, data):
    rows = data.draw(region_rows(min_region, max_n=15))
    # unique, non-zero counters to recognise survivors
    rows = [(s, e, 1 + i, 10000 * (1 + i), 2 + i, 1000 + i) for i, (s, e, *_) in
            enumerate(rows)]
    ranges = data.draw(range_lists(min_region, aligned_disjoint=True))
    aligned = [(kref.align_down(s, min_region), kref.align_up(e, min_region))
               for s, e in ranges]
    out = rows_of(set_regions(to_regions(rows), ranges, min_region))

    assert_sorted_disjoint(out)
    # covers exactly the union of the aligned ranges, each region inside one range
    assert _merged([o[:2] for o in out]) == _merged(aligned)
    for s, e, *_ in out:
        assert any(a <= s and e <= b for a, b in aligned), ((s, e), aligned)
    # survivors: exactly the regions intersecting a range, in order, counters kept, and still
    # overlapping their old bounds; every other region is new and zeroed
    intersecting = [i for i, r in enumerate(rows)
                    if any(not (r[1] <= a or b <= r[0]) for a, b in ranges)]
    survivors = []
    for o in out:
        if o[5] >= 1000:
            i = o[5] - 1000
            assert o[2:] == rows[i][2:]
            assert not (o[1] <= rows[i][0] or rows[i][1] <= o[0])
            survivors.append(i)
        else:
            assert o[2:] == (0, 0, 0, 0)
    assert survivors == intersecting


def test_set_regions_unaligned_ranges_sharing_a_page():
    """Kernel quirk reproduced: with DAMON_MIN_REGION 4096, two user ranges that are sorted and
    disjoint but end and start within the same page align to overlapping ranges. After the
    first range filled a hole, the cursor is at the list head, so the second range gets a new
    region overlapping the stretched last one (and the existing region is not reused)."""
    rows = [(0, P, 1, 10000, 1, 1), (2 * P, 3 * P, 2, 20000, 2, 2)]
    ranges = [(0, 3 * P - 100), (3 * P - 50, 4 * P)]
    want = [(0, P, 1, 10000, 1, 1), (P, 2 * P, 0, 0, 0, 0), (2 * P, 3 * P, 2, 20000, 2, 2),
            (2 * P, 4 * P, 0, 0, 0, 0)]
    ref = kref.set_regions(kref.regions_from_tuples(rows), ranges, P)
    assert krows(ref) == want
    assert rows_of(set_regions(to_regions(rows), ranges, P)) == want


def test_set_regions_cursor_stays_after_filled_holes():
    """Holes filled for one range are inserted before the cursor; the next range continues
    from the region where the previous walk stopped."""
    rows = [(0, 10, 1, 1, 1, 1), (20, 30, 2, 2, 2, 2), (40, 50, 3, 3, 3, 3),
            (60, 70, 4, 4, 4, 4)]
    ranges = [(5, 35), (45, 65)]
    want = [(5, 10, 1, 1, 1, 1), (10, 20, 0, 0, 0, 0), (20, 35, 2, 2, 2, 2),
            (45, 50, 3, 3, 3, 3), (50, 60, 0, 0, 0, 0), (60, 65, 4, 4, 4, 4)]
    assert krows(kref.set_regions(kref.regions_from_tuples(rows), ranges, 1)) == want
    assert rows_of(set_regions(to_regions(rows), ranges, 1)) == want


def _merged(intervals):
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if out and out[-1][1] >= s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [tuple(x) for x in out]
