"""The kdamond loop, once: ``kdamond_fn()`` of Linux v6.7+ (sample-count timers) as steps.

The core does no I/O and owns no clock, yet the loop it describes sleeps, calls operation sets
that make system calls, serves user requests and emits tracepoint events. So the loop is
written as generators of *effects*: each ``yield`` says what the loop needs next (an
operation-set call, the sampling sleep, the point where requests are served, the tracepoint),
and whoever drives the generator performs it and sends the result back. The daemon's scheduler
drives these generators on trio (it may run a long operation-set call in a worker thread and it
accounts the kdamond's time in one place); :func:`run_steps` drives the very same generators
synchronously for tests, benchmarks and simulations. There is no second copy of the loop.

Order of one iteration, as in the kernel: stop check, watermarks, ``prepare_access_checks``,
sleep one sampling interval, ``check_accesses``, count (and at an aggregation boundary merge),
``kdamond_call()`` (user requests), schemes, then at an aggregation boundary the
``damon_aggregated`` tracepoint, reset and split, and at an update boundary ``ops.update``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from damond.core.access import (
    reset_aggregated,
    update_access_rates,
    update_access_rates_n,
    window_length,
)
from damond.core.attrs import sample_interval
from damond.core.context import Context
from damond.core.intervals import tune_intervals
from damond.core.operations import SchemeAction
from damond.core.regions import (
    Regions,
    merge_regions,
    region_sz_limit,
    set_regions,
    split_nr_subs,
    split_regions_of,
)
from damond.core.schemes import (
    finish_scheme_actions,
    plan_scheme_actions,
    wait_activation_us,
    walk_cancel,
)

# ---------------------------------------------------------------------------------------------
# effects: what the loop asks of its driver


@dataclass(frozen=True, slots=True)
class OpsCall:
    """Call ``fn(*args)`` (an operation-set callback) and send back its result.

    ``may_block`` marks the callbacks that may take long (applying actions, updating regions):
    a driver may run those off its event loop when the operation set says it blocks. Per-sample
    callbacks never carry it: a thread hop costs more than their few system calls.
    """

    fn: Callable[..., Any]
    args: tuple
    may_block: bool = False


@dataclass(frozen=True, slots=True)
class SampleWait:
    """Sleep until the end of the current sampling interval (``kdamond_usleep()``)."""


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Run ``nr_samples`` whole samples (choose addresses, clear, sleep, check) through the
    operation set's ``sample_aggregation`` and send back its ``SampledBatch``. Each sample
    keeps its own sampling interval and deadline; the driver runs the batch off its event
    loop. ``fn`` is the set's ``sample_aggregation``, called as ``fn(ctx, nr_samples,
    interval_ns, first_deadline_ns, stop)``."""

    fn: Callable[..., Any]
    ctx: Any
    nr_samples: int


@dataclass(frozen=True, slots=True)
class ActivationWait:
    """Every scheme is deactivated by its watermarks: wait ``us`` microseconds, or less if a
    user request arrives, before checking again (``kdamond_wait_activation()``)."""

    us: int


@dataclass(frozen=True, slots=True)
class ServeRequests:
    """Run the pending user requests against the context (``kdamond_call()``)."""


@dataclass(frozen=True, slots=True)
class Aggregated:
    """An aggregation interval ended: the regions hold the merged regions with the completed
    aggregation's counts (the ``damon_aggregated`` tracepoint), before reset and split."""


SAMPLE_WAIT = SampleWait()
SERVE_REQUESTS = ServeRequests()
AGGREGATED = Aggregated()

Effect = OpsCall | SampleWait | SampleBatch | ActivationWait | ServeRequests | Aggregated
R = TypeVar("R")
#: A piece of the loop: yields effects, receives their results, returns ``R``.
Steps = Generator[Effect, Any, R]

# ---------------------------------------------------------------------------------------------
# the loop


def kdamond_start(ctx: Context) -> Steps[None]:
    """What ``kdamond_fn()`` does before its loop: arm the timers, let the operation set build
    the initial regions, compute the region size limit.

    Targets start from their user-given initial regions, as the sysfs interface rebuilds them
    at every ``on``; the operation set's ``init`` then fills targets left without regions.
    """
    init_timers(ctx)
    for t in ctx.targets:
        if not len(t.regions) and t.init_ranges:
            t.regions = set_regions(Regions(), t.init_ranges, ctx.min_region)
    yield OpsCall(ctx.ops.init, (ctx,))
    refresh_sz_limit(ctx)


def kdamond_iteration(ctx: Context) -> Steps[bool]:
    """One pass of ``kdamond_fn()``'s loop. Returns False when the kdamond must stop (the
    operation set tracks target validity and no target is valid any more)."""
    if (yield from _need_stop(ctx)):
        return False
    # timers are read before requests run: a commit's new intervals apply from the next pass
    next_aggregation_sis = ctx.next_aggregation_sis
    next_ops_update_sis = ctx.next_ops_update_sis
    if _has_watermarks(ctx) and (yield from _wait_activation(ctx)):
        return True  # it waited: start the pass again, from the stop check
    if ctx.batch_sampling and ctx.ops.sample_aggregation is not None:
        accessed = yield from _sample_batch(ctx, next_aggregation_sis, next_ops_update_sis)
    else:
        yield OpsCall(ctx.ops.prepare_access_checks, (ctx,))
        yield SAMPLE_WAIT
        accessed = yield OpsCall(ctx.ops.check_accesses, (ctx,))
    aggregate = count_accesses(ctx, next_aggregation_sis, accessed)
    yield SERVE_REQUESTS
    if ctx.schemes:
        yield from apply_schemes(ctx)
    else:
        walk_cancel(ctx)
    sample = sample_interval(ctx.attrs)
    if aggregate:
        if (ctx.attrs.intervals_goal.aggrs
                and ctx.passed_sample_intervals >= ctx.next_intervals_tune_sis):
            # 6.15 kdamond_fn(): a request may have moved next_aggregation_sis; restore it so
            # that damon_set_attrs() does not think an aggregation is under way
            ctx.next_aggregation_sis = next_aggregation_sis
            ctx.next_intervals_tune_sis += ctx.aggr_samples * ctx.attrs.intervals_goal.aggrs
            tune_intervals(ctx)
            sample = sample_interval(ctx.attrs)
        ctx.next_aggregation_sis = next_aggregation_sis + ctx.attrs.aggr_us // sample
        yield AGGREGATED
        for t in ctx.targets:
            ctx.nr_bp_fixes += reset_aggregated(t.regions)
        split_all(ctx)
    if ctx.passed_sample_intervals >= next_ops_update_sis:
        ctx.next_ops_update_sis = next_ops_update_sis + ctx.attrs.update_us // sample
        yield OpsCall(ctx.ops.update, (ctx,), may_block=True)
        refresh_sz_limit(ctx)
    return True


def kdamond_stop(ctx: Context) -> Steps[None]:
    """The ``done:`` block of ``kdamond_fn()``: regions are destroyed, the operation set
    cleans up. User-given initial regions survive in the targets' ``init_ranges``."""
    for t in ctx.targets:
        t.regions = Regions()
    walk_cancel(ctx)
    yield OpsCall(ctx.ops.cleanup, (ctx,))


def apply_schemes(ctx: Context) -> Steps[list[SchemeAction] | None]:
    """``kdamond_apply_schemes()``: one apply pass of every due, active scheme. The pass is
    decided first (``plan_scheme_actions``), then the operation set applies the ordered actions
    in one call, and the pass is completed with what it really applied and how long it took.
    Returns the actions (None when no scheme was due and active)."""
    actions = plan_scheme_actions(ctx, ctx.ops, ctx.clock_ns() // 1_000_000)
    if actions is None:
        return None
    applied: list[int] = []
    passed: list[int] | None = None
    elapsed_ns = 0
    if actions:
        start_ns = ctx.clock_ns()
        result = yield OpsCall(ctx.ops.apply_scheme, (ctx, actions), may_block=True)
        elapsed_ns = ctx.clock_ns() - start_ns
        applied, passed = split_apply_result(result)
    finish_scheme_actions(ctx, actions, applied, elapsed_ns, passed)
    return actions


def split_apply_result(result) -> tuple[list[int], list[int] | None]:
    """An operation set's ``apply_scheme`` answers the bytes applied per action, or (since
    DAMOS ops filters) a pair: bytes applied and bytes that passed its filters
    (``sz_filter_passed``) per action."""
    if isinstance(result, tuple):
        applied, passed = result
        return list(applied), list(passed)
    return list(result), None


def batch_length(ctx: Context, next_aggregation_sis: int, next_ops_update_sis: int) -> int:
    """How many samples one batch may take: up to the next sample at which anything but
    counting happens (an aggregation, an operations update, a scheme's apply pass), so that
    the samples a batch leaves to be counted are exactly the passes in which the kernel's loop
    would only have counted. At the kernel's defaults (5 ms, 100 ms, 1 s) that is one
    aggregation interval: 20 samples."""
    due = min(next_aggregation_sis, next_ops_update_sis,
              *(s.next_apply_sis for s in ctx.schemes))
    return max(1, due - ctx.passed_sample_intervals)


def _sample_batch(ctx: Context, next_aggregation_sis: int,
                  next_ops_update_sis: int) -> Steps[list]:
    """Sample in one batch, count all but the batch's last sample here (passes in which the
    loop only counts: no aggregation, update or apply pass falls inside a batch), and return
    the last sample's checks for the rest of the pass.

    A driver ends a batch early (after a whole sample) when a user request arrives, so requests
    are still served between two samples; the next pass samples the rest of the interval in a
    new batch. What users can observe differs from the per-sample loop in one way only:
    watermark checks happen once per batch instead of once per sample (at most one aggregation
    interval later)."""
    n = batch_length(ctx, next_aggregation_sis, next_ops_update_sis)
    batch = yield SampleBatch(ctx.ops.sample_aggregation, ctx, n)
    rows = batch.accessed
    done = batch.samples_done
    if done > 1:
        count_samples(ctx, [r[:done - 1].sum(axis=0) for r in rows], done - 1)
    if not done:  # stopped before its first sample: nothing was found accessed
        return [np.zeros(len(t.regions), dtype=bool) for t in ctx.targets]
    return [r[done - 1] for r in rows]


def _need_stop(ctx: Context) -> Steps[bool]:
    """``kdamond_need_stop()`` minus the stop request (the driver cancels for that)."""
    valid = yield OpsCall(ctx.ops.target_valid, (ctx,))
    return valid is not None and not any(valid)


def _has_watermarks(ctx: Context) -> bool:
    return any(s.spec.wmarks.metric != "none" for s in ctx.schemes)


def _wait_activation(ctx: Context) -> Steps[bool]:
    """``kdamond_wait_activation()``: while every scheme is deactivated, do not sample; check
    again after the shortest watermark interval (requests are served meanwhile). Returns True
    if it waited. Each metric is read once per check, through the operation set (which falls
    back to the system's value)."""
    waited = False
    while True:
        values: dict[str, int | None] = {}
        for s in ctx.schemes:
            metric = s.spec.wmarks.metric
            if metric != "none" and metric not in values:
                values[metric] = yield OpsCall(ctx.ops.wmark_metric, (ctx, metric))
        wait_us = wait_activation_us(ctx, values.get)
        if not wait_us:
            return waited
        waited = True
        yield ActivationWait(wait_us)
        yield SERVE_REQUESTS
        walk_cancel(ctx)  # no scheme is active: a walk cannot complete
        if (yield from _need_stop(ctx)):
            return True


# ---------------------------------------------------------------------------------------------
# the loop's pure parts


def init_timers(ctx: Context) -> None:
    """``kdamond_init_ctx()``: zero the sample counter and arm every timer from it."""
    sample = sample_interval(ctx.attrs)
    ctx.passed_sample_intervals = 0
    ctx.next_aggregation_sis = ctx.attrs.aggr_us // sample
    ctx.next_ops_update_sis = ctx.attrs.update_us // sample
    for s in ctx.schemes:
        s.next_apply_sis = (s.spec.apply_interval_us or ctx.attrs.aggr_us) // sample
    ctx.aggr_samples = ctx.attrs.aggr_us // sample
    ctx.next_intervals_tune_sis = ctx.next_aggregation_sis * ctx.attrs.intervals_goal.aggrs


def refresh_sz_limit(ctx: Context) -> None:
    """``damon_region_sz_limit()``, at start and after each operations update or commit."""
    ctx.sz_limit = region_sz_limit(ctx.all_regions(), ctx.attrs.min_nr_regions, ctx.min_region)


def count_accesses(ctx: Context, next_aggregation_sis: int, accessed: list) -> bool:
    """Count one sample's access checks (one boolean array per target); at an aggregation
    boundary merge the regions. Returns whether this sample ends an aggregation interval."""
    ctx.passed_sample_intervals += 1
    len_window = window_length(ctx.attrs)
    max_nr = 0
    for t, hits in zip(ctx.targets, accessed, strict=True):
        if len(t.regions):
            update_access_rates(t.regions, hits, len_window)
            max_nr = max(max_nr, int(t.regions.nr_accesses.max()))
    aggregate = ctx.passed_sample_intervals >= next_aggregation_sis
    if aggregate:
        merge_all(ctx, max_nr // 10)
    return aggregate


def count_samples(ctx: Context, counts: list[np.ndarray], nr_samples: int) -> None:
    """Count ``nr_samples`` samples in which no aggregation ends at once: ``counts[i]`` says,
    per region of target i, in how many of them it was found accessed. The same result as
    ``count_accesses`` called once per sample."""
    ctx.passed_sample_intervals += nr_samples
    len_window = window_length(ctx.attrs)
    for t, c in zip(ctx.targets, counts, strict=True):
        if len(t.regions):
            update_access_rates_n(t.regions, c, nr_samples, len_window)


def merge_all(ctx: Context, threshold: int) -> None:
    """``kdamond_merge_regions()`` over all targets (v6.10+ repeated merge)."""
    max_thres = ctx.attrs.aggr_us // sample_interval(ctx.attrs)
    merged = merge_regions(ctx.all_regions(), threshold, ctx.sz_limit,
                           ctx.attrs.max_nr_regions, max_thres)
    for t, regions in zip(ctx.targets, merged, strict=True):
        t.regions = regions


def split_all(ctx: Context) -> None:
    """``kdamond_split_regions()`` with its 'last count' memory kept per context."""
    nr_regions = ctx.nr_regions()
    nr_subs = split_nr_subs(nr_regions, ctx.last_nr_regions, ctx.attrs.max_nr_regions)
    if not nr_subs:
        return
    for t in ctx.targets:
        t.regions = split_regions_of(t.regions, nr_subs, ctx.min_region, ctx.rng)
    ctx.last_nr_regions = nr_regions


# ---------------------------------------------------------------------------------------------
# a synchronous driver


def _nothing(*_args: Any) -> None:
    return None


def run_steps(steps: Steps[R], *, on_sample_wait: Callable[[], None] = _nothing,
              on_requests: Callable[[], None] = _nothing,
              on_aggregated: Callable[[], None] = _nothing,
              on_activation_wait: Callable[[int], None] = _nothing) -> R:
    """Drive ``steps`` to the end in the calling thread and return its result.

    Operation-set calls run inline; the waits call the given hooks and return at once (a test
    or a simulation advances its own clock in ``on_sample_wait``). The daemon's scheduler is
    the asynchronous driver of the same steps.
    """
    value: Any = None
    while True:
        try:
            effect = steps.send(value)
        except StopIteration as done:
            return done.value
        value = None
        kind = type(effect)
        if kind is OpsCall:
            value = effect.fn(*effect.args)
        elif kind is SampleWait:
            on_sample_wait()
        elif kind is SampleBatch:
            # no clock here: every deadline has passed, so the batch samples back to back
            value = effect.fn(effect.ctx, effect.nr_samples, 0, 0, bytearray(1))
            for _ in range(value.samples_done):
                on_sample_wait()
        elif kind is ServeRequests:
            on_requests()
        elif kind is Aggregated:
            on_aggregated()
        else:
            on_activation_wait(effect.us)
