"""Monitoring intervals auto-tuning (Linux 6.15+, as in 6.18): ``kdamond_tune_intervals()``.

Every ``intervals_goal.aggrs`` aggregations the kdamond compares the access events it saw in
the last aggregation (``nr_accesses`` samples found accessed, weighted by region size) with the
goal (``access_bp`` per 10,000 of all possible events) and scales the sampling interval by the
feedback loop's answer, keeping ``aggr_samples`` samples per aggregation and the sampling
interval inside ``[min_sample_us, max_sample_us]``. Too few events: longer intervals; too many:
shorter ones (at most halved per step).
"""

from __future__ import annotations

from damond.core.attrs import validate_attrs
from damond.core.context import Context
from damond.core.quota import feed_loop_next_input
from damond.core.spec import IntervalsGoalSpec, clone
from damond.errors import DamonError


def intervals_score(ctx: Context) -> int:
    """``damon_get_intervals_score()``: observed access events per 10,000 of the goal's."""
    goal_bp = ctx.attrs.intervals_goal.access_bp
    max_events = 0
    events = 0
    for t in ctx.targets:
        sizes = t.regions.sizes().astype(object)
        max_events += int(sizes.sum()) * ctx.aggr_samples if len(sizes) else 0
        if len(sizes):
            events += int((sizes * t.regions.nr_accesses.astype(object)).sum())
    target = max_events * goal_bp // 10_000 or 1
    return events * 10_000 // target


def adaptation_bp(score_bp: int) -> int:
    """``damon_get_intervals_adaptation_bp()``: the feedback loop's next input for a last input
    of 10^8, in basis points (1..20,000); shrinking is softened to [5,000, 10,000]."""
    adaptation = feed_loop_next_input(100_000_000, score_bp) // 10_000
    if adaptation <= 10_000:
        adaptation = 5_000 + adaptation // 2
    return adaptation


def next_sample_us(sample_us: int, adaptation: int, goal: IntervalsGoalSpec) -> int:
    """The tuned sampling interval: scaled, then clamped to the goal's range (max first, then
    min, in the kernel's order)."""
    new = min(goal.max_sample_us, sample_us * adaptation // 10_000)
    return max(goal.min_sample_us, new)


def tune_intervals(ctx: Context) -> bool:
    """``kdamond_tune_intervals()``: apply one tuning step through ``damon_set_attrs()``.
    Returns whether the intervals changed. New attributes the kernel would refuse (e.g. an
    aggregation interval of 0 samples) leave everything as it was, as the kernel's ignored
    ``damon_set_attrs()`` error does."""
    from damond.core.build import set_attrs, validate_intervals_goal

    adaptation = adaptation_bp(intervals_score(ctx))
    if adaptation == 10_000:
        return False
    new = clone(ctx.attrs)
    new.sample_us = next_sample_us(ctx.attrs.sample_us, adaptation, ctx.attrs.intervals_goal)
    new.aggr_us = new.sample_us * ctx.aggr_samples
    try:
        validate_intervals_goal(new)
        validate_attrs(new)
    except DamonError:
        return False
    set_attrs(ctx, new, ctx.aggr_samples)
    return True
