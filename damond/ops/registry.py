"""Discovery and selection of operation sets (the kernel's ``damon_register_ops()`` /
``damon_select_ops()``), with pluggy finding them.

Built-in sets are registered by name first, like pytest and tox register their internal
plugins; third-party sets come from the entry-point group ``damond.operations``. Setting
``DAMOND_DISABLE_PLUGIN_AUTOLOAD`` skips the entry points and ``DAMOND_DISABLED_PLUGINS``
(comma-separated names) blocks some, the way ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does.

pluggy's part ends there. ``resolve`` looks up the chosen set's hook implementations once and
returns them as plain functions in a ``DamonOperations`` record, which is what a kdamond calls
200 times a second: a call through pluggy's per-plugin hook caller costs ~6.5 us, a call through
the record what a direct call costs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pluggy

from damond import __version__
from damond.core.operations import CALLBACKS, DamonOperations
from damond.errors import DamonError
from damond.ops import hookspecs
from damond.ops.common import system_goal_metric, system_wmark_metric
from damond.ops.info import OpsInfo

ENTRY_POINT_GROUP = "damond.operations"

#: Built-in operation sets in the order ``avail_operations`` lists them (the kernel lists its
#: sets by id: vaddr, fvaddr, paddr); ``sim`` is damond's own.
BUILTIN_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("vaddr", "damond.plugins.vaddr"),
    ("fvaddr", "damond.plugins.fvaddr"),
    ("paddr", "damond.plugins.paddr"),
    ("sim", "damond.plugins.sim"),
)

#: The hook a plugin must implement to count as an operation set.
_OPS_HOOK = "damon_ops_check_accesses"


def hook_name(callback: str) -> str:
    """The plugin hook behind one callback of ``DamonOperations`` (``damon_ops_<callback>``)."""
    return f"damon_ops_{callback}"


@dataclass(frozen=True)
class PluginRecord:
    name: str
    info: OpsInfo
    distribution: str
    version: str
    builtin: bool


class OperationsRegistry:
    """The operation sets damond can use, and their resolved callbacks.

    ``plugins`` registers extra plugin objects by name (after the built-ins, before the entry
    points), for embedding programs, tests and benchmarks that bring their own set.
    """

    def __init__(self, *, load_entry_points: bool = True,
                 builtins: Iterable[tuple[str, str]] = BUILTIN_OPERATIONS,
                 plugins: Iterable[tuple[str, object]] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for name in _disabled_names():
            self.pm.set_blocked(name)
        self._builtin: set[str] = set()
        for name, module_name in builtins:
            if self.pm.is_blocked(name):
                continue
            module = importlib.import_module(module_name)
            self.pm.register(module, name=name)
            self._builtin.add(name)
        for name, plugin in plugins:
            if not self.pm.is_blocked(name):
                self.pm.register(plugin, name=name)
        if load_entry_points and not os.environ.get("DAMOND_DISABLE_PLUGIN_AUTOLOAD"):
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        self.pm.check_pending()
        self._records = self._collect()
        self._resolved: dict[str, DamonOperations] = {}

    def _collect(self) -> dict[str, PluginRecord]:
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        records = {}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None or self._function(plugin, _OPS_HOOK) is None:
                continue
            describe = self._function(plugin, "damon_ops_info")
            info = describe() if describe is not None else None
            if info is None:
                info = OpsInfo(name=name, summary="(no description)")
            dist = dists.get(id(plugin))
            records[name] = PluginRecord(
                name=name, info=info,
                distribution=dist.project_name if dist else "damond",
                version=dist.version if dist else __version__,
                builtin=name in self._builtin)
        return records

    def avail_operations(self) -> list[str]:
        """Names accepted by a context's ``operations`` file, in the kernel's order."""
        return list(self._records)

    def records(self) -> list[PluginRecord]:
        return list(self._records.values())

    def info(self, name: str) -> OpsInfo:
        return self._record(name).info

    def _record(self, name: str) -> PluginRecord:
        try:
            return self._records[name]
        except KeyError:
            raise DamonError("EINVAL", f"operations {name!r} is not available "
                             f"(avail_operations: {', '.join(self._records)})") from None

    def resolve(self, name: str) -> DamonOperations:
        """``damon_select_ops()``: the callbacks of operation set ``name``, looked up once.

        Hooks the set leaves out get the kernel's defaults (nothing accessed, nothing applied,
        no validity notion, ...); ``validate`` refuses the actions the set's ``OpsInfo.refuses``
        lists before the set's own check runs; ``wmark_metric`` falls back to the system's value
        where the set has none. Raises EINVAL for a name that is not available. The record
        holds no state, so one record serves every context using the set.
        """
        ops = self._resolved.get(name)
        if ops is None:
            info = self._record(name).info
            plugin = self.pm.get_plugin(name)
            found = {cb: self._function(plugin, hook_name(cb)) for cb in CALLBACKS}
            ops = _operations(name, info, found)
            self._resolved[name] = ops
        return ops

    def _function(self, plugin: object, hook: str) -> Callable | None:
        """``plugin``'s implementation of ``hook`` as a function taking the hook's arguments
        positionally, in the specification's order; None when the plugin has none."""
        caller = getattr(self.pm.hook, hook)
        impl = next((i for i in caller.get_hookimpls() if i.plugin is plugin), None)
        if impl is None:
            return None
        spec_args = tuple(caller.spec.argnames)
        if impl.hookwrapper or impl.wrapper:
            # a wrapper only works inside pluggy's call loop: keep calling through it
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            subset = self.pm.subset_hook_caller(hook, remove_plugins=others)
            return lambda *args: subset(**dict(zip(spec_args, args, strict=True)))
        if tuple(impl.argnames) == spec_args:
            return impl.function
        # pluggy lets an implementation take a subset of the hook's arguments, by name
        fn = impl.function
        picks = tuple(spec_args.index(a) for a in impl.argnames)
        return lambda *args: fn(*(args[i] for i in picks))


def _operations(name: str, info: OpsInfo,
                found: dict[str, Callable | None]) -> DamonOperations:
    """The record of one set, with the kernel's default for every callback it leaves out."""
    quiet_pair = bool(found["sample_aggregation"] and found["quiet_span"]
                      and found["quiet_check"])
    return DamonOperations(
        name=name, info=info,
        validate=_validate(name, info.refuses, found["validate"]),
        init=found["init"] or _do_nothing,
        update=found["update"] or _do_nothing,
        prepare_access_checks=found["prepare_access_checks"] or _do_nothing,
        check_accesses=_check_accesses(found["check_accesses"]),
        get_scheme_score=found["get_scheme_score"] or _no_scores,
        apply_scheme=_apply_scheme(found["apply_scheme"]),
        target_valid=found["target_valid"] or _no_validity,
        cleanup=found["cleanup"] or _do_nothing,
        wmark_metric=_wmark_metric(found["wmark_metric"]),
        status=_status(found["status"]),
        goal_metric=_goal_metric(found["goal_metric"]),
        sample_aggregation=found["sample_aggregation"],
        # the quiet-span pair only means something together, and with a batch sampler
        quiet_span=found["quiet_span"] if quiet_pair else None,
        quiet_check=found["quiet_check"] if quiet_pair else None,
    )


def _do_nothing(ctx) -> None:
    return None


def _no_scores(ctx, target, regions, scheme) -> None:
    return None


def _no_validity(ctx) -> None:
    return None


def _nothing_accessed(ctx) -> list[np.ndarray]:
    return [np.zeros(len(t.regions), dtype=bool) for t in ctx.targets]


def _validate(name: str, refuses: frozenset[str], own: Callable | None) -> Callable:
    def validate(ctx) -> None:
        for i, s in enumerate(ctx.schemes):
            if s.action in refuses:
                raise DamonError("EINVAL", f"scheme {i}: the {name} operations set does "
                                 f"not support the {s.action!r} action")
        if own is not None:
            own(ctx)

    return validate


def _check_accesses(own: Callable | None) -> Callable:
    if own is None:
        return _nothing_accessed

    def check_accesses(ctx) -> list[np.ndarray]:
        result = own(ctx)
        return _nothing_accessed(ctx) if result is None else result

    return check_accesses


def _apply_scheme(own: Callable | None) -> Callable:
    def apply_scheme(ctx, actions) -> list[int]:
        result = None if own is None else own(ctx, actions)
        return [0] * len(actions) if result is None else result

    return apply_scheme


def _wmark_metric(own: Callable | None) -> Callable:
    def wmark_metric(ctx, metric: str) -> int | None:
        value = None if own is None else own(ctx, metric)
        return system_wmark_metric(metric) if value is None else value

    return wmark_metric


def _goal_metric(own: Callable | None) -> Callable:
    def goal_metric(ctx, goal) -> int | None:
        value = None if own is None else own(ctx, goal)
        return system_goal_metric(goal) if value is None else value

    return goal_metric


def _status(own: Callable | None) -> Callable:
    def status(ctx) -> dict:
        return (None if own is None else own(ctx)) or {}

    return status


def _disabled_names() -> list[str]:
    raw = os.environ.get("DAMOND_DISABLED_PLUGINS", "")
    return [n.strip() for n in raw.split(",") if n.strip()]
