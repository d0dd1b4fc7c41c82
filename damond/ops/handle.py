"""The core's view of one operation set: its pluggy hooks, callable per context."""

from __future__ import annotations

import numpy as np
import pluggy

from damond.errors import DamonError
from damond.ops.info import OpsInfo

_HOOKS = (
    "damon_ops_validate", "damon_ops_init", "damon_ops_update",
    "damon_ops_prepare_access_checks", "damon_ops_check_accesses",
    "damon_ops_get_scheme_score", "damon_ops_apply_scheme", "damon_ops_target_valid",
    "damon_ops_cleanup", "damon_ops_wmark_metric", "damon_ops_status",
)


class PluggyOpsHandle:
    """Calls only the selected plugin's implementations (pluggy's subset hook callers), and
    supplies the kernel's defaults where a set leaves an optional callback out."""

    def __init__(self, name: str, pm: pluggy.PluginManager, others: list, info: OpsInfo) -> None:
        self.name = name
        self.info = info
        self._call = {hook: pm.subset_hook_caller(hook, remove_plugins=others) for hook in _HOOKS}

    def validate(self, ctx) -> None:
        for i, s in enumerate(ctx.schemes):
            if s.action in self.info.refuses:
                raise DamonError("EINVAL", f"scheme {i}: the {self.name} operations set does "
                                 f"not support the {s.action!r} action")
        self._call["damon_ops_validate"](ctx=ctx)

    def init(self, ctx) -> None:
        self._call["damon_ops_init"](ctx=ctx)

    def update(self, ctx) -> None:
        self._call["damon_ops_update"](ctx=ctx)

    def prepare_access_checks(self, ctx) -> None:
        self._call["damon_ops_prepare_access_checks"](ctx=ctx)

    def check_accesses(self, ctx) -> list[np.ndarray]:
        result = self._call["damon_ops_check_accesses"](ctx=ctx)
        if result is None:
            return [np.zeros(len(t.regions), dtype=bool) for t in ctx.targets]
        return result

    def get_scheme_score(self, ctx, target, regions, scheme):
        return self._call["damon_ops_get_scheme_score"](ctx=ctx, target=target,
                                                        regions=regions, scheme=scheme)

    def apply_scheme(self, ctx, actions) -> list[int]:
        result = self._call["damon_ops_apply_scheme"](ctx=ctx, actions=actions)
        if result is None:
            return [0] * len(actions)
        return result

    def target_valid(self, ctx):
        return self._call["damon_ops_target_valid"](ctx=ctx)

    def cleanup(self, ctx) -> None:
        self._call["damon_ops_cleanup"](ctx=ctx)

    def wmark_metric(self, ctx, metric: str) -> int | None:
        return self._call["damon_ops_wmark_metric"](ctx=ctx, metric=metric)

    def status(self, ctx) -> dict:
        return self._call["damon_ops_status"](ctx=ctx) or {}
