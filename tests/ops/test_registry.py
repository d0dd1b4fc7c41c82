"""The registry resolves an operation set once into the core's ``DamonOperations`` record:
the set's own functions where it has them, the kernel's defaults where it leaves a hook out."""

from __future__ import annotations

import inspect
from dataclasses import fields
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from damond.core.context import Context, Scheme, Target
from damond.core.operations import CALLBACKS, DamonOperations, SchemeAction
from damond.core.regions import Regions
from damond.core.spec import SchemeSpec
from damond.errors import DamonError
from damond.ops import hookspecs
from damond.ops.common import system_wmark_metric
from damond.ops.hookspecs import hookimpl
from damond.ops.info import OpsInfo
from damond.ops.registry import OperationsRegistry, hook_name
from damond.plugins import sim, vaddr


def _registry(**plugins) -> OperationsRegistry:
    return OperationsRegistry(load_entry_points=False, builtins=(),
                              plugins=list(plugins.items()))


def _ctx(nr_regions=(3, 2), actions=()) -> Context:
    ctx = Context(ops_name="mini")
    ctx.targets = [Target(pid=None) for _ in nr_regions]
    for t, n in zip(ctx.targets, nr_regions, strict=True):
        t.regions = Regions(list(range(0, 10 * n, 10)), list(range(10, 10 * n + 10, 10)))
    ctx.schemes = [Scheme(spec=SchemeSpec(action=a)) for a in actions]
    return ctx


@hookimpl
def _mini_check_accesses(ctx):
    return [np.ones(len(t.regions), dtype=bool) for t in ctx.targets]


def _mini(**hooks) -> SimpleNamespace:
    """A plugin implementing only ``check_accesses`` (what makes it an operation set), plus
    ``hooks`` given as ``callback=function``."""
    impls = {hook_name(cb): hookimpl(fn) for cb, fn in hooks.items()}
    return SimpleNamespace(damon_ops_check_accesses=_mini_check_accesses, **impls)


# ---------------------------------------------------------------------------------------------
# one declaration of the interface


def test_callbacks_are_the_record_fields():
    assert tuple(f.name for f in fields(DamonOperations))[2:] == CALLBACKS
    assert "name" not in CALLBACKS and "info" not in CALLBACKS


def test_hookspecs_are_the_callbacks_plus_info():
    specs = {name for name, fn in vars(hookspecs).items()
             if name.startswith("damon_ops_") and inspect.isfunction(fn)}
    assert specs == {"damon_ops_info"} | {hook_name(cb) for cb in CALLBACKS}
    for name in specs:
        assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"


# ---------------------------------------------------------------------------------------------
# resolved once, called directly


def test_resolve_puts_the_sets_own_functions_in_the_record():
    ops = OperationsRegistry(load_entry_points=False).resolve("vaddr")
    assert isinstance(ops, DamonOperations)
    assert ops.name == "vaddr" and ops.info.name == "vaddr"
    # no dispatch left between the core and the set on the per-sample path
    assert ops.prepare_access_checks is vaddr.damon_ops_prepare_access_checks
    assert ops.init is vaddr.damon_ops_init
    assert ops.get_scheme_score is vaddr.damon_ops_get_scheme_score


def test_resolve_once_per_registry():
    registry = OperationsRegistry(load_entry_points=False)
    assert registry.resolve("sim") is registry.resolve("sim")
    assert registry.resolve("sim") is not registry.resolve("paddr")


def test_resolve_unknown_set():
    with pytest.raises(DamonError) as e:
        OperationsRegistry(load_entry_points=False).resolve("nosuchset")
    assert e.value.errno_name == "EINVAL"
    assert "avail_operations: vaddr, fvaddr, paddr, sim" in e.value.why


def test_plugin_without_ops_hooks_is_not_an_operation_set():
    registry = _registry(mini=_mini(), other=SimpleNamespace(damon_ops_info=hookimpl(
        lambda: OpsInfo(name="other", summary="no check_accesses"))))
    assert registry.avail_operations() == ["mini"]
    assert registry.info("mini") == OpsInfo(name="mini", summary="(no description)")


def test_implementation_taking_fewer_arguments():
    """pluggy lets an implementation take a subset of a hook's arguments; so does the record."""
    seen = []

    def get_scheme_score(regions, scheme):
        seen.append((regions, scheme))
        return np.full(len(regions), 7)

    ops = _registry(mini=_mini(get_scheme_score=get_scheme_score)).resolve("mini")
    ctx = _ctx(actions=["pageout"])
    t, s = ctx.targets[0], ctx.schemes[0]
    assert ops.get_scheme_score(ctx, t, t.regions, s).tolist() == [7, 7, 7]
    assert seen == [(t.regions, s)]


def test_hook_wrapper_keeps_working_through_pluggy():
    """A set that implements a hook as a wrapper is still called the way pluggy calls it."""
    ran = []

    def status(ctx):
        ran.append(ctx)
        yield

    plugin = ModuleType("wrapped")  # hashable, as pluggy's subset callers need
    plugin.damon_ops_check_accesses = _mini_check_accesses
    plugin.damon_ops_status = hookimpl(hookwrapper=True)(status)
    ops = _registry(mini=plugin).resolve("mini")
    ctx = _ctx()
    assert ops.status(ctx) == {}
    assert ran == [ctx]


# ---------------------------------------------------------------------------------------------
# the kernel's defaults where a set leaves a hook out


def test_defaults_of_a_minimal_set():
    ops = _registry(mini=_mini()).resolve("mini")
    ctx = _ctx()
    for callback in ("validate", "init", "update", "prepare_access_checks", "cleanup"):
        assert getattr(ops, callback)(ctx) is None
    assert [a.tolist() for a in ops.check_accesses(ctx)] == [[True] * 3, [True] * 2]
    t = ctx.targets[0]
    assert ops.get_scheme_score(ctx, t, t.regions, Scheme(spec=SchemeSpec())) is None
    actions = [SchemeAction(0, 0, 10, 0, "pageout"), SchemeAction(1, 0, 10, 0, "cold")]
    assert ops.apply_scheme(ctx, actions) == [0, 0]
    assert ops.apply_scheme(ctx, []) == []
    assert ops.target_valid(ctx) is None
    assert ops.status(ctx) == {}


def test_defaults_replace_none_answers():
    ops = _registry(mini=SimpleNamespace(
        damon_ops_check_accesses=hookimpl(lambda ctx: None),
        damon_ops_apply_scheme=hookimpl(lambda ctx, actions: None),
        damon_ops_status=hookimpl(lambda ctx: None))).resolve("mini")
    ctx = _ctx()
    accessed = ops.check_accesses(ctx)
    assert [a.dtype for a in accessed] == [np.dtype(bool)] * 2
    assert [a.tolist() for a in accessed] == [[False] * 3, [False] * 2]
    assert ops.apply_scheme(ctx, [SchemeAction(0, 0, 10, 0, "stat")]) == [0]
    assert ops.status(ctx) == {}


def test_answers_of_the_set_pass_through():
    ops = _registry(mini=_mini(apply_scheme=lambda ctx, actions: [5] * len(actions),
                               target_valid=lambda ctx: [True, False],
                               status=lambda ctx: {"k": 1})).resolve("mini")
    ctx = _ctx()
    assert ops.apply_scheme(ctx, [SchemeAction(0, 0, 10, 0, "stat")] * 2) == [5, 5]
    assert ops.target_valid(ctx) == [True, False]
    assert ops.status(ctx) == {"k": 1}


def test_validate_refuses_the_actions_the_set_refuses_first():
    checked = []

    def info():
        return OpsInfo(name="mini", summary="refuses hugepage", refuses=frozenset({"hugepage"}))

    def validate(ctx):
        checked.append(ctx)

    ops = _registry(mini=_mini(info=info, validate=validate)).resolve("mini")
    ok = _ctx(actions=["pageout", "stat"])
    ops.validate(ok)
    assert checked == [ok]
    refused = _ctx(actions=["stat", "hugepage"])
    with pytest.raises(DamonError) as e:
        ops.validate(refused)
    assert e.value.errno_name == "EINVAL"
    assert e.value.why == ("scheme 1: the mini operations set does not support the "
                           "'hugepage' action")
    assert checked == [ok]  # the set's own check never saw the refused context


def test_validate_of_the_set_can_refuse():
    def validate(ctx):
        raise DamonError("ESRCH", "gone")

    ops = _registry(mini=_mini(validate=validate)).resolve("mini")
    with pytest.raises(DamonError) as e:
        ops.validate(_ctx())
    assert e.value.errno_name == "ESRCH"


def test_wmark_metric_falls_back_to_the_system():
    ops = _registry(mini=_mini()).resolve("mini")
    ctx = _ctx()
    rate = ops.wmark_metric(ctx, "free_mem_rate")
    assert 0 <= rate <= 1000
    assert abs(rate - system_wmark_metric("free_mem_rate")) <= 20  # moves between two reads
    assert ops.wmark_metric(ctx, "none") is None


def test_wmark_metric_of_the_set_wins_and_none_falls_back():
    def wmark_metric(ctx, metric):
        return 123 if metric == "free_mem_rate" and ctx.ops_data == "simulated" else None

    ops = _registry(mini=_mini(wmark_metric=wmark_metric)).resolve("mini")
    ctx = _ctx()
    ctx.ops_data = "simulated"
    assert ops.wmark_metric(ctx, "free_mem_rate") == 123
    ctx.ops_data = None
    rate = ops.wmark_metric(ctx, "free_mem_rate")
    assert abs(rate - system_wmark_metric("free_mem_rate")) <= 20


def test_sim_wmark_metric_through_the_record():
    """sim answers with its simulated machine's free memory once it runs; before, the system's."""
    ops = OperationsRegistry(load_entry_points=False).resolve("sim")
    ctx = Context(ops_name="sim", targets=[Target(pid=None)])
    ctx.clock_ns = lambda: 0
    assert ops.wmark_metric is not sim.damon_ops_wmark_metric  # wrapped for the fallback
    before = ops.wmark_metric(ctx, "free_mem_rate")
    assert 0 <= before <= 1000
    ops.init(ctx)
    space = ctx.ops_data.spaces[0]
    total = space.workload.mem_total
    used = space.workload.other_used_at(0.0) + space.resident_bytes()
    assert ops.wmark_metric(ctx, "free_mem_rate") == max(0, total - used) * 1000 // total
    ops.cleanup(ctx)
