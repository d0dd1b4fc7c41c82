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
from damond.core.context import Context, Scheme, Target
from damond.core.regions import Regions, check_sorted_ranges, set_regions
from damond.core.spec import ACTIONS, WMARK_METRICS, ContextSpec, SchemeSpec, clone
from damond.errors import DamonError

#: Called with the built context before it is accepted; raises DamonError to refuse.
ContextValidator = Callable[[Context], None]


def validate_scheme(spec: SchemeSpec, index: int) -> None:
    if spec.action not in ACTIONS:
        raise DamonError("EINVAL", f"scheme {index}: unknown action {spec.action!r}")
    if spec.wmarks.metric not in WMARK_METRICS:
        raise DamonError("EINVAL", f"scheme {index}: unknown watermark metric "
                         f"{spec.wmarks.metric!r}")


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
    validate_attrs(spec.attrs)
    for i, t in enumerate(spec.targets):
        try:
            check_sorted_ranges([(r.start, r.end) for r in t.regions])
        except DamonError as e:
            raise DamonError(e.errno_name, f"target {i}: {e.why}") from None
    for i, s in enumerate(spec.schemes):
        validate_scheme(s, i)
    ctx = Context(ops_name=spec.ops, attrs=clone(spec.attrs), min_region=min_region,
                  rng=np.random.default_rng(seed))
    ctx.targets = [_build_target(t) for t in spec.targets]
    ctx.schemes = [Scheme(spec=clone(s)) for s in spec.schemes]
    if validate is not None:
        validate(ctx)
    return ctx


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
    set_attrs(dst, src.attrs)
    changed_ops = dst.ops_name != src.ops_name
    dst.ops_name = src.ops_name
    return changed_ops


def _commit_schemes(dst: Context, src: Context) -> None:
    kept = []
    for i, s in enumerate(src.schemes):
        if i < len(dst.schemes):
            old = dst.schemes[i]
            old.spec = s.spec
            # damos_commit() copies the whole watermarks struct, 'activated' (true in a new
            # scheme) included: a commit re-activates schemes until the next watermark check
            old.wmark_activated = True
            kept.append(old)
        else:
            s.next_apply_sis = dst.passed_sample_intervals + (
                (s.spec.apply_interval_us or dst.attrs.aggr_us) // sample_interval(dst.attrs))
            kept.append(s)
    dst.schemes = kept


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


def set_attrs(ctx: Context, attrs) -> None:
    """``damon_set_attrs()`` on a running context (attributes already validated): rearm the
    timers from now and rescale the counters to the new intervals."""
    aggregating = ctx.passed_sample_intervals < ctx.next_aggregation_sis
    sample = sample_interval(attrs)
    ctx.next_aggregation_sis = ctx.passed_sample_intervals + attrs.aggr_us // sample
    ctx.next_ops_update_sis = ctx.passed_sample_intervals + attrs.update_us // sample
    for t in ctx.targets:
        update_monitoring_results(t.regions, ctx.attrs, attrs, aggregating)
    ctx.attrs = clone(attrs)
    for s in ctx.schemes:
        s.next_apply_sis = ctx.passed_sample_intervals + (
            (s.spec.apply_interval_us or attrs.aggr_us) // sample)
