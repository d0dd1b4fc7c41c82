"""Exact vectors for the core algorithms, most taken from the kernel's own KUnit suites
(mm/damon/core-test.h, tests/core-kunit.h, vaddr-test.h) with DAMON_MIN_REGION = 1."""

from __future__ import annotations

import numpy as np
import pytest

from damond.core.access import (
    moving_sum,
    reset_aggregated,
    update_access_rates,
    update_monitoring_results,
)
from damond.core.attrs import validate_attrs
from damond.core.quota import effective_size_quota, feed_loop_next_input, min_score_for
from damond.core.regions import (
    Regions,
    merge_regions,
    merge_regions_of,
    merge_two_regions,
    region_sz_limit,
    set_regions,
    split_nr_subs,
    split_region_at,
    split_regions_of,
)
from damond.core.spec import AttrsSpec
from damond.errors import DamonError


def test_split_at_copies_counters():  # damon_test_split_at
    r = Regions([0], [100], nr_accesses=[42], last_nr_accesses=[15], age=[10])
    out = split_region_at(r, 0, 25)
    assert out.ranges() == [(0, 25), (25, 100)]
    assert out.nr_accesses.tolist() == [42, 42]
    assert out.last_nr_accesses.tolist() == [15, 15]
    assert out.age.tolist() == [10, 10]


def test_merge_two():  # damon_test_merge_two
    r = Regions([0, 100], [100, 300], nr_accesses=[10, 20], age=[9, 21],
                last_nr_accesses=[3, 7])
    out = merge_two_regions(r, 0)
    assert out.ranges() == [(0, 300)]
    assert out.nr_accesses.tolist() == [16]
    assert out.age.tolist() == [17]
    assert out.nr_accesses_bp.tolist() == [160000]
    assert out.last_nr_accesses.tolist() == [3]  # left keeps its value (Appendix B #4)


def test_merge_regions_of():  # damon_test_merge_regions_of
    sa = [0, 100, 114, 122, 130, 156, 170, 184, 230]
    ea = [100, 112, 122, 130, 156, 170, 184, 230, 10170]
    nrs = [0, 0, 10, 10, 20, 30, 1, 2, 5]
    out = merge_regions_of(Regions(sa, ea, nr_accesses=nrs), 9, 9999)
    assert out.ranges() == [(0, 112), (114, 130), (130, 156), (156, 170), (170, 230),
                            (230, 10170)]


def test_merge_updates_age():
    # age reset when nr_accesses moved by more than the threshold, else incremented
    r = Regions([0, 10, 30], [10, 20, 40], nr_accesses=[5, 9, 0],
                last_nr_accesses=[5, 2, 0], age=[3, 4, 7])
    out = merge_regions_of(r, 2, 100)
    assert out.ranges() == [(0, 10), (10, 20), (30, 40)]
    assert out.age.tolist() == [4, 0, 8]


def test_merge_chain_uses_grown_left_region():
    # 10 and 12 merge (thres 2) into 11; 11 and 13 then merge into 12 (weighted)
    r = Regions([0, 10, 20], [10, 20, 30], nr_accesses=[10, 12, 13])
    out = merge_regions_of(r, 2, 1000)
    assert out.ranges() == [(0, 30)]
    assert out.nr_accesses.tolist() == [(11 * 20 + 13 * 10) // 30]


def test_merge_regions_repeats_until_max():
    # v6.10+: with max_nr_regions 2 the threshold doubles until enough merges happen
    r = Regions([0, 10, 20, 30], [10, 20, 30, 40], nr_accesses=[0, 4, 8, 12])
    [out] = merge_regions([r], 0, 1000, max_nr_regions=2, max_thres=20)
    assert len(out) <= 2


def test_split_regions_of_bounds():  # damon_test_split_regions_of
    rng = np.random.default_rng(0)
    assert len(split_regions_of(Regions([0], [22]), 2, 1, rng)) <= 2
    assert len(split_regions_of(Regions([0], [220]), 4, 1, rng)) <= 4
    out = split_regions_of(Regions([0, 300, 500], [220, 400, 700]), 3, 5, rng)
    assert len(out) <= 9
    assert all(s % 5 == 0 for s in out.start.tolist())


def test_split_never_splits_small_regions():
    out = split_regions_of(Regions([0], [2]), 3, 1, np.random.default_rng(1))
    assert out.ranges() == [(0, 2)]


def test_split_nr_subs():
    assert split_nr_subs(501, 0, 1000) == 0
    assert split_nr_subs(500, 0, 1000) == 2
    assert split_nr_subs(300, 300, 1000) == 3
    assert split_nr_subs(334, 334, 1000) == 2  # not below max / 3


def _set(old, new, expect):
    out = set_regions(Regions.from_ranges(old), new, 1)
    assert out.ranges() == expect


def test_set_regions():  # damon_test_set_regions
    _set([], [(5, 15), (15, 25)], [(5, 15), (15, 25)])
    _set([(4, 16), (24, 32)], [(18, 23)], [(18, 23)])
    _set([(4, 16), (24, 32)], [(8, 28)], [(8, 16), (16, 24), (24, 28)])
    _set([(0, 4), (4, 17)], [(0, 15), (25, 40)], [(0, 4), (4, 15), (25, 40)])
    _set([(0, 4), (42, 52)], [(0, 15), (25, 40), (44, 50)], [(0, 15), (25, 40), (44, 50)])


OLD = [(10, 20), (20, 30), (50, 55), (55, 57), (57, 59), (70, 80), (80, 90), (90, 100)]


def test_apply_three_regions():  # vaddr damon_test_apply_three_regions1..4
    _set(OLD, [(5, 27), (45, 55), (73, 104)],
         [(5, 20), (20, 27), (45, 55), (73, 80), (80, 90), (90, 104)])
    _set(OLD, [(5, 27), (56, 57), (65, 104)],
         [(5, 20), (20, 27), (56, 57), (65, 80), (80, 90), (90, 104)])
    _set(OLD, [(5, 27), (61, 63), (65, 104)],
         [(5, 20), (20, 27), (61, 63), (65, 80), (80, 90), (90, 104)])
    _set(OLD, [(5, 7), (30, 32), (65, 68)], [(5, 7), (30, 32), (65, 68)])


def test_set_regions_keeps_counters_of_survivors():
    r = Regions([10, 20], [20, 30], nr_accesses=[3, 4], age=[5, 6])
    out = set_regions(r, [(12, 40)], 1)
    assert out.ranges() == [(12, 20), (20, 40)]
    assert out.age.tolist() == [5, 6]


def test_set_regions_aligns_to_min_region():
    out = set_regions(Regions(), [(4097, 8191)], 4096)
    assert out.ranges() == [(4096, 8192)]


def test_region_sz_limit():
    rs = [Regions([0, 100], [100, 250]), Regions([1000], [1050])]
    assert region_sz_limit(rs, 10, 1) == 30  # (100 + 150 + 50) / 10
    assert region_sz_limit(rs, 10, 4096) == 4096
    assert region_sz_limit(rs, 0, 1) == 300


def test_moving_sum():  # damon_test_moving_sum
    mvsum, nomvsum, window = 50000, 50000, 10
    new_values = [10000, 0, 10000, 0, 0, 0, 10000, 0, 0, 0]
    expects = [55000, 50000, 55000, 50000, 45000, 40000, 45000, 40000, 35000, 30000]
    for v, exp in zip(new_values, expects, strict=True):
        mvsum = moving_sum(mvsum, nomvsum, window, v)
        assert mvsum == exp


def test_update_access_rates_matches_moving_sum():
    r = Regions([0], [10], nr_accesses_bp=[50000], last_nr_accesses=[5])
    pattern = [1, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    expects = [55000, 50000, 55000, 50000, 45000, 40000, 45000, 40000, 35000, 30000]
    for acc, exp in zip(pattern, expects, strict=True):
        update_access_rates(r, np.array([bool(acc)]), 10)
        assert r.nr_accesses_bp.tolist() == [exp]
    assert r.nr_accesses.tolist() == [3]


def test_reset_aggregated():  # damon_test_aggregate
    r = Regions([10, 20, 30], [15, 27, 40], nr_accesses=[42, 95, 84],
                nr_accesses_bp=[420000, 950000, 1])
    fixed = reset_aggregated(r)
    assert r.nr_accesses.tolist() == [0, 0, 0]
    assert r.last_nr_accesses.tolist() == [42, 95, 84]
    assert r.nr_accesses_bp.tolist() == [420000, 950000, 840000]
    assert fixed == 1  # the drifted moving sum was fixed (the kernel warns once)
    assert len(r) == 3


def test_update_monitoring_result():  # damon_test_update_monitoring_result
    old = AttrsSpec(sample_us=10, aggr_us=1000)
    r = Regions([3], [7], nr_accesses=[15], age=[20])
    update_monitoring_results(r, old, AttrsSpec(sample_us=100, aggr_us=10000), False)
    assert (r.nr_accesses.tolist(), r.age.tolist()) == ([15], [2])
    update_monitoring_results(r, old, AttrsSpec(sample_us=1, aggr_us=1000), False)
    assert (r.nr_accesses.tolist(), r.age.tolist()) == ([150], [2])
    update_monitoring_results(r, old, AttrsSpec(sample_us=1, aggr_us=100), False)
    assert (r.nr_accesses.tolist(), r.age.tolist()) == ([150], [20])


def test_update_monitoring_result_mid_aggregation_resets_partial_count():
    old = AttrsSpec(sample_us=10, aggr_us=1000)
    r = Regions([3], [7], nr_accesses=[7], last_nr_accesses=[50], age=[4])
    update_monitoring_results(r, old, AttrsSpec(sample_us=10, aggr_us=500), True)
    assert r.nr_accesses.tolist() == [0]
    assert r.last_nr_accesses.tolist() == [25]
    assert r.nr_accesses_bp.tolist() == [250000]
    assert r.age.tolist() == [8]


def test_set_attrs_validation():  # damon_test_set_attrs
    valid = AttrsSpec(sample_us=5000, aggr_us=100000, min_nr_regions=10, max_nr_regions=1000)
    validate_attrs(valid)
    for bad in (AttrsSpec(min_nr_regions=1), AttrsSpec(max_nr_regions=9),
                AttrsSpec(aggr_us=4999)):
        with pytest.raises(DamonError) as e:
            validate_attrs(bad)
        assert e.value.errno_name == "EINVAL"


def test_feed_loop_next_input():
    assert feed_loop_next_input(10000, 0) == 20000
    assert feed_loop_next_input(20000, 5000) == 30000
    assert feed_loop_next_input(30000, 15000) == 15000
    assert feed_loop_next_input(30000, 25000) == 10000
    assert feed_loop_next_input(12345, 10000) == 12345
    # damon_test_feed_loop_next_input
    assert feed_loop_next_input(900000, 200) > 900000
    assert feed_loop_next_input(900000, 250000000) == 10000
    assert feed_loop_next_input(900000, 200) > feed_loop_next_input(900000, 2000)


def test_effective_quota():
    assert effective_size_quota(0, 1 << 20, 0, 0) == 1 << 20
    assert effective_size_quota(0, 0, 0, 0) == 0  # unlimited
    # 10 ms at the default 4 MiB/ms, capped by the 1 GiB size quota
    assert effective_size_quota(10, 1 << 30, 0, 0) == 40 << 20
    # measured: 1 MiB in 2 ms -> 524288 bytes/ms
    assert effective_size_quota(10, 0, 1 << 20, 2_000_000) == 5242880
    assert effective_size_quota(10, 1 << 20, 1 << 20, 2_000_000) == 1 << 20


def test_min_score_histogram():
    scores = np.array([99, 50, 50, 10])
    sizes = np.array([100, 200, 300, 400], dtype=np.uint64)
    assert min_score_for([(scores, sizes)], 100) == 99
    assert min_score_for([(scores, sizes)], 101) == 50
    assert min_score_for([(scores, sizes)], 600) == 50
    assert min_score_for([(scores, sizes)], 601) == 10
    assert min_score_for([(scores, sizes)], 10**9) == 0
