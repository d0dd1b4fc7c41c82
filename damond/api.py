"""The programming interface: damond's counterpart of the kernel's ``include/linux/damon.h``.

Kernel code builds a ``damon_ctx``, selects operations, sets attributes, targets and schemes,
calls ``damon_start()`` and reads results from callbacks. Python code does the same here,
in-process, without the daemon or its socket::

    import trio
    from damond import api

    ctx = api.context("sim", targets=[api.target()],
                      schemes=[api.scheme("pageout", nr_accesses=(0, 0), age=(10, None),
                                          quota_sz=1 << 20, quota_reset_ms=100)])

    async def main():
        async with api.session() as s:
            kd = await s.start(ctx)
            kd.subscribe(lambda ev: print(ev.nr_events, "regions"))   # after_aggregation
            await trio.sleep(5)
            print(await kd.call(lambda c: c.schemes[0].stats))         # damon_call()
            await kd.stop()

    trio.run(main)

or synchronously: ``events = api.run(ctx, seconds=5)``.

Names map to the kernel's: ``session().start()`` is ``damon_start()`` (non-exclusive unless
asked), ``Kdamond.stop()`` is ``damon_stop()``, ``Kdamond.commit()`` is ``damon_commit_ctx()``,
``Kdamond.call()`` is ``damon_call()``, ``Kdamond.subscribe()`` is the ``after_aggregation``
callback / ``damon_aggregated`` tracepoint. Specs (``damond.core.spec``) carry the parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio

from damond.core.events import AggregationEvent
from damond.core.spec import (
    UINT_MAX,
    ULONG_MAX,
    AccessPatternSpec,
    AttrsSpec,
    ContextSpec,
    QuotaSpec,
    RegionSpec,
    SchemeSpec,
    TargetSpec,
    WatermarksSpec,
)
from damond.ops.registry import OperationsRegistry
from damond.scheduler import Kdamond, Scheduler
from damond.service import logs

__all__ = [
    "AccessPatternSpec", "AggregationEvent", "AttrsSpec", "ContextSpec", "Kdamond",
    "QuotaSpec", "RegionSpec", "SchemeSpec", "Session", "TargetSpec", "WatermarksSpec",
    "context", "run", "scheme", "session", "target",
]


def target(pid: int = 0, regions: list[tuple[int, int]] | None = None,
           **ops_args: Any) -> TargetSpec:
    """A monitoring target: a process (``pid``) for vaddr/fvaddr, nothing for paddr, a
    workload for sim (``workload={...}``, see ``damond.plugins.sim_workload``)."""
    return TargetSpec(pid=pid, regions=[RegionSpec(s, e) for s, e in regions or []],
                      ops_args=ops_args)


def scheme(action: str, *, sz: tuple[int, int | None] = (0, None),
           nr_accesses: tuple[int, int | None] = (0, None),
           age: tuple[int, int | None] = (0, None), quota_ms: int = 0, quota_sz: int = 0,
           quota_reset_ms: int = 0, weights: tuple[int, int, int] = (0, 0, 0),
           wmarks: WatermarksSpec | None = None, apply_interval_us: int = 0) -> SchemeSpec:
    """A scheme whose unspecified bounds match anything (``None`` = the kernel's maximum),
    unlike a fresh sysfs scheme directory whose ranges are all ``0..0``."""
    return SchemeSpec(
        action=action,
        pattern=AccessPatternSpec(
            min_sz=sz[0], max_sz=ULONG_MAX if sz[1] is None else sz[1],
            min_nr_accesses=nr_accesses[0],
            max_nr_accesses=UINT_MAX if nr_accesses[1] is None else nr_accesses[1],
            min_age=age[0], max_age=UINT_MAX if age[1] is None else age[1]),
        quota=QuotaSpec(ms=quota_ms, sz=quota_sz, reset_interval_ms=quota_reset_ms,
                        weight_sz=weights[0], weight_nr_accesses=weights[1],
                        weight_age=weights[2]),
        wmarks=wmarks or WatermarksSpec(),
        apply_interval_us=apply_interval_us)


def context(ops: str, *, attrs: AttrsSpec | None = None, targets: list[TargetSpec] | None = None,
            schemes: list[SchemeSpec] | None = None) -> ContextSpec:
    return ContextSpec(ops=ops, attrs=attrs or AttrsSpec(), targets=list(targets or []),
                       schemes=list(schemes or []))


class Session:
    """A scheduler serving kdamonds inside the caller's trio run."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._next_index = 0

    async def start(self, *ctxs: ContextSpec, exclusive: bool = False) -> Kdamond | list[Kdamond]:
        """``damon_start()``: validate every context, then start one kdamond per context.
        Returns the kdamond (or the list, for several contexts)."""
        specs = []
        for c in ctxs:
            specs.append((self._next_index, c))
            self._next_index += 1
        kds = await self.scheduler.start(specs, group="api", exclusive=exclusive)
        return kds[0] if len(kds) == 1 else kds

    @property
    def running(self) -> list[Kdamond]:
        return list(self.scheduler.running)


def _quiet_unless_configured() -> None:
    """Keep a library's log lines out of its caller's output: structlog unconfigured prints
    every line, informational ones included, to standard output. Unless the program configured
    structlog itself (the CLI and the daemon do, through ``damond.service.logs``), log warnings
    and errors only, to standard error, as the CLI does for its commands other than ``serve``."""
    if not structlog.is_configured():
        logs.configure("warning")


@asynccontextmanager
async def session(registry: OperationsRegistry | None = None, *, seed: int | None = None,
                  min_region: int | None = None,
                  cpu_budget: float = 0.0, sampler: str = "auto") -> AsyncIterator[Session]:
    """Serve kdamonds for the duration of the ``async with`` block; they stop at its end.

    ``cpu_budget`` is each kdamond's monitoring budget, a share of one CPU: a kdamond that
    would cost more samples less often (``damond.core.budget``). In-process it is off unless
    asked for (0: sample exactly as configured, as the kernel does); ``damond serve`` uses
    ``damond.core.budget.DEFAULT_CPU_BUDGET``. ``sampler`` is ``auto`` (operation sets with
    a batch sampler sample each aggregation in a worker thread) or ``per-sample`` (every
    sample on the event loop), as ``damond serve --sampler``."""
    if sampler not in ("auto", "per-sample"):
        raise ValueError(f"sampler must be 'auto' or 'per-sample', not {sampler!r}")
    _quiet_unless_configured()
    sched = Scheduler(registry or OperationsRegistry(), seed=seed, min_region=min_region,
                      cpu_budget=cpu_budget, batch_sampling=sampler == "auto")
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.serve)
        try:
            yield Session(sched)
        finally:
            with trio.CancelScope(shield=True):
                await sched.stop_all()
            nursery.cancel_scope.cancel()


def run(ctx: ContextSpec, seconds: float, *, on_aggregated: Callable[[AggregationEvent], None]
        | None = None, seed: int | None = None, clock: trio.abc.Clock | None = None
        ) -> list[AggregationEvent]:
    """Monitor ``ctx`` for ``seconds`` (or until its targets are gone) and return every
    aggregation. For scripts; ``clock=trio.testing.MockClock(autojump_threshold=0)`` runs a
    simulation as fast as the CPU allows."""
    events: list[AggregationEvent] = []

    def collect(ev: AggregationEvent) -> None:
        events.append(ev)
        if on_aggregated is not None:
            on_aggregated(ev)

    async def main() -> None:
        async with session(seed=seed) as s:
            kd = await s.start(ctx)
            kd.subscribe(collect)
            with trio.move_on_after(seconds):
                await kd.finished.wait()

    trio.run(main, clock=clock)
    return events
