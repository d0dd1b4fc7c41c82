"""From what the user asked (a spec) to running objects, and online commits.

Building validates everything first and raises the errno the kernel's sysfs ``on``/``commit``
would; only a fully valid spec becomes a context. ``commit_context`` then applies a built
context to a running one the way ``damon_commit_ctx()`` (v6.11+) does: schemes and targets
matched by index keep their statistics and region state; extra ones are dropped; new ones are
appended; attributes go through ``damon_set_attrs()`` with the counters rescaled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from damond.core.access import update_monitoring_results
from damond.core.attrs import sample_interval, validate_attrs
from damond.core.context import Context, QuotaGoal, Scheme, Target
from damond.core.regions import Regions, check_sorted_ranges, set_regions
from damond.core.spec import (
    ALL_ACTIONS,
    CORE_FILTER_TYPES,
    FILTER_TYPES,
    OPS_FILTER_TYPES,
    QUOTA_GOAL_METRICS,
    WMARK_METRICS,
    ContextSpec,
    FilterSpec,
    SchemeSpec,
    clone,
)
from damond.errors import DamonError

#: Called with the built context before it is accepted; raises DamonError to refuse.
ContextValidator = Callable[[Context], None]


def validate_scheme(spec: SchemeSpec, index: int) -> None:
    """Refuse a scheme where Linux 6.18 refuses it, at the file write or at ``on``/``commit``
    (both EINVAL): unknown action, watermark metric, filter type or goal metric; a filter type
    in a directory that does not take it (``core_filters``: addr, target; ``ops_filters``: the
    others); an ``addr`` filter ending before it starts or a ``hugepage_size`` filter with
    ``min > max`` (``damon_sysfs_add_scheme_filters()``); a ``memcg`` filter or ``node_memcg_*``
    goal without a cgroup path (the kernel's path-to-id lookup fails: EINVAL; whether the
    cgroup exists is the operation set's check). Negative numbers never reach here: sysfs
    parses unsigned values."""
    if spec.action not in ALL_ACTIONS:
        raise DamonError("EINVAL", f"scheme {index}: unknown action {spec.action!r}")
    if spec.wmarks.metric not in WMARK_METRICS:
        raise DamonError("EINVAL", f"scheme {index}: unknown watermark metric "
                         f"{spec.wmarks.metric!r}")
    for where, filters, allowed in (("core_filters", spec.core_filters, CORE_FILTER_TYPES),
                                    ("ops_filters", spec.ops_filters, OPS_FILTER_TYPES),
                                    ("filters", spec.filters, FILTER_TYPES)):
        for fi, f in enumerate(filters):
            _validate_filter(f, allowed, f"scheme {index}: {where}/{fi}")
    for gi, g in enumerate(spec.quota.goals):
        if g.target_metric not in QUOTA_GOAL_METRICS:
            raise DamonError("EINVAL", f"scheme {index}: goal {gi}: unknown metric "
                             f"{g.target_metric!r}")
        if (g.target_value and g.target_metric.startswith("node_memcg_")
                and not g.path):
            raise DamonError("EINVAL", f"scheme {index}: goal {gi}: {g.target_metric} needs "
                             "a cgroup path")
    for di, d in enumerate(spec.dests):
        if d.id < 0:
            raise DamonError("EINVAL", f"scheme {index}: dest {di}: negative node id {d.id}")


def _validate_filter(f: FilterSpec, allowed: tuple[str, ...], where: str) -> None:
    if f.type not in FILTER_TYPES:
        raise DamonError("EINVAL", f"{where}: unknown filter type {f.type!r}")
    if f.type not in allowed:
        raise DamonError("EINVAL", f"{where}: a {f.type!r} filter does not belong here "
                         f"(allowed: {', '.join(allowed)})")
    if f.type == "addr" and f.addr_end < f.addr_start:
        raise DamonError("EINVAL", f"{where}: addr_end {f.addr_end} is below addr_start "
                         f"{f.addr_start}")
    if f.type == "hugepage_size" and f.sz_min > f.sz_max:
        raise DamonError("EINVAL", f"{where}: min {f.sz_min} is above max {f.sz_max}")
    if f.type == "memcg" and not f.memcg_path:
        raise DamonError("EINVAL", f"{where}: a memcg filter needs memcg_path")


def scheme_filters(spec: SchemeSpec) -> tuple[list[FilterSpec], list[FilterSpec]]:
    """The scheme's core and ops filter lists as the kernel builds them: ``core_filters/``,
    then ``ops_filters/``, then ``filters/``, each filter appended to the core or the ops list
    by its type (``damon_sysfs_mk_scheme()`` + ``damos_add_filter()``, 6.15+)."""
    core: list[FilterSpec] = []
    ops: list[FilterSpec] = []
    for f in (*spec.core_filters, *spec.ops_filters, *spec.filters):
        (core if f.type in CORE_FILTER_TYPES else ops).append(clone(f))
    return core, ops


def validate_intervals_goal(attrs) -> None:
    """``damon_valid_intervals_goal()`` (6.15): with tuning on (``aggrs``), ``min_sample_us``
    may not exceed ``max_sample_us`` and the sampling interval must lie between them."""
    g = attrs.intervals_goal
    if not g.aggrs:
        return
    if g.min_sample_us > g.max_sample_us:
        raise DamonError("EINVAL", f"intervals goal: min_sample_us {g.min_sample_us} is above "
                         f"max_sample_us {g.max_sample_us}")
    if not g.min_sample_us <= attrs.sample_us <= g.max_sample_us:
        raise DamonError("EINVAL", f"intervals goal: sample_us {attrs.sample_us} is outside "
                         f"[{g.min_sample_us}, {g.max_sample_us}]")


def build_context(spec: ContextSpec, *, avail_operations: list[str],
                  min_region: int, validate: ContextValidator | None = None,
                  seed: int | None = None) -> Context:
    """Build a context from a spec, refusing it with the kernel's errno where sysfs would.

    ``min_region`` is the region alignment (``DAMON_MIN_REGION``): the machine's page size for
    real memory, which the caller reads (the core reads no system facts). ``validate`` is the
    operation set's own check (e.g. that the target processes exist, or that ``paddr`` has a
    single target).
    """
    if spec.ops not in avail_operations:
        raise DamonError("EINVAL", f"operations {spec.ops!r} is not available "
                         f"(avail_operations: {', '.join(avail_operations)})")
    if not spec.addr_unit:
        raise DamonError("EINVAL", "addr_unit 0 (the kernel takes 1 or more)")
    validate_intervals_goal(spec.attrs)
    validate_attrs(spec.attrs)
    for i, t in enumerate(spec.targets):
        try:
            check_sorted_ranges([(r.start, r.end) for r in t.regions])
        except DamonError as e:
            raise DamonError(e.errno_name, f"target {i}: {e.why}") from None
    for i, s in enumerate(spec.schemes):
        validate_scheme(s, i)
    if spec.ops == "paddr" and spec.addr_unit != 1:
        # 6.18: 'addr_unit is respected by only DAMON_OPS_PADDR'
        min_region = max(min_region // spec.addr_unit, 1)
    ctx = Context(ops_name=spec.ops, attrs=clone(spec.attrs), min_region=min_region,
                  rng=np.random.default_rng(seed), addr_unit=spec.addr_unit)
    ctx.targets = [_build_target(t) for t in spec.targets]
    ctx.schemes = [build_scheme(s) for s in spec.schemes]
    if validate is not None:
        validate(ctx)
    return ctx


def build_scheme(spec: SchemeSpec) -> Scheme:
    """A running scheme from a validated spec: filters split into the core and ops lists, goals
    with ``target_value`` 0 dropped (``damos_sysfs_add_quota_score()``)."""
    s = Scheme(spec=clone(spec))
    s.core_filters, s.ops_filters = scheme_filters(spec)
    s.quota.goals = [QuotaGoal(spec=clone(g), current_value=g.current_value)
                     for g in spec.quota.goals if g.target_value]
    return s


def _build_target(spec) -> Target:
    return Target(pid=spec.pid, init_ranges=[(r.start, r.end) for r in spec.regions],
                  ops_args=dict(spec.ops_args))


def commit_context(dst: Context, src: Context) -> bool:
    """Apply the built context ``src`` to the running context ``dst``, in the kernel's order:
    schemes, targets, then attributes. Returns True when the operation set changed (the caller
    must then swap the operation set's handle).

    ``src`` must come from ``build_context`` (already validated); this step cannot fail.
    """
    _commit_schemes(dst, src)
    _commit_targets(dst, src)
    if dst.attrs != src.attrs:  # damon_attrs_equals() (6.15+): equal attrs keep the timers
        set_attrs(dst, src.attrs)
    changed_ops = dst.ops_name != src.ops_name
    dst.ops_name = src.ops_name
    dst.addr_unit = src.addr_unit
    dst.min_region = src.min_region
    return changed_ops


def _commit_schemes(dst: Context, src: Context) -> None:
    kept = []
    for i, s in enumerate(src.schemes):
        if i < len(dst.schemes):
            old = dst.schemes[i]
            old.spec = s.spec
            old.core_filters, old.ops_filters = s.core_filters, s.ops_filters
            commit_quota_goals(old, s)
            # damos_commit() copies the whole watermarks struct, 'activated' (true in a new
            # scheme) included: a commit re-activates schemes until the next watermark check
            old.wmark_activated = True
            kept.append(old)
        else:
            s.next_apply_sis = dst.passed_sample_intervals + (
                (s.spec.apply_interval_us or dst.attrs.aggr_us) // sample_interval(dst.attrs))
            kept.append(s)
    dst.schemes = kept


def commit_quota_goals(dst: Scheme, src: Scheme) -> None:
    """``damos_commit_quota_goals()`` (6.18): goals matched by index take the new metric and
    target; ``current_value`` only for ``user_input`` (others keep what they measured, and
    ``last_psi_total`` is kept); extra goals are dropped, new ones appended. Also what the
    ``commit_schemes_quota_goals`` state keyword does for each scheme."""
    kept = []
    for i, g in enumerate(src.quota.goals):
        if i < len(dst.quota.goals):
            old = dst.quota.goals[i]
            old.spec = g.spec
            if g.spec.target_metric == "user_input":
                old.current_value = g.current_value
            kept.append(old)
        else:
            kept.append(g)
    dst.quota.goals = kept


def commit_schemes_quota_goals(dst: Context, src: Context) -> None:
    """``damos_sysfs_set_quota_scores()``: the ``commit_schemes_quota_goals`` state keyword
    commits only the goals of each scheme (matched by index) from a built context."""
    for old, new in zip(dst.schemes, src.schemes, strict=False):
        commit_quota_goals(old, new)


def _commit_targets(dst: Context, src: Context) -> None:
    kept = []
    for i, t in enumerate(src.targets):
        if i < len(dst.targets):
            old = dst.targets[i]
            if t.init_ranges:
                old.regions = set_regions(old.regions, t.init_ranges, dst.min_region)
            old.init_ranges = t.init_ranges
            old.pid = t.pid
            old.ops_args = t.ops_args
            kept.append(old)
        else:
            if t.init_ranges:
                t.regions = set_regions(Regions(), t.init_ranges, dst.min_region)
            kept.append(t)
    removed = dst.targets[len(src.targets):]
    for s in dst.schemes:
        if s.quota.charge_target_from in removed:
            s.quota.charge_target_from = None
            s.quota.charge_addr_from = 0
    dst.targets = kept


def set_attrs(ctx: Context, attrs, aggr_samples: int = 0) -> None:
    """``damon_set_attrs()`` on a running context (attributes already validated): rearm the
    timers from now and rescale the counters to the new intervals. ``aggr_samples`` is kept
    by the intervals tuner; a user's new attributes (0) recompute it (6.15)."""
    aggregating = ctx.passed_sample_intervals < ctx.next_aggregation_sis
    sample = sample_interval(attrs)
    ctx.aggr_samples = aggr_samples or attrs.aggr_us // sample
    ctx.next_aggregation_sis = ctx.passed_sample_intervals + attrs.aggr_us // sample
    ctx.next_ops_update_sis = ctx.passed_sample_intervals + attrs.update_us // sample
    for t in ctx.targets:
        update_monitoring_results(t.regions, ctx.attrs, attrs, aggregating)
    ctx.attrs = clone(attrs)
    for s in ctx.schemes:
        s.next_apply_sis = ctx.passed_sample_intervals + (
            (s.spec.apply_interval_us or attrs.aggr_us) // sample)
