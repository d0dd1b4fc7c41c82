"""What every operation set shares (``damond.ops.common``): scores, the sampling-address pick,
the score rule and the system's watermark metric."""

from __future__ import annotations

import numpy as np

from damond.core.context import Context, Scheme
from damond.core.operations import MAX_SCORE
from damond.core.regions import Regions
from damond.core.spec import AttrsSpec, QuotaSpec, SchemeSpec
from damond.ops.common import (
    cold_scores,
    hot_scores,
    pick_sampling_addrs,
    scheme_scores,
    system_wmark_metric,
)
from damond.platform.meminfo import read_meminfo

ATTRS = AttrsSpec(sample_us=5000, aggr_us=100000)


def _score(fn, nr, age, w_nr, w_age):
    return int(fn(np.array([nr]), np.array([age]), ATTRS, w_nr, w_age)[0])


def test_scores_worked_values():  # damon-semantics §3.4 worked values
    assert _score(hot_scores, 0, 10, 0, 1) == 47
    assert _score(cold_scores, 0, 10, 0, 1) == 52
    assert _score(hot_scores, 0, 0, 0, 1) == 49
    assert _score(cold_scores, 0, 0, 0, 1) == 50
    assert _score(hot_scores, 20, 100, 1, 1) == 77
    assert _score(cold_scores, 5, 3, 0, 0) == 99  # both weights zero


def test_sampling_addrs_stay_inside_their_regions():
    # one-byte regions, a region ending at the top of the address space, and big ones
    top = (1 << 64) - 1
    r = Regions([0, 10, 4096, top - (1 << 40)], [1, 11, 1 << 30, top])
    rng = np.random.default_rng(7)
    for _ in range(200):
        addrs = pick_sampling_addrs(r, rng)
        assert addrs is r.sampling_addr
        assert ((r.start <= addrs) & (addrs < r.end)).all()
    assert r.sampling_addr[:2].tolist() == [0, 10]


def test_sampling_addrs_are_uniform():
    r = Regions([0], [100])
    rng = np.random.default_rng(1)
    counts = np.bincount([int(pick_sampling_addrs(r, rng)[0]) for _ in range(20000)],
                         minlength=100)
    assert counts.min() > 120 and counts.max() < 290  # ~200 each


def test_sampling_addrs_of_no_regions():
    r = Regions()
    assert pick_sampling_addrs(r, np.random.default_rng(0)).size == 0


def test_scheme_scores_pageout_goes_coldest_first():
    ctx = Context(ops_name="any", attrs=ATTRS)
    r = Regions([0, 10, 20], [10, 20, 30], nr_accesses=[0, 0, 20], age=[10, 0, 100])
    pageout = Scheme(spec=SchemeSpec(action="pageout",
                                     quota=QuotaSpec(weight_nr_accesses=0, weight_age=1)))
    assert scheme_scores(ctx, r, pageout).tolist() == [52, 50, 44]
    for action in ("cold", "willneed", "stat", "hugepage"):
        assert scheme_scores(ctx, r, Scheme(spec=SchemeSpec(action=action))).tolist() == [
            MAX_SCORE] * 3


def test_system_wmark_metric():
    rate = system_wmark_metric("free_mem_rate")
    info = read_meminfo()
    assert 0 <= rate <= 1000
    # free memory moves between two reads; a few per thousand at most in a test
    assert abs(rate - info["MemFree"] * 1000 // info["MemTotal"]) <= 20
    assert system_wmark_metric("none") is None
    assert system_wmark_metric("no such metric") is None
