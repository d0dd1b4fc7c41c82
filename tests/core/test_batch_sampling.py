"""Batch sampling (``DamonOperations.sample_aggregation``) counts exactly what the per-sample
loop counts.

An operation set whose accesses are a pure function of (sample number, page) is driven twice
through the same core loop with the same seed: once one sample per pass (``prepare`` / sleep /
``check``), once in batches. Regions, counters, ages, moving averages, scheme stats and the
timers must agree after every aggregation, with schemes whose apply interval is shorter than
the aggregation interval, an update interval, and targets of different sizes; only the
requests' serving points differ (once per batch).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from damond.core import kdamond as loop
from damond.core.context import Context, Scheme, Target
from damond.core.operations import SampledBatch
from damond.core.regions import Regions
from damond.core.spec import AccessPatternSpec, AttrsSpec, QuotaSpec, SchemeSpec
from damond.ops.batch import run_batch

P = 4096


def accessed(k: int, starts: np.ndarray, salt: int) -> np.ndarray:
    """Sample k's verdict for regions starting at ``starts``: pages below 64 are hot (3 samples
    in 4), the rest cold (1 in 16), mixed by a hash so that neighbours differ."""
    page = starts // P
    h = (page * 2654435761 + k * 40503 + salt) % 16
    return np.where(page < 64, h < 12, h < 1)


class PatternOps:
    """Per-sample hooks and a batch hook answering from ``accessed``; both count samples."""

    name = "pattern"

    def __init__(self, salt: int, *, batch: bool) -> None:
        self.salt = salt
        self.k = 0
        self.sample_aggregation = self._batch if batch else None
        self.batch_sizes: list[int] = []
        self.applied: list[tuple[int, int, int]] = []

    def init(self, ctx):
        pass

    def update(self, ctx):
        pass

    def prepare_access_checks(self, ctx):
        pass

    def check_accesses(self, ctx):
        out = [accessed(self.k, t.regions.start, self.salt) for t in ctx.targets]
        self.k += 1
        return out

    def _batch(self, ctx, n, interval_ns, first_deadline_ns, stop) -> SampledBatch:
        self.batch_sizes.append(n)
        return run_batch(lambda: None, lambda: self.check_accesses(ctx),
                         [len(t.regions) for t in ctx.targets], nr_samples=n,
                         interval_ns=interval_ns, first_deadline_ns=first_deadline_ns,
                         stop=stop, kind="pattern")

    def get_scheme_score(self, ctx, target, regions, scheme):
        return None

    def apply_scheme(self, ctx, actions):
        self.applied.extend((self.k, a.start, a.end) for a in actions)
        return [a.end - a.start for a in actions]

    def target_valid(self, ctx):
        return [True] * len(ctx.targets)

    def cleanup(self, ctx):
        pass

    def wmark_metric(self, ctx, metric):
        return None


def make_ctx(ops, *, seed: int, aggr: int, update: int, apply: int) -> Context:
    attrs = AttrsSpec(sample_us=1000, aggr_us=aggr * 1000, update_us=update * 1000,
                      min_nr_regions=3, max_nr_regions=40)
    ctx = Context(ops_name="pattern", attrs=attrs, min_region=P,
                  rng=np.random.default_rng(seed))
    ctx.ops = ops
    ctx.batch_sampling = ops.sample_aggregation is not None
    ctx.targets = [Target(regions=Regions.from_ranges([(0, 128 * P)])),
                   Target(regions=Regions.from_ranges([(1 << 30, (1 << 30) + 512 * P)]))]
    hot = AccessPatternSpec(min_sz=0, max_sz=1 << 62, min_nr_accesses=2,
                            max_nr_accesses=1 << 31, min_age=0, max_age=1 << 31)
    ctx.schemes = [Scheme(spec=SchemeSpec(action="stat", pattern=hot,
                                          apply_interval_us=apply * 1000)),
                   Scheme(spec=SchemeSpec(action="pageout", pattern=hot,
                                          quota=QuotaSpec(sz=64 * P, reset_interval_ms=7)))]
    ctx.clock_ns = lambda: ops.k * 1_000_000
    return ctx


def run(ops, passes_until_samples: int, **kw) -> tuple[list, Context]:
    ctx = make_ctx(ops, **kw)
    loop.run_steps(loop.kdamond_start(ctx))
    seen: list = []

    def on_aggregated() -> None:
        seen.append((ctx.passed_sample_intervals, [
            (t.regions.start.tolist(), t.regions.end.tolist(), t.regions.nr_accesses.tolist(),
             t.regions.nr_accesses_bp.tolist(), t.regions.age.tolist()) for t in ctx.targets]))

    while ctx.passed_sample_intervals < passes_until_samples:
        assert loop.run_steps(loop.kdamond_iteration(ctx), on_aggregated=on_aggregated)
    return seen, ctx


def _stats(ctx: Context) -> list:
    return [s.stats.as_tuple() for s in ctx.schemes]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), salt=st.integers(0, 1000),
       aggr=st.integers(2, 12), update_mult=st.integers(1, 4), apply=st.integers(1, 15))
def test_batches_count_exactly_what_single_samples_count(seed, salt, aggr, update_mult, apply):
    kw = dict(seed=seed, aggr=aggr, update=aggr * update_mult, apply=apply)
    single_ops, batch_ops = PatternOps(salt, batch=False), PatternOps(salt, batch=True)
    # both stop at the same aggregation boundary (a batch never crosses one)
    single, single_ctx = run(single_ops, 10 * aggr, **kw)
    batched, batch_ctx = run(batch_ops, 10 * aggr, **kw)
    assert single and batched == single
    assert _stats(batch_ctx) == _stats(single_ctx)
    assert batch_ops.applied == single_ops.applied
    assert (batch_ctx.passed_sample_intervals, batch_ctx.next_aggregation_sis,
            batch_ctx.next_ops_update_sis) == (single_ctx.passed_sample_intervals,
                                               single_ctx.next_aggregation_sis,
                                               single_ctx.next_ops_update_sis)
    # a batch never runs past a sample where more than counting happens
    assert max(batch_ops.batch_sizes) <= min(aggr, apply)


def test_batches_span_an_aggregation_interval_at_the_kernels_defaults():
    ops = PatternOps(0, batch=True)
    attrs = AttrsSpec()  # 5 ms, 100 ms, 1 s
    ctx = Context(ops_name="pattern", attrs=attrs, min_region=P, rng=np.random.default_rng(0))
    ctx.ops, ctx.batch_sampling = ops, True
    ctx.targets = [Target(regions=Regions.from_ranges([(0, 1024 * P)]))]
    loop.run_steps(loop.kdamond_start(ctx))
    for _ in range(10):
        loop.run_steps(loop.kdamond_iteration(ctx))
    assert ops.batch_sizes == [20] * 10
    assert ctx.passed_sample_intervals == 200


def test_a_stopped_batch_counts_only_the_samples_it_took():
    ops = PatternOps(3, batch=True)
    ctx = make_ctx(ops, seed=1, aggr=10, update=20, apply=10)
    loop.run_steps(loop.kdamond_start(ctx))
    real = ops._batch

    def stopped_after_four(ctx, n, interval_ns, deadline_ns, stop):
        out = real(ctx, 4, interval_ns, deadline_ns, stop)  # as if stop was set after 4
        return out

    ops.sample_aggregation = stopped_after_four
    ctx.ops = ops
    loop.run_steps(loop.kdamond_iteration(ctx))
    assert ctx.passed_sample_intervals == 4
    assert ops.k == 4


def test_run_batch_keeps_an_absolute_schedule_and_honours_stop():
    import time

    calls: list[str] = []
    stop = bytearray(1)

    def check():
        calls.append("check")
        if len(calls) == 3:
            stop[0] = 1
        return [np.ones(2, dtype=bool)]

    t0 = time.monotonic_ns()
    res = run_batch(lambda: None, check, [2], nr_samples=10, interval_ns=2_000_000,
                    first_deadline_ns=t0 + 2_000_000, stop=stop, kind="t")
    assert res.samples_done == 3 and res.accessed[0].shape == (3, 2)
    assert (res.lateness_ns >= 0).all()
    # the third check was due 6 ms after t0: it cannot have come earlier
    assert time.monotonic_ns() - t0 >= 6_000_000
    # a deadline long past is an overrun, and the schedule restarts from then
    res = run_batch(lambda: None, lambda: [np.zeros(1, dtype=bool)], [1], nr_samples=2,
                    interval_ns=1_000_000, first_deadline_ns=1, stop=bytearray(1), kind="t")
    assert res.overruns == 1 and res.samples_done == 2


def test_quiet_targets_coalesce_the_rest_of_the_batch_into_its_last_sample():
    events: list[str] = []
    state = {"quiet": True, "k": 0}

    def prepare():
        events.append("prepare")

    def check():
        events.append("check")
        state["k"] += 1
        return [np.array([state["k"] == 2])]  # the span's check finds the access

    answers = iter([False, True])  # not quiet at the start, quiet after the first check
    res = run_batch(prepare, check, [1], nr_samples=6, interval_ns=1_000_000,
                    first_deadline_ns=0, stop=bytearray(1), kind="t",
                    quiet=lambda: next(answers))
    # sample 0 is taken; samples 1-4 are coalesced; sample 5 checks the span without clearing
    assert events == ["prepare", "check", "check"]
    assert res.samples_done == 6 and res.coalesced == 4
    assert res.accessed[0][:, 0].tolist() == [False, False, False, False, False, True]
    # quiet already at the start (the last batch ended quiet): one check, at the end
    events.clear()
    state["k"] = 1
    res = run_batch(prepare, check, [1], nr_samples=6, interval_ns=1_000_000,
                    first_deadline_ns=0, stop=bytearray(1), kind="t",
                    quiet=lambda: state["quiet"])
    assert events == ["check"] and res.coalesced == 5
    assert res.accessed[0][:, 0].tolist() == [False] * 5 + [True]
    # a target that is not quiet is sampled one by one
    events.clear()
    state.update(quiet=False, k=0)
    res = run_batch(prepare, check, [1], nr_samples=3, interval_ns=1_000_000,
                    first_deadline_ns=0, stop=bytearray(1), kind="t",
                    quiet=lambda: state["quiet"])
    assert events == ["prepare", "check"] * 3 and res.coalesced == 0
