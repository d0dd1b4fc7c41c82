"""kdamonds as trio tasks: start, stop, online commit and stats refresh between two samples.

Each running kdamond is one trio task with its own cancel scope, running the monitoring loop of
one context (``damond.core.kdamond``) on absolute deadlines: sample *k* is due at
``t0 + k * sample_us``, so the aggregation and update timers (counted in samples, as in Linux
v6.7+) keep real time even though each sample's work takes some. Time comes from trio's clock,
so tests run whole monitoring sessions instantly on ``trio.testing.MockClock``.

User requests that touch a running context (commit, stats refresh) are queued and run by the
kdamond itself at the point of its loop where the kernel runs ``kdamond_call()``: after the
access check and merge, before schemes. A kdamond waiting for watermarks wakes up for them.

Several kdamonds run at once in the one trio thread. Their sampling work is short and
synchronous; nothing that can block (a slow client, a log sink) runs inside it: aggregation
events go to subscribers that must only buffer.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
import trio

from damond.core import kdamond as loop
from damond.core.build import build_context, commit_context
from damond.core.context import Context
from damond.core.events import AggregationEvent, TargetSnapshot
from damond.core.schemes import (
    finish_scheme_actions,
    plan_scheme_actions,
    wait_activation_us,
)
from damond.core.spec import ContextSpec
from damond.errors import DamonError
from damond.ops.registry import OperationsRegistry

log = structlog.get_logger("damond.scheduler")

#: Sampling lateness samples kept per kdamond for percentiles (a few minutes at 200 Hz).
LATENESS_WINDOW = 65_536

Subscriber = Callable[[AggregationEvent], None]


@dataclass
class KdamondStats:
    """Counters a kdamond keeps about itself (for ``status`` and metrics)."""

    samples: int = 0
    aggregations: int = 0
    overruns: int = 0  # samples that started after their next deadline had already passed
    cpu_ns: int = 0  # CPU time of the kdamond's own work (thread CPU clock)
    busy_ns: int = 0  # wall time of the kdamond's own work
    wmark_waits: int = 0
    lateness_s: deque = field(default_factory=lambda: deque(maxlen=LATENESS_WINDOW))

    def lateness_percentile(self, q: float, last_n: int | None = None) -> float:
        """Percentile ``q`` of sampling lateness in seconds, over the last ``last_n`` samples
        (all kept samples by default)."""
        if not self.lateness_s:
            return 0.0
        values = np.fromiter(self.lateness_s, dtype=np.float64)
        if last_n is not None:
            values = values[-last_n:]
        return float(np.percentile(values, q))


class _Request:
    def __init__(self, fn: Callable[[Context], Any]) -> None:
        self.fn = fn
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Kdamond:
    """One running kdamond: a context, its operation set, and the task running them."""

    def __init__(self, index: int, ctx: Context, ops, scheduler: Scheduler,
                 *, group: str, exclusive: bool, context_index: int = 0) -> None:
        self.index = index
        self.context_index = context_index
        self.name = f"kdamond.{index}"
        self.ctx = ctx
        self.ops = ops
        self.group = group
        self.exclusive = exclusive
        self.stats = KdamondStats()
        self.subscribers: list[Subscriber] = []
        self.running = False
        self.pid = -1
        self.finished = trio.Event()
        self.stop_reason: str | None = None
        self._scheduler = scheduler
        self._cancel_scope = trio.CancelScope()
        self._requests: deque[_Request] = deque()
        self._wakeup = trio.Event()
        self._last_aggregation_ns = 0

    # -- control (called from other tasks) -----------------------------------------------

    async def call(self, fn: Callable[[Context], Any]) -> Any:
        """Run ``fn(ctx)`` inside the kdamond between two samples (``damon_call()``) and return
        its result. Raises ECANCELED if the kdamond stops first."""
        if not self.running:
            raise DamonError("EINVAL", f"{self.name} is not running")
        req = _Request(fn)
        self._requests.append(req)
        self._wakeup.set()
        await req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result

    async def commit(self, spec: ContextSpec) -> None:
        """Validate ``spec`` completely, then apply it online (``commit``). An invalid spec
        raises before anything changes."""
        new_ctx = self._scheduler.build(spec)
        new_ops = (self.ops if spec.ops == self.ctx.ops_name
                   else self._scheduler.registry.handle(spec.ops))

        def apply(ctx: Context) -> None:
            if commit_context(ctx, new_ctx):
                self.ops.cleanup(ctx)
                self.ops = new_ops
                self.ops.init(ctx)
                loop.refresh_sz_limit(ctx)

        await self.call(apply)

    async def stop(self) -> None:
        """Stop and wait until the kdamond has cleaned up (``damon_stop()``)."""
        self.stop_reason = self.stop_reason or "stopped by request"
        self._cancel_scope.cancel()
        await self.finished.wait()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Receive every aggregation; ``fn`` must not block. Returns an unsubscribe function."""
        self.subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self.subscribers:
                self.subscribers.remove(fn)

        return unsubscribe

    # -- the loop -------------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        ctx, ops = self.ctx, self.ops
        # the run's clock object, not trio.current_time(): operation sets running in a worker
        # thread may read it too
        clock = trio.lowlevel.current_clock()
        self._clock_ns = lambda: round(clock.current_time() * 1e9)
        ctx.clock_ns = self._clock_ns
        self._mono_offset_ns = time.monotonic_ns() - self._clock_ns()
        try:
            with self._cancel_scope:
                self._work(loop.start, ctx, ops)
                self.running = True
                self.pid = os.getpid()
                self._last_aggregation_ns = self._clock_ns()
                task_status.started(self)
                await self._loop()
                self.stop_reason = self.stop_reason or "every target is gone"
        except DamonError as e:
            self.stop_reason = f"{e.errno_name}: {e.why}"
            log.warning("kdamond failed", kdamond=self.index, error=str(e))
            if not self.running:
                raise
        except Exception as e:  # a bug in an operation set must not take the daemon down
            self.stop_reason = f"internal error: {e!r}"
            log.exception("kdamond crashed", kdamond=self.index)
            if not self.running:
                raise DamonError("EIO", f"{self.name} failed to start: {e!r}") from e
        finally:
            self.running = False
            self.pid = -1
            with trio.CancelScope(shield=True):
                try:
                    loop.stop(ctx, self.ops)
                finally:
                    for req in self._requests:
                        req.error = DamonError("ECANCELED", f"{self.name} stopped")
                        req.done.set()
                    self._requests.clear()
                    self._scheduler._forget(self)
                    self.finished.set()
            log.info("kdamond stopped", kdamond=self.index, reason=self.stop_reason)

    async def _loop(self) -> None:
        ctx, stats, ops = self.ctx, self.stats, self.ops
        # deadline k is base + k * interval (multiplying, not summing, keeps float error flat);
        # the schedule restarts from now after a watermark wait or an interval change
        base, k, interval = trio.current_time(), 0, None
        while True:
            # CPU and wall time are read twice per sample, not per phase: a thread-CPU clock
            # read is a system call, and costs ~0.1 ms under emulation
            span = self._span_start()
            if loop.need_stop(ctx, self.ops):
                self._span_end(span)
                return
            timers = loop.begin_iteration(ctx)
            if ctx.schemes and any(s.spec.wmarks.metric != "none" for s in ctx.schemes):
                self._span_end(span)
                if await self._wait_activation():
                    interval = None
                    continue
                span = self._span_start()
            ops = self.ops
            ops.prepare_access_checks(ctx)
            self._span_end(span)
            now = trio.current_time()
            if interval != (ctx.attrs.sample_us or 1) / 1e6:
                interval = (ctx.attrs.sample_us or 1) / 1e6
                base, k = now, 0
            k += 1
            deadline = base + k * interval
            if deadline < now:
                stats.overruns += 1
                base, k = now, 1
                deadline = now + interval
            await trio.sleep_until(deadline)
            stats.lateness_s.append(trio.current_time() - deadline)
            stats.samples += 1
            span = self._span_start()
            await self._after_sample(ctx, timers)
            self._span_end(span)

    def _span_start(self) -> tuple[int, int]:
        return time.perf_counter_ns(), time.thread_time_ns()

    def _span_end(self, span: tuple[int, int]) -> None:
        self.stats.busy_ns += time.perf_counter_ns() - span[0]
        self.stats.cpu_ns += time.thread_time_ns() - span[1]

    async def _after_sample(self, ctx: Context, timers) -> None:
        """``loop.after_sample`` phase by phase, so that the operation set's potentially
        long callbacks (applying actions, updating regions) can run in a worker thread.

        The per-sample access checks run inline: they are a few system calls per region, and a
        hop to a worker thread costs more than that (about 0.1 ms here, 9 ms under emulation).
        """
        results = self.ops.check_accesses(ctx)
        aggregate = loop.count_accesses(ctx, timers, results)
        self._handle_requests(ctx)
        if ctx.schemes:
            actions = plan_scheme_actions(ctx, self.ops, ctx.clock_ns() // 1_000_000)
            if actions is not None:
                applied: list[int] = []
                elapsed = 0
                if actions:
                    start_ns = ctx.clock_ns()
                    applied = list(await self._ops_call(self.ops.apply_scheme, ctx, actions))
                    elapsed = ctx.clock_ns() - start_ns
                finish_scheme_actions(ctx, actions, applied, elapsed)
        if loop.finish_sample(ctx, timers, aggregate, self._emit):
            await self._ops_call(self.ops.update, ctx)
            loop.refresh_sz_limit(ctx)

    async def _ops_call(self, fn, *args):
        """Call the operation set: inline when it is quick, in a worker thread when it says it
        may block (so clients and other kdamonds are not held up by, e.g., a pageout)."""
        if not self.ops.info.blocking:
            return fn(*args)
        # the caller's span counts this wall time; the worker's CPU is added separately
        result, cpu_ns = await trio.to_thread.run_sync(_timed_cpu, fn, *args)
        self.stats.cpu_ns += cpu_ns
        return result

    async def _wait_activation(self) -> bool:
        """Watermarks: while every scheme is inactive, do not sample; re-check at the
        watermark interval (or earlier, when a request arrives). True if it waited."""
        waited = False
        while True:
            wait_us = self._work(wait_activation_us, self.ctx, self._read_metric)
            if not wait_us:
                return waited
            waited = True
            self.stats.wmark_waits += 1
            self._wakeup = trio.Event()
            with trio.move_on_after(wait_us / 1e6):
                await self._wakeup.wait()
            self._work(self._handle_requests, self.ctx)
            if self._work(loop.need_stop, self.ctx, self.ops):
                return True

    def _read_metric(self, metric: str) -> int | None:
        value = self.ops.wmark_metric(self.ctx, metric)
        if value is not None:
            return value
        if metric == "free_mem_rate":
            from damond.platform.meminfo import free_mem_rate

            return free_mem_rate()
        return None

    def _work(self, fn, *args):
        """Run a synchronous part of the loop, accounting its wall and CPU time."""
        t0 = time.perf_counter_ns()
        c0 = time.thread_time_ns()
        try:
            return fn(*args)
        finally:
            self.stats.busy_ns += time.perf_counter_ns() - t0
            self.stats.cpu_ns += time.thread_time_ns() - c0

    def _handle_requests(self, ctx: Context) -> None:
        while self._requests:
            req = self._requests.popleft()
            try:
                req.result = req.fn(ctx)
            except DamonError as e:
                req.error = e
            except Exception as e:  # a bug in a request must not kill the kdamond
                log.exception("kdamond request failed", kdamond=self.index)
                req.error = DamonError("EIO", f"internal error: {e!r}")
            req.done.set()

    def _emit(self, ctx: Context) -> None:
        self.stats.aggregations += 1
        now_ns = ctx.clock_ns()
        start_ns = self._last_aggregation_ns
        self._last_aggregation_ns = now_ns
        if not self.subscribers:
            return
        event = AggregationEvent(
            kdamond_index=self.index, context_index=self.context_index,
            start_ns=start_ns + self._mono_offset_ns, end_ns=now_ns + self._mono_offset_ns,
            sample_us=ctx.attrs.sample_us, aggr_us=ctx.attrs.aggr_us,
            targets=tuple(_snapshot(i, t.regions) for i, t in enumerate(ctx.targets)))
        for fn in list(self.subscribers):
            try:
                fn(event)
            except Exception:  # a subscriber's bug must not stop monitoring
                log.exception("aggregation subscriber failed", kdamond=self.index)
                self.subscribers.remove(fn)

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "kdamond": self.index, "state": "on" if self.running else "off",
            "ops": self.ctx.ops_name, "nr_targets": len(self.ctx.targets),
            "nr_regions": self.ctx.nr_regions(), "samples": s.samples,
            "aggregations": s.aggregations, "overruns": s.overruns,
            "cpu_s": s.cpu_ns / 1e9, "wmark_waits": s.wmark_waits,
            "lateness_p99_ms": s.lateness_percentile(99) * 1e3,
            "ops_status": self.ops.status(self.ctx),
        }


def _timed_cpu(fn, *args):
    c0 = time.thread_time_ns()
    result = fn(*args)
    return result, time.thread_time_ns() - c0


def _snapshot(index: int, regions) -> TargetSnapshot:
    return TargetSnapshot(index, regions.start.copy(), regions.end.copy(),
                          regions.nr_accesses.copy(), regions.age.copy())


class Scheduler:
    """Starts and stops kdamonds inside a nursery it owns, with the kernel's exclusivity
    rules: kdamonds started non-exclusively (sysfs) run side by side; an exclusive group
    (debugfs) runs alone (``damon_start()``: EBUSY otherwise)."""

    def __init__(self, registry: OperationsRegistry, *, seed: int | None = None,
                 min_region: int | None = None) -> None:
        self.registry = registry
        self.seed = seed
        self.min_region = min_region
        self.running: list[Kdamond] = []
        #: called with each kdamond that starts (e.g. so trace clients follow new kdamonds)
        self.start_listeners: list[Callable[[Kdamond], None]] = []
        self._nursery: trio.Nursery | None = None

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the kdamonds' nursery until cancelled; every kdamond stops with it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            await trio.sleep_forever()

    def build(self, spec: ContextSpec) -> Context:
        """Validate and build a context from a spec (nothing is started)."""
        kwargs = {} if self.min_region is None else {"min_region": self.min_region}
        ctx = build_context(spec, avail_operations=self.registry.avail_operations(),
                            seed=self.seed, **kwargs)
        self.registry.handle(spec.ops).validate(ctx)
        return ctx

    async def start(self, specs: list[tuple[int, ContextSpec]], *, group: str,
                    exclusive: bool) -> list[Kdamond]:
        """Start one kdamond per (index, context spec), all or nothing: every spec is validated
        before the first kdamond starts."""
        if self._nursery is None:
            raise DamonError("EAGAIN", "the scheduler is not serving")
        if (exclusive and self.running) or (
                not exclusive and any(k.exclusive for k in self.running)):
            busy = ", ".join(sorted({k.group for k in self.running}))
            raise DamonError("EBUSY", f"kdamonds of {busy} are running and exclusive use "
                             "was requested or is in force")
        built = [(i, self.build(spec), spec.ops) for i, spec in specs]
        started = []
        for ctx_index, (index, ctx, ops_name) in enumerate(built):
            kd = Kdamond(index, ctx, self.registry.handle(ops_name), self, group=group,
                         exclusive=exclusive, context_index=ctx_index if exclusive else 0)
            self.running.append(kd)
            try:
                await self._nursery.start(kd.run)
            except BaseException:
                for k in started:
                    await k.stop()
                raise
            started.append(kd)
            for listener in list(self.start_listeners):
                listener(kd)
            log.info("kdamond started", kdamond=index, ops=ops_name, group=group,
                     targets=len(ctx.targets), schemes=len(ctx.schemes))
        return started

    def _forget(self, kd: Kdamond) -> None:
        if kd in self.running:
            self.running.remove(kd)

    async def stop_all(self) -> None:
        for kd in list(self.running):
            await kd.stop()

