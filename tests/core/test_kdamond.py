"""The kdamond loop (``damond.core.kdamond``): the order of its effects, its timers, and the
watermark wait, driven step by step exactly as the scheduler drives it.

Expected orders follow ``kdamond_fn()`` of Linux v6.7+: stop check, (watermarks),
``prepare_access_checks``, sleep, ``check_accesses``, ``kdamond_call()``, schemes, and at the
aggregation boundary the tracepoint, reset and split; ``ops.update`` at the update boundary.
"""

from __future__ import annotations

import numpy as np

from damond.core import kdamond as loop
from damond.core.context import Context, Scheme, Target
from damond.core.regions import Regions
from damond.core.spec import AccessPatternSpec, AttrsSpec, SchemeSpec, WatermarksSpec

P = 4096


class RecordingOps:
    """An operation set that records each callback the loop asks for; every region's sampled
    page is found accessed in every sample."""

    name = "recording"

    def __init__(self, metric_value: int | None = None) -> None:
        self.calls: list[str] = []
        self.metric_value = metric_value
        self.valid = True

    def init(self, ctx):
        self.calls.append("init")

    def update(self, ctx):
        self.calls.append("update")

    def prepare_access_checks(self, ctx):
        self.calls.append("prepare_access_checks")

    def check_accesses(self, ctx):
        self.calls.append("check_accesses")
        return [np.ones(len(t.regions), dtype=bool) for t in ctx.targets]

    def get_scheme_score(self, ctx, target, regions, scheme):
        return None

    def apply_scheme(self, ctx, actions):
        self.calls.append(f"apply_scheme({len(actions)})")
        return [a.end - a.start for a in actions]

    def target_valid(self, ctx):
        self.calls.append("target_valid")
        return [self.valid] * len(ctx.targets)

    def cleanup(self, ctx):
        self.calls.append("cleanup")

    def wmark_metric(self, ctx, metric):
        self.calls.append(f"wmark_metric({metric})")
        return self.metric_value


def make_ctx(ops, *, schemes=()) -> Context:
    # 5 ms samples, 4 samples per aggregation, 8 per operations update
    attrs = AttrsSpec(sample_us=5000, aggr_us=20000, update_us=40000, min_nr_regions=1,
                      max_nr_regions=10)
    ctx = Context(ops_name="recording", attrs=attrs, min_region=P,
                  rng=np.random.default_rng(1))
    ctx.ops = ops
    ctx.targets = [Target(regions=Regions.from_ranges([(0, 4 * P)]))]
    ctx.schemes = [Scheme(spec=s) for s in schemes]
    ctx.clock_ns = lambda: 0
    return ctx


def trace_effects(steps) -> tuple[list[str], object]:
    """Drive ``steps`` like a driver does, naming each effect; returns (names, result)."""
    names: list[str] = []
    value = None
    while True:
        try:
            effect = steps.send(value)
        except StopIteration as done:
            return names, done.value
        value = None
        if isinstance(effect, loop.OpsCall):
            names.append(effect.fn.__name__ + ("!" if effect.may_block else ""))
            value = effect.fn(*effect.args)
        elif isinstance(effect, loop.ActivationWait):
            names.append(f"ActivationWait({effect.us})")
        else:
            names.append(type(effect).__name__)


def test_start_arms_timers_and_calls_init():
    ops = RecordingOps()
    ctx = make_ctx(ops)
    names, _ = trace_effects(loop.kdamond_start(ctx))
    assert names == ["init"]
    assert (ctx.passed_sample_intervals, ctx.next_aggregation_sis, ctx.next_ops_update_sis) == (
        0, 4, 8)
    assert ctx.sz_limit > 0


def test_iterations_follow_the_kernels_order():
    ops = RecordingOps()
    ctx = make_ctx(ops)
    trace_effects(loop.kdamond_start(ctx))
    sample = ["target_valid", "prepare_access_checks", "SampleWait", "check_accesses",
              "ServeRequests"]
    per_iteration = [trace_effects(loop.kdamond_iteration(ctx)) for _ in range(8)]
    assert all(result is True for _, result in per_iteration)
    assert [names for names, _ in per_iteration] == [
        sample, sample, sample, sample + ["Aggregated"],
        sample, sample, sample, sample + ["Aggregated", "update!"]]
    assert ctx.passed_sample_intervals == 8
    assert (ctx.next_aggregation_sis, ctx.next_ops_update_sis) == (12, 16)


def test_aggregated_sees_the_completed_counts_before_reset():
    ops = RecordingOps()
    ctx = make_ctx(ops)
    loop.run_steps(loop.kdamond_start(ctx))
    seen: list[int] = []

    def on_aggregated() -> None:
        seen.extend(int(n) for n in ctx.targets[0].regions.nr_accesses)

    for _ in range(4):
        loop.run_steps(loop.kdamond_iteration(ctx), on_aggregated=on_aggregated)
    # every sample found every region accessed: 4 of 4 at the boundary, then reset to 0
    assert seen and set(seen) == {4}
    assert set(ctx.targets[0].regions.nr_accesses.tolist()) == {0}


def test_schemes_run_after_requests_and_blocking_calls_are_marked():
    ops = RecordingOps()
    everything = AccessPatternSpec(min_sz=0, max_sz=1 << 62, min_nr_accesses=0,
                                   max_nr_accesses=1 << 31, min_age=0, max_age=1 << 31)
    ctx = make_ctx(ops, schemes=[SchemeSpec(action="stat", pattern=everything)])
    loop.run_steps(loop.kdamond_start(ctx))
    names = [trace_effects(loop.kdamond_iteration(ctx))[0] for _ in range(4)]
    # the scheme's apply interval is the aggregation interval: one pass, at the 4th sample
    assert names[3][4:] == ["ServeRequests", "apply_scheme!", "Aggregated"]
    assert all("apply_scheme!" not in n for n in names[:3])
    stats = ctx.schemes[0].stats
    assert stats.nr_tried >= 1 and stats.sz_tried == stats.sz_applied == 4 * P


def test_invalid_targets_stop_the_loop_before_sampling():
    ops = RecordingOps()
    ctx = make_ctx(ops)
    loop.run_steps(loop.kdamond_start(ctx))
    ops.valid = False
    names, result = trace_effects(loop.kdamond_iteration(ctx))
    assert (names, result) == (["target_valid"], False)
    names, _ = trace_effects(loop.kdamond_stop(ctx))
    assert names == ["cleanup"]
    assert len(ctx.targets[0].regions) == 0


def test_watermarks_wait_serve_requests_and_restart_the_pass():
    wmarks = WatermarksSpec(metric="free_mem_rate", interval_us=1_000_000, high=800, mid=500,
                            low=200)
    ops = RecordingOps(metric_value=900)  # above high: deactivated
    ctx = make_ctx(ops, schemes=[SchemeSpec(action="stat", wmarks=wmarks)])
    loop.run_steps(loop.kdamond_start(ctx))
    waits: list[int] = []

    def on_activation_wait(us: int) -> None:
        waits.append(us)
        if len(waits) == 2:
            ops.metric_value = 400  # below mid: the scheme activates at the next check

    ops.calls.clear()
    result = loop.run_steps(loop.kdamond_iteration(ctx), on_activation_wait=on_activation_wait)
    assert result is True  # it waited: the pass starts again
    assert waits == [1_000_000, 1_000_000]
    assert ops.calls == ["target_valid", "wmark_metric(free_mem_rate)",
                         "target_valid", "wmark_metric(free_mem_rate)",
                         "target_valid", "wmark_metric(free_mem_rate)"]
    assert ctx.passed_sample_intervals == 0
    names, result = trace_effects(loop.kdamond_iteration(ctx))
    assert result is True
    assert names[:4] == ["target_valid", "wmark_metric", "prepare_access_checks", "SampleWait"]
    assert ctx.schemes[0].wmark_activated and ctx.passed_sample_intervals == 1
