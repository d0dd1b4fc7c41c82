"""Discovery and selection of operation sets (the kernel's ``damon_register_ops()`` /
``damon_select_ops()``, with pluggy as the registry).

Built-in sets are registered by name first, like pytest and tox register their internal
plugins; third-party sets come from the entry-point group ``damond.operations``. Setting
``DAMOND_DISABLE_PLUGIN_AUTOLOAD`` skips the entry points and ``DAMOND_DISABLED_PLUGINS``
(comma-separated names) blocks some, the way ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import pluggy

from damond.errors import DamonError
from damond.ops import hookspecs
from damond.ops.handle import PluggyOpsHandle
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

_OPS_HOOK = "damon_ops_check_accesses"


@dataclass(frozen=True)
class PluginRecord:
    name: str
    info: OpsInfo
    distribution: str
    version: str
    builtin: bool


class OperationsRegistry:
    """The operation sets damond can use, and a handle to call one of them per context."""

    def __init__(self, *, load_entry_points: bool = True, builtins=BUILTIN_OPERATIONS) -> None:
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
        if load_entry_points and not os.environ.get("DAMOND_DISABLE_PLUGIN_AUTOLOAD"):
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        self.pm.check_pending()
        self._records = self._collect()

    def _collect(self) -> dict[str, PluginRecord]:
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        records = {}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None or not self._implements_ops(plugin):
                continue
            info = self._call_single(plugin, "damon_ops_info")
            if info is None:
                info = OpsInfo(name=name, summary="(no description)")
            dist = dists.get(id(plugin))
            records[name] = PluginRecord(
                name=name, info=info,
                distribution=dist.project_name if dist else "damond",
                version=dist.version if dist else _own_version(),
                builtin=name in self._builtin)
        return records

    def _implements_ops(self, plugin) -> bool:
        return any(impl.plugin is plugin
                   for impl in getattr(self.pm.hook, _OPS_HOOK).get_hookimpls())

    def _call_single(self, plugin, hook_name: str, **kwargs):
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)

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

    def handle(self, name: str) -> PluggyOpsHandle:
        """A callable view of one operation set for the core (``damon_select_ops()``)."""
        self._record(name)
        plugin = self.pm.get_plugin(name)
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return PluggyOpsHandle(name, self.pm, others, self._records[name].info)


def _disabled_names() -> list[str]:
    raw = os.environ.get("DAMOND_DISABLED_PLUGINS", "")
    return [n.strip() for n in raw.split(",") if n.strip()]


def _own_version() -> str:
    from damond import __version__

    return __version__


_default: OperationsRegistry | None = None


def default_registry() -> OperationsRegistry:
    """The process-wide registry (built on first use)."""
    global _default
    if _default is None:
        _default = OperationsRegistry()
    return _default
