"""Differential tests of the DAMOS apply pass against a scalar port of the kernel's.

``plan_scheme_actions`` + ``finish_scheme_actions`` (damond, array-based, deciding first and
applying after) are run side by side with ``kernel_reference.kdamond_apply_schemes`` (a
one-region-at-a-time port of v6.16 ``kdamond_apply_schemes()`` / ``damos_adjust_quota()`` /
``damon_do_apply_schemes()`` / ``damos_skip_charged_region()`` / ``damos_apply_scheme()``) on
hypothesis-generated contexts, over several consecutive passes with time advancing, comparing
the ordered actions, every region, every scheme's stats and quota state.

Hand-written scenarios pin the quirks of damon-semantics Appendix B with exact values, and the
watermark hysteresis of ``damos_wmark_wait_us()``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damond.core.context import Context, Scheme, Target
from damond.core.kdamond import apply_schemes, run_steps
from damond.core.operations import SchemeAction
from damond.core.regions import Regions
from damond.core.schemes import (
    wait_activation_us,
    wmark_wait_us,
)
from damond.core.spec import (
    ACTIONS,
    AccessPatternSpec,
    AttrsSpec,
    QuotaSpec,
    SchemeSpec,
    WatermarksSpec,
)
from damond.ops.common import cold_scores
from tests.core import kernel_reference as kref

ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1
P = 4096
ATTRS = AttrsSpec(sample_us=5_000, aggr_us=100_000)  # max_nr_accesses 20


# ---------------------------------------------------------------------------------------------
# the fake operation set and its scalar twin


def _score(action: str, nr_accesses: int, age: int, w_nr: int, w_age: int) -> int:
    """The kernel's cold score for pageout, DAMOS_MAX_SCORE for the other actions."""
    if action != "pageout":
        return 99
    return int(cold_scores(np.array([nr_accesses]), np.array([age]), ATTRS, w_nr, w_age)[0])


def _applied(action: str, sz: int) -> int:
    """Bytes an action really applies: all of it, except ``stat`` which applies nothing
    (as vaddr/paddr's ``apply_scheme`` return 0 for DAMOS_STAT)."""
    return 0 if action == "stat" else sz


class FakeOps:
    """An ``OpsHandle`` whose scores and applied sizes are pure functions of the input."""

    name = "fake"

    def __init__(self) -> None:
        self.applied_batches: list[list[SchemeAction]] = []

    def init(self, ctx): pass

    def update(self, ctx): pass

    def prepare_access_checks(self, ctx): pass

    def check_accesses(self, ctx):
        return [np.zeros(len(t.regions), dtype=bool) for t in ctx.targets]

    def get_scheme_score(self, ctx, target, regions, scheme):
        q = scheme.spec.quota
        if scheme.action != "pageout":
            return np.full(len(regions), 99, dtype=np.int64)
        return cold_scores(regions.nr_accesses, regions.age, ctx.attrs,
                           q.weight_nr_accesses, q.weight_age)

    def apply_scheme(self, ctx, actions):
        self.applied_batches.append(list(actions))
        return [_applied(a.action, a.end - a.start) for a in actions]

    def target_valid(self, ctx):
        return None

    def cleanup(self, ctx): pass


def _kref_score(c: kref.KCtx, ti: int, r: kref.KRegion, s: kref.KScheme) -> int:
    return _score(s.action, r.nr_accesses, r.age, s.quota.weight_nr_accesses,
                  s.quota.weight_age)


def _kref_apply(c: kref.KCtx, ti: int, r: kref.KRegion, s: kref.KScheme) -> int:
    return _applied(s.action, r.sz())


# ---------------------------------------------------------------------------------------------
# building both sides from one description


def _rows(regions: Regions) -> list[tuple[int, ...]]:
    return list(zip(*regions.to_lists(), strict=True))


def _regions(rows) -> Regions:
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return Regions.from_lists(*cols)


def make_pair(targets_rows, scheme_descs, min_region, passed):
    """Build a damond Context and a kernel_reference.KCtx in the same state.

    ``scheme_descs`` items are dicts: action, pattern (6-tuple), quota (ms, sz, reset, w_sz,
    w_nr, w_age), and optional state: activated, next_apply_sis, charged_from_ms, esz,
    charged_sz, charge_target (index or None), charge_addr.
    """
    ctx = Context(ops_name="fake", attrs=AttrsSpec(**vars(ATTRS)), min_region=min_region)
    ctx.targets = [Target(regions=_regions(rows)) for rows in targets_rows]
    ctx.passed_sample_intervals = passed
    kschemes = []
    for d in scheme_descs:
        pat = AccessPatternSpec(*d["pattern"])
        ms, sz, reset, w_sz, w_nr, w_age = d["quota"]
        spec = SchemeSpec(action=d["action"], pattern=pat,
                          quota=QuotaSpec(ms=ms, sz=sz, reset_interval_ms=reset, weight_sz=w_sz,
                                          weight_nr_accesses=w_nr, weight_age=w_age),
                          apply_interval_us=d.get("apply_interval_us", 0))
        s = Scheme(spec=spec)
        s.wmark_activated = d.get("activated", True)
        s.next_apply_sis = d.get("next_apply_sis", 0)
        s.quota.charged_from_ms = d.get("charged_from_ms")
        s.quota.esz = d.get("esz", 0)
        s.quota.charged_sz = d.get("charged_sz", 0)
        ct = d.get("charge_target")
        s.quota.charge_target_from = None if ct is None else ctx.targets[ct]
        s.quota.charge_addr_from = d.get("charge_addr", 0)
        ctx.schemes.append(s)
        kq = kref.KQuota(ms=ms, sz=sz, reset_interval=reset, weight_sz=w_sz,
                         weight_nr_accesses=w_nr, weight_age=w_age, esz=s.quota.esz,
                         charged_sz=s.quota.charged_sz, charged_from=s.quota.charged_from_ms,
                         charge_target_from=ct, charge_addr_from=s.quota.charge_addr_from)
        kschemes.append(kref.KScheme(action=d["action"], pattern=kref.KPattern(*d["pattern"]),
                                     quota=kq, apply_interval_us=spec.apply_interval_us,
                                     activated=s.wmark_activated,
                                     next_apply_sis=s.next_apply_sis))
    kctx = kref.KCtx(targets=[kref.regions_from_tuples(rows) for rows in targets_rows],
                     schemes=kschemes, min_region=min_region, sample_interval=ATTRS.sample_us,
                     aggr_interval=ATTRS.aggr_us, passed_sample_intervals=passed,
                     get_scheme_score=_kref_score, apply_scheme=_kref_apply)
    return ctx, kctx


def damond_pass(ctx: Context, ops: FakeOps, now_ms: int):
    """One apply pass exactly as the kdamond loop runs it (``damond.core.kdamond``), with a
    clock that does not move while the actions are applied. Returns the actions as tuples, or
    None when nothing was due."""
    ctx.ops = ops
    ctx.clock_ns = lambda: now_ms * 1_000_000
    actions = run_steps(apply_schemes(ctx))
    if actions is None:
        return None
    return [(a.target_index, a.start, a.end, a.scheme_index) for a in actions]


def kref_pass(kctx: kref.KCtx, now_ms: int):
    kctx.applied = []
    if not kref.kdamond_apply_schemes(kctx, now_ms):
        return None
    return list(kctx.applied)


def damond_state(ctx: Context):
    regions = [_rows(t.regions) for t in ctx.targets]
    schemes = []
    for s in ctx.schemes:
        q = s.quota
        ct = q.charge_target_from
        ct_index = None
        if ct is not None:
            ct_index = next(i for i, t in enumerate(ctx.targets) if t is ct)
        schemes.append({
            "stats": s.stats.as_tuple(),
            "esz": q.esz, "charged_sz": q.charged_sz, "charged_from": q.charged_from_ms,
            "total_charged_sz": q.total_charged_sz,
            "charge_target_from": ct_index, "charge_addr_from": q.charge_addr_from,
            "min_score": q.min_score, "next_apply_sis": s.next_apply_sis,
            "activated": s.wmark_activated,
        })
    return regions, schemes


def kref_state(kctx: kref.KCtx):
    regions = [[r.as_tuple() for r in t] for t in kctx.targets]
    schemes = []
    for s in kctx.schemes:
        q = s.quota
        schemes.append({
            "stats": s.stat.as_tuple(),
            "esz": q.esz, "charged_sz": q.charged_sz, "charged_from": q.charged_from,
            "total_charged_sz": q.total_charged_sz,
            "charge_target_from": q.charge_target_from, "charge_addr_from": q.charge_addr_from,
            "min_score": q.min_score, "next_apply_sis": s.next_apply_sis,
            "activated": s.activated,
        })
    return regions, schemes


def assert_same_state(ctx, kctx, where=""):
    d_regions, d_schemes = damond_state(ctx)
    k_regions, k_schemes = kref_state(kctx)
    assert d_regions == k_regions, f"regions differ {where}"
    for i, (d, k) in enumerate(zip(d_schemes, k_schemes, strict=True)):
        assert d == k, f"scheme {i} differs {where}"


# ---------------------------------------------------------------------------------------------
# generated contexts


@st.composite
def target_rows(draw, min_region: int):
    n = draw(st.integers(0, 40))
    unaligned = min_region > 1 and draw(st.integers(0, 3)) == 0
    addr = draw(st.integers(0, 16)) * min_region
    rows = []
    for _ in range(n):
        gap = draw(st.integers(-6, 4))
        if gap > 0:
            addr += gap * min_region
        size = draw(st.integers(1, 8)) * min_region
        if unaligned:
            size += draw(st.integers(0, min_region - 1))
            size = max(size, 1)
        nr = draw(st.integers(0, 20))
        age = draw(st.sampled_from([0, 1, 2, 5, 10, 50, 100, 300]))
        last = draw(st.integers(0, 20))
        rows.append((addr, addr + size, nr, nr * 10000, last, age))
        addr += size
    return rows


@st.composite
def scheme_desc(draw, min_region: int, nr_targets: int, max_addr: int, passed: int):
    action = draw(st.sampled_from(ACTIONS + ("pageout", "pageout")))
    szs = [0, min_region, 2 * min_region, 5 * min_region, 8 * min_region, ULONG_MAX]
    min_sz = draw(st.sampled_from(szs[:4]))
    max_sz = draw(st.sampled_from(szs[1:]))
    min_nr = draw(st.sampled_from([0, 0, 0, 3, 10]))
    max_nr = draw(st.sampled_from([0, 5, 15, 20, 20, UINT_MAX]))
    min_age = draw(st.sampled_from([0, 0, 0, 2, 10]))
    max_age = draw(st.sampled_from([0, 5, 50, 300, UINT_MAX, UINT_MAX]))
    kind = draw(st.integers(0, 5))
    ms = 0
    sz = 0
    if kind in (1, 2, 3):  # size quota, aligned or not
        sz = draw(st.integers(1, 40)) * min_region
        if kind == 2 and min_region > 1:
            sz += draw(st.integers(1, min_region - 1))
        if kind == 3:
            sz = draw(st.integers(1, 3 * min_region))
    elif kind == 4:  # time quota (no apply time is ever measured: 4 MiB/ms), maybe with size
        ms = draw(st.integers(1, 3))
        sz = draw(st.sampled_from([0, 7 * min_region, 100 * min_region]))
    reset = draw(st.sampled_from([0, 10, 100, 1000]))
    w_nr = draw(st.integers(0, 3))
    w_age = draw(st.integers(0, 3))
    d = {"action": action, "pattern": (min_sz, max_sz, min_nr, max_nr, min_age, max_age),
         "quota": (ms, sz, reset, 0, w_nr, w_age),
         "activated": draw(st.integers(0, 7)) != 0,
         "next_apply_sis": draw(st.sampled_from([0, passed, passed, passed + 5])),
         "apply_interval_us": draw(st.sampled_from([0, 0, 5_000, 300_000]))}
    if (ms or sz) and draw(st.booleans()):
        # in the middle of a charge window
        esz = sz if not ms else min(kref.PAGE_SIZE * 1024 * ms, sz or ULONG_MAX)
        d["charged_from_ms"] = draw(st.integers(0, 50))
        d["esz"] = esz
        d["charged_sz"] = draw(st.sampled_from([0, esz // 2, max(esz - 1, 0), esz, esz + 1]))
    if nr_targets and draw(st.integers(0, 2)) == 0:
        # a charge continuation marker left by an earlier window
        d["charge_target"] = draw(st.integers(0, nr_targets - 1))
        d["charge_addr"] = draw(st.one_of(st.just(0), st.integers(0, max_addr + 2)))
    return d


@st.composite
def contexts(draw, min_region: int):
    nr_targets = draw(st.integers(1, 3))
    targets = [draw(target_rows(min_region)) for _ in range(nr_targets)]
    max_addr = max((rows[-1][1] for rows in targets if rows), default=0)
    passed = 20
    schemes = [draw(scheme_desc(min_region, nr_targets, max_addr, passed))
               for _ in range(draw(st.integers(1, 3)))]
    # what happens between passes: sample intervals passed, milliseconds passed, and a seed
    # for changing counters as an aggregation would
    steps = draw(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 1500),
                                    st.integers(0, 2**31)), min_size=0, max_size=3))
    return targets, schemes, passed, steps


def _perturb(kctx: kref.KCtx, seed: int) -> None:
    """Change some counters identically on both sides, as an aggregation would."""
    rng = np.random.default_rng(seed)
    for t in kctx.targets:
        for r in t:
            if rng.integers(0, 3) == 0:
                r.nr_accesses = int(rng.integers(0, 21))
                r.nr_accesses_bp = r.nr_accesses * 10000
            r.age += int(rng.integers(0, 2))


@pytest.mark.parametrize("min_region", [1, P])
@settings(derandomize=True, deadline=None, max_examples=250,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_apply_pass_matches_kernel(min_region, data):
    targets, schemes, passed, steps = data.draw(contexts(min_region))
    ctx, kctx = make_pair(targets, schemes, min_region, passed)
    ops = FakeOps()
    now_ms = 100
    for step in range(len(steps) + 1):
        got = damond_pass(ctx, ops, now_ms)
        want = kref_pass(kctx, now_ms)
        assert got == want, f"actions differ in pass {step}"
        assert_same_state(ctx, kctx, f"after pass {step}")
        if step == len(steps):
            break
        d_passed, d_ms, seed = steps[step]
        _perturb(kctx, seed)
        for t, kt in zip(ctx.targets, kctx.targets, strict=True):
            t.regions = _regions([r.as_tuple() for r in kt])
        ctx.passed_sample_intervals += d_passed
        kctx.passed_sample_intervals += d_passed
        now_ms += d_ms


# ---------------------------------------------------------------------------------------------
# hand-written scenarios (exact values)

ALL = (0, ULONG_MAX, 0, UINT_MAX, 0, UINT_MAX)


def _run_both(ctx, kctx, ops, now_ms):
    got = damond_pass(ctx, ops, now_ms)
    want = kref_pass(kctx, now_ms)
    assert got == want
    assert_same_state(ctx, kctx)
    return got


def test_quota_edge_split_and_continuation():
    """Appendix B #16/#18: the region at the quota edge is split, only the left piece is acted
    on; the next window resumes at ``charge_addr_from`` = end + 1, which makes it skip the
    first DAMON_MIN_REGION bytes of the following region."""
    rows = [(0, 4 * P, 0, 0, 0, 10), (4 * P, 8 * P, 0, 0, 0, 10), (8 * P, 12 * P, 0, 0, 0, 10)]
    desc = {"action": "pageout", "pattern": ALL, "quota": (0, 6 * P, 1000, 0, 0, 0)}
    ctx, kctx = make_pair([rows], [desc], P, 20)
    ops = FakeOps()

    assert _run_both(ctx, kctx, ops, 0) == [(0, 0, 4 * P, 0), (0, 4 * P, 6 * P, 0)]
    s = ctx.schemes[0]
    assert ctx.targets[0].regions.ranges() == [(0, 4 * P), (4 * P, 6 * P), (6 * P, 8 * P),
                                               (8 * P, 12 * P)]
    assert ctx.targets[0].regions.age.tolist() == [0, 0, 10, 10]  # right piece untouched
    assert s.stats.as_tuple() == (2, 6 * P, 2, 6 * P, 0)
    assert (s.quota.esz, s.quota.charged_sz) == (6 * P, 6 * P)
    assert s.quota.charge_target_from is ctx.targets[0]
    assert s.quota.charge_addr_from == 6 * P + 1

    # same window, next pass: quota exhausted, nothing happens
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 40
    assert _run_both(ctx, kctx, ops, 500) == []
    assert s.stats.as_tuple() == (2, 6 * P, 2, 6 * P, 0)

    # next window: qt_exceeds counted, continue from the marker; [6P, 7P) is skipped
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 60
    assert _run_both(ctx, kctx, ops, 1000) == [(0, 7 * P, 8 * P, 0), (0, 8 * P, 12 * P, 0)]
    assert ctx.targets[0].regions.ranges() == [(0, 4 * P), (4 * P, 6 * P), (6 * P, 7 * P),
                                               (7 * P, 8 * P), (8 * P, 12 * P)]
    assert ctx.targets[0].regions.age.tolist() == [0, 0, 10, 0, 0]
    assert s.stats.as_tuple() == (4, 11 * P, 4, 11 * P, 1)
    assert s.quota.charged_sz == 5 * P
    assert s.quota.charge_target_from is None and s.quota.charge_addr_from == 0

    # the window after: 5P < 6P was charged, no qt_exceeds; starts from the first region again
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 80
    assert _run_both(ctx, kctx, ops, 2000) == [(0, 0, 4 * P, 0), (0, 4 * P, 6 * P, 0)]
    assert s.stats.qt_exceeds == 1


def test_quota_continuation_min_region_1():
    """With DAMON_MIN_REGION 1 the skipped head is one byte."""
    rows = [(0, 10, 0, 0, 0, 3), (10, 20, 0, 0, 0, 3), (20, 30, 0, 0, 0, 3)]
    desc = {"action": "cold", "pattern": ALL, "quota": (0, 10, 0, 0, 0, 0)}
    ctx, kctx = make_pair([rows], [desc], 1, 20)
    ops = FakeOps()
    assert _run_both(ctx, kctx, ops, 0) == [(0, 0, 10, 0)]
    assert ctx.schemes[0].quota.charge_addr_from == 11
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 40
    # [10, 11) skipped; 9 bytes charged, then the next region is cut at the 1 byte left
    assert _run_both(ctx, kctx, ops, 0) == [(0, 11, 20, 0), (0, 20, 21, 0)]
    assert ctx.targets[0].regions.ranges() == [(0, 10), (10, 11), (11, 20), (20, 21),
                                               (21, 30)]
    assert ctx.schemes[0].stats.qt_exceeds == 1


def test_zero_byte_remainder_counts_a_try():
    """Appendix B #2: a quota remainder below DAMON_MIN_REGION rounds to 0 bytes; the kernel
    still counts a try (of 0 bytes) for every further matching region, acts on nothing, resets
    no age, and the window never counts as exceeded."""
    rows = [(0, P, 0, 0, 0, 7), (P, 2 * P, 0, 0, 0, 7), (2 * P, 3 * P, 0, 0, 0, 7)]
    desc = {"action": "pageout", "pattern": ALL, "quota": (0, P + 100, 1000, 0, 0, 0)}
    ctx, kctx = make_pair([rows], [desc], P, 20)
    ops = FakeOps()
    assert _run_both(ctx, kctx, ops, 0) == [(0, 0, P, 0)]
    s = ctx.schemes[0]
    assert s.stats.as_tuple() == (3, P, 1, P, 0)
    assert ctx.targets[0].regions.ranges() == [(0, P), (P, 2 * P), (2 * P, 3 * P)]
    assert ctx.targets[0].regions.age.tolist() == [0, 7, 7]
    assert s.quota.charged_sz == P
    assert s.quota.charge_target_from is None
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 40
    _run_both(ctx, kctx, ops, 1000)
    assert s.stats.qt_exceeds == 0


@pytest.mark.parametrize("first_action, expected", [
    ("pageout", [(0, 0, 100, 0), (0, 0, 100, 1)]),  # age reset to 0: the second one matches
    ("stat", [(0, 0, 100, 0)]),                       # stat keeps the age: it does not
])
def test_earlier_scheme_age_reset_visible_to_later_scheme(first_action, expected):
    """Appendix B #19: schemes run per region in list order; a non-stat action resets the
    region's age before the later scheme looks at it."""
    rows = [(0, 100, 0, 0, 0, 5)]
    first = {"action": first_action, "pattern": (0, ULONG_MAX, 0, 20, 5, 5),
             "quota": (0, 0, 0, 0, 0, 0)}
    second = {"action": "stat", "pattern": (0, ULONG_MAX, 0, 20, 0, 0),
              "quota": (0, 0, 0, 0, 0, 0)}
    ctx, kctx = make_pair([rows], [first, second], 1, 20)
    assert _run_both(ctx, kctx, FakeOps(), 0) == expected


def test_later_scheme_age_reset_not_seen_by_earlier_scheme():
    rows = [(0, 100, 0, 0, 0, 5)]
    first = {"action": "stat", "pattern": (0, ULONG_MAX, 0, 20, 0, 0),
             "quota": (0, 0, 0, 0, 0, 0)}
    second = {"action": "pageout", "pattern": (0, ULONG_MAX, 0, 20, 5, 5),
              "quota": (0, 0, 0, 0, 0, 0)}
    ctx, kctx = make_pair([rows], [first, second], 1, 20)
    assert _run_both(ctx, kctx, FakeOps(), 0) == [(0, 0, 100, 1)]
    assert ctx.targets[0].regions.age.tolist() == [0]


def test_min_score_skips_low_score_region_though_quota_remains():
    """Appendix B #12: min_score comes from the histogram of all matching regions (here 200
    bytes at cold score 99 cover the 150-byte quota, so min_score = 99); the hot region
    (score 50) is skipped while quota remains, and the next cold region is cut at the edge."""
    rows = [(0, 100, 0, 0, 0, 0), (100, 200, 10, 100000, 0, 0), (200, 300, 0, 0, 0, 0)]
    desc = {"action": "pageout", "pattern": (0, ULONG_MAX, 0, 20, 0, UINT_MAX),
            "quota": (0, 150, 1000, 0, 1, 0)}
    ctx, kctx = make_pair([rows], [desc], 1, 20)
    assert _run_both(ctx, kctx, FakeOps(), 0) == [(0, 0, 100, 0), (0, 200, 250, 0)]
    s = ctx.schemes[0]
    assert s.quota.min_score == 99
    assert s.stats.as_tuple() == (2, 150, 2, 150, 0)
    assert s.quota.charge_addr_from == 251


def test_min_score_against_age_reset_by_earlier_scheme():
    """Appendix B #12 + #19: min_score is set before the walk; an earlier scheme resetting a
    region's age lowers its cold score below min_score, so the quota-limited scheme skips it
    and ends the pass with quota left."""
    rows = [(0, 100, 0, 0, 0, 100), (100, 300, 0, 0, 0, 100)]
    willneed = {"action": "willneed", "pattern": (0, 100, 0, 20, 0, UINT_MAX),
                "quota": (0, 0, 0, 0, 0, 0)}
    pageout = {"action": "pageout", "pattern": ALL, "quota": (0, 300, 1000, 0, 0, 1)}
    ctx, kctx = make_pair([rows], [willneed, pageout], 1, 20)
    # cold score at age 100 (10 s) is 57; at age 0 it is 50
    assert _score("pageout", 0, 100, 0, 1) == 57 and _score("pageout", 0, 0, 0, 1) == 50
    assert _run_both(ctx, kctx, FakeOps(), 0) == [(0, 0, 100, 0), (0, 100, 300, 1)]
    s = ctx.schemes[1]
    assert s.quota.min_score == 57
    assert s.quota.charged_sz == 200 and s.quota.charge_target_from is None
    assert s.stats.as_tuple() == (1, 200, 1, 200, 0)


def test_skip_split_piece_keeps_age_reset_by_earlier_scheme():
    """The piece ``damos_skip_charged_region()`` splits off copies the age an earlier scheme
    just reset, so the later scheme scores it as a young region: cold score 50 < min_score 57,
    skipped."""
    rows = [(0, 100, 0, 0, 0, 100), (100, 300, 0, 0, 0, 100), (300, 400, 0, 0, 0, 100)]
    willneed = {"action": "willneed", "pattern": ALL, "quota": (0, 0, 0, 0, 0, 0)}
    pageout = {"action": "pageout", "pattern": ALL, "quota": (0, 300, 1000, 0, 0, 1),
               "charge_target": 0, "charge_addr": 150}
    ctx, kctx = make_pair([rows], [willneed, pageout], 1, 20)
    assert _run_both(ctx, kctx, FakeOps(), 0) == [(0, 0, 100, 0), (0, 100, 300, 0),
                                                  (0, 300, 400, 0)]
    s = ctx.schemes[1]
    assert s.quota.min_score == 57
    assert s.stats.as_tuple() == (0, 0, 0, 0, 0)
    assert s.quota.charge_target_from is None and s.quota.charge_addr_from == 0
    assert ctx.targets[0].regions.ranges() == [(0, 100), (100, 150), (150, 300), (300, 400)]
    assert ctx.targets[0].regions.age.tolist() == [0, 0, 0, 0]


def test_qt_exceeds_counted_when_next_window_opens():
    rows = [(0, 200, 0, 0, 0, 0)]
    desc = {"action": "pageout", "pattern": ALL, "quota": (0, 100, 1000, 0, 0, 0)}
    ctx, kctx = make_pair([rows], [desc], 1, 20)
    ops = FakeOps()
    s = ctx.schemes[0]
    assert _run_both(ctx, kctx, ops, 0) == [(0, 0, 100, 0)]
    assert s.stats.qt_exceeds == 0  # exhausted, but not yet counted
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 40
    assert _run_both(ctx, kctx, ops, 999) == []
    assert s.stats.qt_exceeds == 0
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 60
    # the marker is 101: region [100, 200) is the target's last region, so it is skipped and
    # the marker cleared; nothing is charged in this window
    assert _run_both(ctx, kctx, ops, 1000) == []
    assert s.stats.qt_exceeds == 1
    assert s.quota.charge_target_from is None
    ctx.passed_sample_intervals = kctx.passed_sample_intervals = 80
    assert _run_both(ctx, kctx, ops, 2000) == [(0, 0, 100, 0)]
    assert s.stats.qt_exceeds == 1  # 0 bytes charged in the previous window


def test_nothing_due_changes_nothing():
    rows = [(0, 100, 0, 0, 0, 0)]
    desc = {"action": "pageout", "pattern": ALL, "quota": (0, 0, 0, 0, 0, 0),
            "next_apply_sis": 21}
    ctx, kctx = make_pair([rows], [desc], 1, 20)
    assert _run_both(ctx, kctx, FakeOps(), 0) is None
    assert ctx.schemes[0].next_apply_sis == 21
    inactive = dict(desc, next_apply_sis=0, activated=False)
    ctx, kctx = make_pair([rows], [inactive], 1, 20)
    assert _run_both(ctx, kctx, FakeOps(), 0) is None
    assert ctx.schemes[0].next_apply_sis == 0  # not rescheduled either


class _Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


class _SlowOps(FakeOps):
    """Applying takes 2 ms of the fake clock per call."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def apply_scheme(self, ctx, actions):
        self.clock.ns += 2_000_000
        return super().apply_scheme(ctx, actions)


def test_time_quota_uses_measured_throughput():
    """Appendix B #11: without history a 1 ms quota allows PAGE_SIZE * 1024 bytes; once 10
    pages took 2 ms to apply, the next window's effective quota is 10 * 4096 / 2 = 20480
    bytes (5 pages), so the next pass stops at the quota edge."""
    rows = [(i * P, (i + 1) * P, 0, 0, 0, 0) for i in range(10)]
    desc = {"action": "pageout", "pattern": ALL, "quota": (1, 0, 1000, 0, 0, 0)}
    ctx, _ = make_pair([rows], [desc], P, 20)
    clock = _Clock()
    ctx.clock_ns = clock
    ops = _SlowOps(clock)
    s = ctx.schemes[0]

    ctx.ops = ops
    run_steps(apply_schemes(ctx))
    assert s.quota.esz == 4096 * 1024
    assert len(ops.applied_batches[-1]) == 10
    assert s.quota.total_charged_ns == 2_000_000
    assert s.stats.as_tuple() == (10, 10 * P, 10, 10 * P, 0)

    clock.ns = 1_000_000_000  # one reset interval later
    ctx.passed_sample_intervals = 40
    ctx.ops = ops
    run_steps(apply_schemes(ctx))
    assert s.quota.total_charged_sz == 10 * P
    assert s.quota.esz == 10 * P * 1_000_000 // 2_000_000 == 5 * P
    assert [(a.start, a.end) for a in ops.applied_batches[-1]] == [
        (i * P, (i + 1) * P) for i in range(5)]
    assert s.quota.charge_addr_from == 5 * P + 1
    assert s.quota.total_charged_ns == 4_000_000


def test_apply_schemes_matches_reference_with_a_still_clock():
    rows = [(0, 4 * P, 0, 0, 0, 10), (4 * P, 8 * P, 0, 0, 0, 10), (9 * P, 12 * P, 3, 30000, 0, 1)]
    descs = [{"action": "pageout", "pattern": ALL, "quota": (0, 6 * P, 1000, 0, 1, 1)},
             {"action": "stat", "pattern": ALL, "quota": (0, 0, 0, 0, 0, 0)}]
    ctx, kctx = make_pair([rows, rows[1:]], descs, P, 20)
    ctx.clock_ns = lambda: 0
    ops = FakeOps()
    ctx.ops = ops
    run_steps(apply_schemes(ctx))
    want = kref_pass(kctx, 0)
    assert [(a.target_index, a.start, a.end, a.scheme_index)
            for a in ops.applied_batches[-1]] == want
    assert_same_state(ctx, kctx)


# ---------------------------------------------------------------------------------------------
# watermarks

RECLAIM_WMARKS = WatermarksSpec(metric="free_mem_rate", interval_us=5_000_000, high=500,
                                mid=400, low=200)


def _wmark_scheme(activated: bool = True) -> Scheme:
    s = Scheme(spec=SchemeSpec(wmarks=RECLAIM_WMARKS))
    s.wmark_activated = activated
    return s


@pytest.mark.parametrize("start_active, metric, wait, active", [
    (True, 600, 5_000_000, False),   # above high: off
    (False, 600, 5_000_000, False),
    (True, 501, 5_000_000, False),
    (True, 500, 0, True),            # == high: an active scheme stays on
    (False, 500, 5_000_000, False),  # ... an inactive one stays off
    (True, 450, 0, True),            # between mid and high: unchanged
    (False, 450, 5_000_000, False),
    (False, 400, 5_000_000, False),  # == mid: still off
    (False, 399, 0, True),           # below mid: on
    (False, 300, 0, True),
    (True, 300, 0, True),
    (False, 200, 0, True),           # == low: on
    (True, 199, 5_000_000, False),   # below low: off
    (True, 100, 5_000_000, False),
    (False, 100, 5_000_000, False),
])
def test_wmark_wait_us_vectors(start_active, metric, wait, active):
    s = _wmark_scheme(start_active)
    assert wmark_wait_us(s, metric) == wait
    assert s.wmark_activated is active
    assert kref.wmark_wait_us(metric, 500, 400, 200, 5_000_000, start_active) == (wait, active)


def test_wmark_hysteresis_sequence():
    """DAMON_RECLAIM defaults: free 60% -> off, 45% -> stays off, 30% -> on, 45% -> stays on,
    10% -> off."""
    s = _wmark_scheme()  # damon_new_scheme() starts activated
    seq = [(600, 5_000_000, False), (450, 5_000_000, False), (300, 0, True), (450, 0, True),
           (100, 5_000_000, False), (450, 5_000_000, False), (350, 0, True)]
    for metric, wait, active in seq:
        assert wmark_wait_us(s, metric) == wait, metric
        assert s.wmark_activated is active, metric


@pytest.mark.parametrize("start_active", [True, False])
def test_wmark_metric_none_always_active(start_active):
    s = _wmark_scheme(start_active)
    assert wmark_wait_us(s, None) == 0
    assert s.wmark_activated is start_active  # the kernel returns before touching the state


def test_wait_activation_min_over_schemes():
    ctx = Context(ops_name="fake")
    ctx.schemes = [_wmark_scheme(), _wmark_scheme(False)]
    # both above high: both off, wait the interval
    assert wait_activation_us(ctx, lambda metric: 600) == 5_000_000
    assert [s.wmark_activated for s in ctx.schemes] == [False, False]
    # a scheme with metric none keeps the context monitoring; the others are still updated
    ctx.schemes.append(Scheme(spec=SchemeSpec()))
    assert wait_activation_us(ctx, lambda metric: 300) == 0
    assert [s.wmark_activated for s in ctx.schemes] == [True, True, True]
    ctx.schemes = []
    assert wait_activation_us(ctx, lambda metric: 600) == 0


def test_identical_schemes_are_told_apart_by_identity():
    """Found by the differential test: the first of two identical schemes still carries charge
    continuation markers on a target's only (last) region, so the kernel skips it there and
    clears the markers; only the second scheme acts. (The reference once compared schemes by
    value and credited the action to the first.)"""
    targets = [[(0, 1, 0, 0, 0, 0)]]
    desc = {"action": "willneed", "pattern": (0, 1, 0, 5, 0, 0), "quota": (0, 0, 0, 0, 2, 0),
            "activated": True, "next_apply_sis": 0, "apply_interval_us": 0}
    ctx, kctx = make_pair(targets, [{**desc, "charge_target": 0, "charge_addr": 0}, desc],
                          1, 20)
    assert damond_pass(ctx, FakeOps(), 100) == kref_pass(kctx, 100) == [(0, 0, 1, 1)]
    assert ctx.schemes[0].quota.charge_target_from is None
