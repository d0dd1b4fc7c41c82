"""Linux 6.18 DAMOS additions in the core: spec validation (build), core filters in the apply
pass, and the DAMOS walk behind the sysfs tried regions.

Kernel references: ``damon_sysfs_add_scheme_filters()``/``damon_sysfs_mk_scheme()`` of
``mm/damon/sysfs-schemes.c``; ``damos_apply_scheme()``, ``damos_filter_match()``,
``damos_core_filter_out()``, ``damos_walk*()`` of ``mm/damon/core.c`` (6.18).
"""

from __future__ import annotations

import numpy as np
import pytest

from damond.core import kdamond as loop
from damond.core.build import build_context, commit_context, scheme_filters
from damond.core.context import Context, Scheme, Target
from damond.core.regions import Regions
from damond.core.schemes import WalkControl, walk_request
from damond.core.spec import (
    AccessPatternSpec,
    AttrsSpec,
    ContextSpec,
    FilterSpec,
    IntervalsGoalSpec,
    QuotaGoalSpec,
    QuotaSpec,
    SchemeSpec,
    TargetSpec,
)
from damond.errors import DamonError

P = 4096
EVERYTHING = AccessPatternSpec(min_sz=0, max_sz=1 << 62, min_nr_accesses=0,
                               max_nr_accesses=1 << 31, min_age=0, max_age=1 << 31)


def build(spec: ContextSpec):
    return build_context(spec, avail_operations=["vaddr", "paddr", "sim"], min_region=P)


# --- spec defaults and build validation -----------------------------------------------------


def test_fresh_spec_equals_a_fresh_6_18_directory():
    s = SchemeSpec()
    assert (s.filters, s.core_filters, s.ops_filters, s.dests) == ([], [], [], [])
    assert s.target_nid == -1 and s.apply_interval_us == 0
    assert s.quota.goals == []
    f = FilterSpec()
    assert (f.type, f.matching, f.allow, f.memcg_path, f.addr_start, f.addr_end,
            f.target_idx, f.sz_min, f.sz_max) == ("anon", False, False, "", 0, 0, 0, 0, 0)
    g = QuotaGoalSpec()
    assert (g.target_metric, g.target_value, g.current_value, g.nid, g.path) == (
        "user_input", 0, 0, 0, "")
    assert AttrsSpec().intervals_goal == IntervalsGoalSpec(0, 0, 0, 0)
    assert ContextSpec().addr_unit == 1
    # a v5.18-era spec builds as before
    ctx = build(ContextSpec(schemes=[SchemeSpec(action="pageout")]))
    assert ctx.schemes[0].core_filters == [] and ctx.schemes[0].ops_filters == []


@pytest.mark.parametrize("scheme, why", [
    (SchemeSpec(action="collapse"), "unknown action"),
    (SchemeSpec(core_filters=[FilterSpec(type="anon")]), "does not belong"),
    (SchemeSpec(ops_filters=[FilterSpec(type="addr")]), "does not belong"),
    (SchemeSpec(filters=[FilterSpec(type="file")]), "unknown filter type"),
    (SchemeSpec(filters=[FilterSpec(type="addr", addr_start=2 * P, addr_end=P)]), "below"),
    (SchemeSpec(filters=[FilterSpec(type="hugepage_size", sz_min=2, sz_max=1)]), "above"),
    (SchemeSpec(filters=[FilterSpec(type="memcg")]), "memcg_path"),
    (SchemeSpec(quota=QuotaSpec(goals=[QuotaGoalSpec(target_metric="x")])), "unknown metric"),
    (SchemeSpec(quota=QuotaSpec(goals=[QuotaGoalSpec(target_metric="node_memcg_used_bp",
                                                     target_value=5)])), "cgroup path"),
])
def test_build_refuses_what_the_kernel_refuses(scheme, why):
    with pytest.raises(DamonError) as e:
        build(ContextSpec(schemes=[scheme]))
    assert e.value.errno_name == "EINVAL" and why in e.value.why


@pytest.mark.parametrize("goal, why", [
    (IntervalsGoalSpec(access_bp=40, aggrs=3, min_sample_us=10, max_sample_us=5), "above"),
    (IntervalsGoalSpec(access_bp=40, aggrs=3, min_sample_us=10, max_sample_us=100), "outside"),
])
def test_intervals_goal_validation(goal, why):
    with pytest.raises(DamonError) as e:
        build(ContextSpec(attrs=AttrsSpec(intervals_goal=goal)))
    assert e.value.errno_name == "EINVAL" and why in e.value.why
    # tuning off (aggrs 0): the other fields are not checked
    build(ContextSpec(attrs=AttrsSpec(intervals_goal=IntervalsGoalSpec(0, 0, 10, 5))))


def test_addr_unit_zero_is_einval_and_paddr_scales_min_region():
    with pytest.raises(DamonError) as e:
        build(ContextSpec(addr_unit=0))
    assert e.value.errno_name == "EINVAL"
    assert build(ContextSpec(ops="paddr", addr_unit=4)).min_region == P // 4
    assert build(ContextSpec(ops="vaddr", addr_unit=4)).min_region == P


def test_filters_split_in_the_kernels_order_and_zero_goals_drop():
    a = FilterSpec(type="addr", addr_end=P)
    t = FilterSpec(type="target", target_idx=1)
    anon = FilterSpec(type="anon", matching=True)
    young = FilterSpec(type="young")
    spec = SchemeSpec(filters=[young, t], core_filters=[a], ops_filters=[anon],
                      quota=QuotaSpec(goals=[QuotaGoalSpec(target_value=0),
                                             QuotaGoalSpec(target_value=7)]))
    core, ops = scheme_filters(spec)
    assert [f.type for f in core] == ["addr", "target"]
    assert [f.type for f in ops] == ["anon", "young"]
    s = build(ContextSpec(schemes=[spec])).schemes[0]
    assert [g.spec.target_value for g in s.quota.goals] == [7]
    assert s.quota_enabled()  # a goal alone enables the quota machinery


def test_commit_keeps_measured_goal_values_but_takes_user_input():
    def spec(cur):
        return ContextSpec(schemes=[SchemeSpec(quota=QuotaSpec(goals=[
            QuotaGoalSpec(target_value=10, current_value=cur),
            QuotaGoalSpec(target_metric="some_mem_psi_us", target_value=10)]))])
    dst = build(spec(1))
    dst.schemes[0].quota.goals[1].current_value = 99
    dst.schemes[0].quota.goals[1].last_psi_total = 1234
    commit_context(dst, build(spec(5)))
    g0, g1 = dst.schemes[0].quota.goals
    assert g0.current_value == 5
    assert (g1.current_value, g1.last_psi_total) == (99, 1234)


# --- core filters in the apply pass --------------------------------------------------------


class ApplyOps:
    """Applies every action fully; answers per-action filter-passed bytes when told."""

    name = "apply"

    def __init__(self, passed_fraction: int | None = None) -> None:
        self.actions = []
        self.passed_fraction = passed_fraction

    def get_scheme_score(self, ctx, target, regions, scheme):
        return None

    def apply_scheme(self, ctx, actions):
        self.actions.extend(actions)
        applied = [a.end - a.start for a in actions]
        if self.passed_fraction is None:
            return applied
        return applied, [(a.end - a.start) // self.passed_fraction for a in actions]


def ctx_with(schemes, ranges=((0, 8 * P),), nr_targets=1, ops=None) -> Context:
    attrs = AttrsSpec(sample_us=5000, aggr_us=20000, update_us=40000, min_nr_regions=3,
                      max_nr_regions=100)
    ctx = Context(ops_name="apply", attrs=attrs, min_region=P, rng=np.random.default_rng(1))
    ctx.ops = ops or ApplyOps()
    ctx.targets = [Target(regions=Regions.from_ranges(list(ranges))) for _ in range(nr_targets)]
    ctx.schemes = []
    for spec in schemes:
        s = Scheme(spec=spec)
        s.core_filters, s.ops_filters = scheme_filters(spec)
        ctx.schemes.append(s)
    ctx.clock_ns = lambda: 0
    return ctx


def run_pass(ctx):
    return loop.run_steps(loop.apply_schemes(ctx))


def test_addr_filter_splits_and_rejects_the_matching_part():
    # reject [2P, 5P) of a region [0, 8P): the pass acts on [0, 2P) only (the split-off right
    # piece waits for the next pass, as in the kernel's damon_for_each_region_safe walk)
    f = FilterSpec(type="addr", matching=True, allow=False, addr_start=2 * P, addr_end=5 * P)
    ctx = ctx_with([SchemeSpec(action="pageout", pattern=EVERYTHING, core_filters=[f])])
    actions = run_pass(ctx)
    assert [(a.start, a.end) for a in actions] == [(0, 2 * P)]
    assert ranges_of(ctx) == [(0, 2 * P), (2 * P, 8 * P)]
    # next pass: [2P, 8P) is split at 5P and rejected; [5P, 8P) waits again
    ctx.passed_sample_intervals = ctx.schemes[0].next_apply_sis
    assert [(a.start, a.end) for a in run_pass(ctx)] == [(0, 2 * P)]
    assert ranges_of(ctx) == [(0, 2 * P), (2 * P, 5 * P), (5 * P, 8 * P)]
    ctx.passed_sample_intervals = ctx.schemes[0].next_apply_sis
    assert [(a.start, a.end) for a in run_pass(ctx)] == [(0, 2 * P), (5 * P, 8 * P)]


def test_allow_filter_rejects_the_rest_by_default():
    allow = FilterSpec(type="addr", matching=True, allow=True, addr_start=0, addr_end=4 * P)
    ctx = ctx_with([SchemeSpec(action="pageout", pattern=EVERYTHING, core_filters=[allow])],
                   ranges=((0, 4 * P), (4 * P, 8 * P)))
    actions = run_pass(ctx)
    assert [(a.start, a.end) for a in actions] == [(0, 4 * P)]
    s = ctx.schemes[0]
    # a rejected region is neither tried nor charged nor aged
    assert (s.stats.nr_tried, s.stats.sz_tried) == (1, 4 * P)


def test_ops_filters_after_an_allow_core_filter_cancel_the_default_reject():
    allow = FilterSpec(type="addr", matching=True, allow=True, addr_start=0, addr_end=4 * P)
    spec = SchemeSpec(action="stat", pattern=EVERYTHING, core_filters=[allow],
                      ops_filters=[FilterSpec(type="anon", matching=True)])
    ctx = ctx_with([spec], ranges=((0, 4 * P), (4 * P, 8 * P)))
    assert len(run_pass(ctx)) == 2


def test_target_filter_matches_by_index():
    f = FilterSpec(type="target", matching=True, allow=False, target_idx=1)
    ctx = ctx_with([SchemeSpec(action="stat", pattern=EVERYTHING, core_filters=[f])],
                   nr_targets=3)
    assert [a.target_index for a in run_pass(ctx)] == [0, 2]


# --- the DAMOS walk (tried regions) --------------------------------------------------------


def test_walk_collects_the_next_pass_of_every_scheme():
    stat = SchemeSpec(action="stat", pattern=EVERYTHING)
    small = SchemeSpec(action="pageout", pattern=AccessPatternSpec(
        min_sz=0, max_sz=2 * P, max_nr_accesses=1 << 31, max_age=1 << 31))
    ctx = ctx_with([stat, small], ranges=((0, 2 * P), (2 * P, 8 * P)),
                   ops=ApplyOps(passed_fraction=2))
    ctx.targets[0].regions.age[:] = [3, 4]
    ctx.targets[0].regions.nr_accesses_bp[:] = [20000, 0]
    done = []
    control = WalkControl(on_done=lambda: done.append(1))
    walk_request(ctx, control)
    with pytest.raises(DamonError) as e:
        walk_request(ctx, WalkControl())
    assert e.value.errno_name == "EBUSY"
    run_pass(ctx)
    assert done == [1] and control.done and not control.canceled
    assert ctx.walk_control is None
    got = {si: [(r.start, r.end, r.nr_accesses, r.age, r.sz_filter_passed) for r in rs]
           for si, rs in control.regions.items()}
    assert got == {0: [(0, 2 * P, 2, 3, P), (2 * P, 8 * P, 0, 4, 3 * P)],
                   1: [(0, 2 * P, 2, 3, P)]}  # the stat scheme saw age 3: no reset yet
    assert control.total_bytes == {0: 8 * P, 1: 2 * P}
    assert ctx.schemes[0].stats.sz_ops_filter_passed == 4 * P
    # the next pass collects nothing: the request is gone
    ctx.passed_sample_intervals = max(s.next_apply_sis for s in ctx.schemes)
    run_pass(ctx)
    assert len(control.regions[0]) == 2


def test_walk_waits_for_schemes_with_longer_apply_intervals():
    fast = SchemeSpec(action="stat", pattern=EVERYTHING)
    slow = SchemeSpec(action="stat", pattern=EVERYTHING, apply_interval_us=40000)
    ctx = ctx_with([fast, slow])
    loop.init_timers(ctx)
    control = WalkControl(total_bytes_only=True)
    walk_request(ctx, control)
    ctx.passed_sample_intervals = 4  # fast is due, slow not
    run_pass(ctx)
    assert not control.done
    ctx.passed_sample_intervals = 8  # both due; fast already completed
    run_pass(ctx)
    assert control.done and control.regions == {}
    assert control.total_bytes == {0: 8 * P, 1: 8 * P}


def test_walk_is_canceled_without_schemes_and_at_stop():
    class Ops(ApplyOps):
        def prepare_access_checks(self, ctx):
            pass

        def check_accesses(self, ctx):
            return [np.zeros(len(t.regions), dtype=bool) for t in ctx.targets]

        def target_valid(self, ctx):
            return None

        def cleanup(self, ctx):
            pass

        def update(self, ctx):
            pass

    ctx = ctx_with([], ops=Ops())
    control = WalkControl()
    walk_request(ctx, control)
    loop.run_steps(loop.kdamond_iteration(ctx))
    assert control.done and control.canceled
    ctx = ctx_with([SchemeSpec(pattern=EVERYTHING)], ops=Ops())
    control = WalkControl()
    walk_request(ctx, control)
    loop.run_steps(loop.kdamond_stop(ctx))
    assert control.canceled


def test_build_and_spec_round_trip_with_targets():
    spec = ContextSpec(targets=[TargetSpec(pid=1)],
                       schemes=[SchemeSpec(filters=[FilterSpec(type="young")])])
    ctx = build(spec)
    assert ctx.schemes[0].ops_filters[0].type == "young"


def ranges_of(ctx):
    r = ctx.targets[0].regions
    return list(zip(r.start.tolist(), r.end.tolist(), strict=True))
