"""Quota goals (6.8+) and monitoring intervals auto-tuning (6.15+) against the kernel's rules
(``damon_feed_loop_next_input()``, ``damos_quota_score()``, ``damos_set_effective_quota()``,
``damon_get_intervals_score()``, ``damon_get_intervals_adaptation_bp()``,
``kdamond_tune_intervals()`` of Linux 6.18's ``mm/damon/core.c``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from damond.core import kdamond as loop
from damond.core.context import Context, QuotaGoal, Scheme, Target
from damond.core.intervals import adaptation_bp, intervals_score, next_sample_us, tune_intervals
from damond.core.quota import (
    feed_loop_next_input,
    open_window_if_due,
    quota_score,
    set_effective_quota,
)
from damond.core.regions import Regions
from damond.core.spec import (
    ULONG_MAX,
    AttrsSpec,
    IntervalsGoalSpec,
    QuotaGoalSpec,
    QuotaSpec,
    SchemeSpec,
)

P = 4096
inputs = st.integers(min_value=0, max_value=ULONG_MAX)
scores = st.integers(min_value=0, max_value=40_000)


@given(inputs, scores)
def test_feed_loop_follows_the_kernels_rule(last, score):
    nxt = feed_loop_next_input(last, score)
    assert 0 <= nxt <= ULONG_MAX
    if score == 10_000:
        assert nxt == last
    elif score >= 20_000:
        assert nxt == 10_000
    elif score > 10_000:  # over-achieving: shrink, never below the minimum input
        assert nxt <= max(last, 10_000) and nxt >= 10_000
        if last < ULONG_MAX // (score - 10_000):
            assert nxt == max(last - last * (score - 10_000) // 10_000, 10_000)
    else:  # under-achieving: grow by the missing fraction (saturating)
        assert nxt >= last
        if last < ULONG_MAX // (10_000 - score) and last + last * (10_000 - score) // 10_000 \
                < ULONG_MAX:
            assert nxt == last + last * (10_000 - score) // 10_000


def scheme_with_goals(*goals, ms=0, sz=0, reset=0) -> Scheme:
    s = Scheme(spec=SchemeSpec(quota=QuotaSpec(ms=ms, sz=sz, reset_interval_ms=reset,
                                               goals=list(goals))))
    s.quota.goals = [QuotaGoal(spec=g, current_value=g.current_value) for g in goals]
    return s


@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 10**7)), min_size=1,
                max_size=4))
def test_score_is_the_highest_goal_ratio(pairs):
    goals = [QuotaGoal(spec=QuotaGoalSpec(target_value=t, current_value=c), current_value=c)
             for t, c in pairs]
    assert quota_score(goals, lambda g: None) == max(c * 10_000 // t for t, c in pairs)


def test_psi_goal_scores_the_stall_time_since_the_last_measurement():
    readings = iter([1000, 1600, 1600])
    goal = QuotaGoal(spec=QuotaGoalSpec(target_metric="some_mem_psi_us", target_value=300))
    assert quota_score([goal], lambda g: next(readings)) == 1000 * 10_000 // 300
    assert quota_score([goal], lambda g: next(readings)) == 600 * 10_000 // 300
    assert quota_score([goal], lambda g: next(readings)) == 0


@given(st.integers(0, 30_000), st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_effective_quota_with_a_goal(score_bp, esz_bp, sz):
    goal = QuotaGoalSpec(target_value=10_000, current_value=score_bp)
    s = scheme_with_goals(goal, sz=sz)
    s.quota.esz_bp = esz_bp
    set_effective_quota(s)
    expect_bp = feed_loop_next_input(max(esz_bp, 10_000), score_bp)
    assert s.quota.esz_bp == expect_bp
    expect = expect_bp // 10_000
    if sz and sz < expect:
        expect = sz
    assert s.quota.esz == expect


def test_goal_loop_grows_the_quota_while_the_goal_is_unmet_and_shrinks_it_after():
    goal = QuotaGoalSpec(target_value=100, current_value=50)
    s = scheme_with_goals(goal, reset=10)
    open_window_if_due(s, 0)
    first = s.quota.esz
    for now in range(10, 200, 10):
        open_window_if_due(s, now)
    grown = s.quota.esz
    assert grown > first
    s.quota.goals[0].current_value = 150
    for now in range(200, 260, 10):
        open_window_if_due(s, now)
    assert s.quota.esz < grown


def test_first_window_with_zero_reset_interval_steps_twice():
    # kernel: the 'first charge window' block and the 'new window' block both run
    s = scheme_with_goals(QuotaGoalSpec(target_value=100, current_value=0))
    open_window_if_due(s, 5)
    once = feed_loop_next_input(10_000, 0)
    assert s.quota.esz_bp == feed_loop_next_input(once, 0)


# --- intervals tuning ----------------------------------------------------------------------


@given(st.integers(0, 40_000))
def test_adaptation_never_shrinks_by_more_than_half(score):
    a = adaptation_bp(score)
    assert 5_000 <= a <= 20_000
    if score == 10_000:
        assert a == 10_000
    if score < 10_000:
        assert a > 10_000


@given(st.integers(1, 10**7), st.integers(5_000, 20_000), st.integers(1, 10**6),
       st.integers(0, 10**7))
def test_next_sample_stays_in_the_goal_range(sample, adaptation, lo, span):
    goal = IntervalsGoalSpec(access_bp=100, aggrs=1, min_sample_us=lo, max_sample_us=lo + span)
    new = next_sample_us(sample, adaptation, goal)
    assert lo <= new <= lo + span
    assert new == max(lo, min(lo + span, sample * adaptation // 10_000))


def tuning_ctx(nr_accesses: list[int], goal: IntervalsGoalSpec, sample=5000, aggr=100_000):
    attrs = AttrsSpec(sample_us=sample, aggr_us=aggr, update_us=10**7, min_nr_regions=3,
                      max_nr_regions=100, intervals_goal=goal)
    ctx = Context(ops_name="x", attrs=attrs, min_region=P, rng=np.random.default_rng(0))
    ranges = [(i * 4 * P, (i + 1) * 4 * P) for i in range(len(nr_accesses))]
    t = Target(regions=Regions.from_ranges(ranges))
    t.regions.nr_accesses[:] = nr_accesses
    ctx.targets = [t]
    ctx.clock_ns = lambda: 0
    loop.init_timers(ctx)
    return ctx


@given(st.lists(st.integers(0, 20), min_size=1, max_size=6), st.integers(1, 10_000))
def test_tuning_matches_the_kernels_rule(nr, access_bp):
    goal = IntervalsGoalSpec(access_bp=access_bp, aggrs=3, min_sample_us=1000,
                             max_sample_us=50_000)
    ctx = tuning_ctx(nr, goal)
    samples = ctx.aggr_samples
    assert samples == 20
    events = sum(4 * P * n for n in nr)
    max_events = 4 * P * len(nr) * samples
    score = events * 10_000 // (max_events * access_bp // 10_000 or 1)
    assert intervals_score(ctx) == score
    expect = next_sample_us(5000, adaptation_bp(score), goal)
    changed = tune_intervals(ctx)
    assert changed == (adaptation_bp(score) != 10_000)
    assert ctx.attrs.sample_us == (expect if changed else 5000)
    assert ctx.attrs.aggr_us == ctx.attrs.sample_us * samples
    assert ctx.aggr_samples == samples  # kept while tuning


def test_the_loop_tunes_every_aggrs_aggregations():
    class Hot:
        """every sampled page accessed: far more events than a 1% goal wants."""

        def prepare_access_checks(self, ctx):
            pass

        def check_accesses(self, ctx):
            return [np.ones(len(t.regions), dtype=bool) for t in ctx.targets]

        def target_valid(self, ctx):
            return None

        def update(self, ctx):
            pass

    goal = IntervalsGoalSpec(access_bp=100, aggrs=2, min_sample_us=100, max_sample_us=5000)
    ctx = tuning_ctx([0, 0, 0], goal, sample=5000, aggr=20_000)
    ctx.ops = Hot()
    loop.refresh_sz_limit(ctx)
    assert ctx.next_intervals_tune_sis == 8
    for _ in range(7):
        loop.run_steps(loop.kdamond_iteration(ctx))
    assert ctx.attrs.sample_us == 5000
    loop.run_steps(loop.kdamond_iteration(ctx))
    assert ctx.attrs.sample_us == 2500  # halved at most
    assert ctx.attrs.aggr_us == 10_000 and ctx.aggr_samples == 4
    assert ctx.next_intervals_tune_sis == 16


def test_apply_pass_reads_goal_metrics_through_the_operation_set():
    from damond.core.build import build_scheme

    class Ops:
        def get_scheme_score(self, ctx, target, regions, scheme):
            return None

        def apply_scheme(self, ctx, actions):
            return [0] * len(actions)

        def goal_metric(self, ctx, goal):
            return {"node_mem_free_bp": 2500}[goal.metric]

    ctx = tuning_ctx([0], IntervalsGoalSpec())
    ctx.ops = Ops()
    spec = SchemeSpec(quota=QuotaSpec(reset_interval_ms=1000, goals=[
        QuotaGoalSpec(target_metric="node_mem_free_bp", target_value=5000)]))
    ctx.schemes = [build_scheme(spec)]
    loop.init_timers(ctx)
    ctx.passed_sample_intervals = ctx.schemes[0].next_apply_sis
    loop.run_steps(loop.apply_schemes(ctx))
    g = ctx.schemes[0].quota.goals[0]
    assert g.current_value == 2500
    assert ctx.schemes[0].quota.esz_bp == feed_loop_next_input(10_000, 5000)
