"""Every sample watches for a whole sampling interval, as the kernel's kdamond does (it sleeps
one interval between ``prepare_access_checks`` and ``check_accesses``), on the real clock, with
an operation set whose checks take most of an interval."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import trio

from damond import api
from damond.core.regions import Regions
from damond.core.spec import AttrsSpec
from damond.ops.hookspecs import hookimpl
from damond.ops.registry import OperationsRegistry

INTERVAL_S = 0.005
CHECK_S = 0.001
PREPARE_S = 0.003  # with the check: 4 ms of every 5 ms, no overrun


def _slow_plugin(log: list[tuple[str, float]]) -> SimpleNamespace:
    @hookimpl
    def damon_ops_init(ctx):
        for t in ctx.targets:
            t.regions = Regions([0], [1 << 20])

    @hookimpl
    def damon_ops_prepare_access_checks(ctx):
        log.append(("prepare", time.monotonic()))
        time.sleep(PREPARE_S)

    @hookimpl
    def damon_ops_check_accesses(ctx):
        log.append(("check", time.monotonic()))
        time.sleep(CHECK_S)
        return [np.zeros(len(t.regions), dtype=bool) for t in ctx.targets]

    return SimpleNamespace(damon_ops_init=damon_ops_init,
                           damon_ops_prepare_access_checks=damon_ops_prepare_access_checks,
                           damon_ops_check_accesses=damon_ops_check_accesses)


async def test_a_check_comes_a_whole_interval_after_its_prepare_began():
    log: list[tuple[str, float]] = []
    registry = OperationsRegistry(load_entry_points=False, plugins=[("slow", _slow_plugin(log))])
    ctx = api.context("slow", attrs=AttrsSpec(sample_us=5000, aggr_us=100_000),
                      targets=[api.target()])
    async with api.session(registry, seed=1) as s:
        kd = await s.start(ctx)
        await trio.sleep(0.5)
        await kd.stop()
    windows = [b[1] - a[1] for a, b in zip(log, log[1:], strict=False)
               if a[0] == "prepare" and b[0] == "check"]
    assert len(windows) > 20
    # before: the check was due on the absolute schedule, 4 ms after the prepare began
    assert min(windows) >= INTERVAL_S - 0.0002, sorted(windows)[:5]
