"""One kdamond iteration, split around the sampling sleep.

``kdamond_fn()`` of Linux v6.7+ (sample-count timers) in order: wait for watermarks, prepare
access checks, sleep one sampling interval, check accesses, then at an aggregation boundary
merge regions, handle pending requests, apply schemes, report and reset the aggregation, split
regions, and at an update boundary let the operation set update the regions.

The sleeping, and the requests from users, belong to the scheduler; everything else happens
here, synchronously, so that the whole iteration is testable without a clock. The scheduler
calls ``begin_iteration`` and ``prepare``, sleeps, and calls ``after_sample``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from damond.core.access import reset_aggregated, update_access_rates, window_length
from damond.core.attrs import sample_interval
from damond.core.context import Context
from damond.core.operations import OpsHandle
from damond.core.regions import (
    Regions,
    merge_regions,
    region_sz_limit,
    set_regions,
    split_nr_subs,
    split_regions_of,
)
from damond.core.schemes import apply_schemes


@dataclass(frozen=True, slots=True)
class IterationTimers:
    """Timer values read at the start of an iteration: requests handled during the iteration
    may change the context's attributes, and the kernel applies those from the next one."""

    next_aggregation_sis: int
    next_ops_update_sis: int


def init_context(ctx: Context) -> None:
    """``kdamond_init_ctx()``: zero the sample counter and arm every timer from it."""
    sample = sample_interval(ctx.attrs)
    ctx.passed_sample_intervals = 0
    ctx.next_aggregation_sis = ctx.attrs.aggr_us // sample
    ctx.next_ops_update_sis = ctx.attrs.update_us // sample
    for s in ctx.schemes:
        s.next_apply_sis = (s.spec.apply_interval_us or ctx.attrs.aggr_us) // sample


def refresh_sz_limit(ctx: Context) -> None:
    ctx.sz_limit = region_sz_limit(ctx.all_regions(), ctx.attrs.min_nr_regions, ctx.min_region)


def start(ctx: Context, ops: OpsHandle) -> None:
    """What ``kdamond_fn()`` does before its loop: init timers, let the operation set build
    the initial regions, compute the region size limit.

    Targets start from their user-given initial regions, as the sysfs interface rebuilds them
    at every ``on``; the operation set's ``init`` then fills targets left without regions.
    """
    init_context(ctx)
    for t in ctx.targets:
        if not len(t.regions) and t.init_ranges:
            t.regions = set_regions(Regions(), t.init_ranges, ctx.min_region)
    ops.init(ctx)
    refresh_sz_limit(ctx)


def need_stop(ctx: Context, ops: OpsHandle) -> bool:
    """``kdamond_need_stop()`` minus the stop request: true when the operation set tracks
    target validity and no target is valid any more."""
    valid = ops.target_valid(ctx)
    if valid is None:
        return False
    return not any(valid)


def begin_iteration(ctx: Context) -> IterationTimers:
    return IterationTimers(ctx.next_aggregation_sis, ctx.next_ops_update_sis)


def after_sample(ctx: Context, ops: OpsHandle, timers: IterationTimers,
                 handle_requests: Callable[[Context], None],
                 on_aggregated: Callable[[Context], None]) -> None:
    """Everything after the sampling sleep, in the kernel's order, synchronously.

    ``handle_requests`` runs where the kernel runs ``kdamond_call()`` (user requests such as an
    online commit or a stats refresh); ``on_aggregated`` is the ``damon_aggregated`` tracepoint:
    it sees the merged regions with the completed aggregation's counts, before they are reset
    and split. The scheduler runs the same phases itself so that an operation set's slow
    callbacks can run outside its event loop.
    """
    aggregate = count_accesses(ctx, timers, ops.check_accesses(ctx))
    handle_requests(ctx)
    if ctx.schemes:
        apply_schemes(ctx, ops)
    if finish_sample(ctx, timers, aggregate, on_aggregated):
        ops.update(ctx)
        refresh_sz_limit(ctx)


def count_accesses(ctx: Context, timers: IterationTimers, results: list) -> bool:
    """Count one sample's access checks; at an aggregation boundary merge the regions.
    Returns whether this sample ends an aggregation interval."""
    ctx.passed_sample_intervals += 1
    len_window = window_length(ctx.attrs)
    max_nr = 0
    for t, accessed in zip(ctx.targets, results, strict=True):
        if len(t.regions):
            update_access_rates(t.regions, accessed, len_window)
            max_nr = max(max_nr, int(t.regions.nr_accesses.max()))
    aggregate = ctx.passed_sample_intervals >= timers.next_aggregation_sis
    if aggregate:
        merge_all(ctx, max_nr // 10)
    return aggregate


def finish_sample(ctx: Context, timers: IterationTimers, aggregate: bool,
                  on_aggregated: Callable[[Context], None]) -> bool:
    """After the schemes: report, reset and split at an aggregation boundary. Returns whether
    the operation set's ``update`` is due now (the caller runs it, then ``refresh_sz_limit``)."""
    sample = sample_interval(ctx.attrs)
    if aggregate:
        ctx.next_aggregation_sis = timers.next_aggregation_sis + ctx.attrs.aggr_us // sample
        on_aggregated(ctx)
        for t in ctx.targets:
            ctx.nr_bp_fixes += reset_aggregated(t.regions)
        split_all(ctx)
    if ctx.passed_sample_intervals >= timers.next_ops_update_sis:
        ctx.next_ops_update_sis = timers.next_ops_update_sis + ctx.attrs.update_us // sample
        return True
    return False


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


def stop(ctx: Context, ops: OpsHandle) -> None:
    """The ``done:`` block of ``kdamond_fn()``: regions are destroyed, the operation set
    cleans up. User-given initial regions survive in the targets' ``init_ranges``."""
    for t in ctx.targets:
        t.regions = Regions()
    ops.cleanup(ctx)
