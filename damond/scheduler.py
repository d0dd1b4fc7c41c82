"""kdamonds as trio tasks: start, stop, online commit and stats refresh between two samples.

Each running kdamond is one trio task with its own cancel scope, driving the core's loop of one
context (``damond.core.kdamond``: the loop exists there only, as steps that say what they need;
this module performs those effects) on absolute deadlines: sample *k* is due at
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
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
import trio

from damond.core import kdamond as loop
from damond.core.attrs import sample_interval
from damond.core.budget import (
    DEFAULT_CPU_BUDGET,
    MIN_WINDOW_SAMPLES,
    TARGET_SLOWDOWN_FACTOR,
    BudgetState,
    WindowCost,
    check_budget,
    effective_us,
    next_state,
)
from damond.core.build import build_context, commit_context
from damond.core.context import Context
from damond.core.events import AggregationEvent, TargetSnapshot
from damond.core.operations import SampledBatch
from damond.core.schemes import WalkControl, walk_request
from damond.core.spec import ContextSpec
from damond.errors import DamonError
from damond.ops.registry import OperationsRegistry
from damond.platform.batch_thread import BatchThread
from damond.platform.pagesize import PAGE_SIZE

if TYPE_CHECKING:
    from damond.core.operations import DamonOperations

log = structlog.get_logger("damond.scheduler")

#: Sampling lateness samples kept per kdamond for percentiles (a few minutes at 200 Hz).
LATENESS_WINDOW = 65_536

Subscriber = Callable[[AggregationEvent], None]


@dataclass
class KdamondStats:
    """Counters a kdamond keeps about itself (for ``status``, ``lateness`` and metrics).

    ``lateness_s`` keeps how late each of the last ``LATENESS_WINDOW`` samples woke up; its
    newest value belongs to sample number ``samples`` (both change together). The lateness
    windows and percentiles every reader shows are computed here, and only here.
    """

    samples: int = 0
    aggregations: int = 0
    overruns: int = 0  # samples that started after their next deadline had already passed
    cpu_ns: int = 0  # CPU time of the kdamond's own work (thread CPU clock)
    busy_ns: int = 0  # wall time of the kdamond's own work
    wmark_waits: int = 0
    #: samples a batch sampler coalesced because every target was idle (not woken for)
    coalesced: int = 0
    #: of those, the spans slept through on the event loop (the batch thread not woken)
    loop_quiet_spans: int = 0
    lateness_s: deque = field(default_factory=lambda: deque(maxlen=LATENESS_WINDOW))

    def recent_lateness(self, last_n: int | None = None, *, skip: int = 0) -> np.ndarray:
        """Lateness (seconds) of the last ``last_n`` kept samples (all by default) before
        the ``skip`` newest ones, newest first. Walks from the newest end, so a short window
        costs little however much is kept."""
        n = max(0, min(len(self.lateness_s) - skip,
                       len(self.lateness_s) if last_n is None else last_n))
        newest_first = islice(reversed(self.lateness_s), skip, skip + n)
        return np.fromiter(newest_first, dtype=np.float64, count=n)

    def lateness_window(self, first: int, last: int) -> tuple[np.ndarray, int, int]:
        """Lateness (seconds) of samples ``first..last`` (1-based sample numbers), clipped to
        the samples still kept; returns the values and the window actually covered."""
        last = min(last, self.samples)
        first = max(first, self.samples - len(self.lateness_s) + 1, 1)
        if first > last:
            return np.empty(0), first, last
        return self.recent_lateness(last - first + 1, skip=self.samples - last), first, last

    @staticmethod
    def percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
        """Percentiles ``qs`` (0..100, numpy's linear interpolation) of lateness ``values``;
        zeros when there are none."""
        if not len(values):
            return [0.0] * len(qs)
        return [float(v) for v in np.percentile(values, qs)]

    def lateness_percentile(self, q: float, last_n: int | None = None) -> float:
        """Percentile ``q`` of sampling lateness in seconds, over the last ``last_n`` samples
        (all kept samples by default)."""
        return self.percentiles(self.recent_lateness(last_n), [q])[0]


class _Request:
    def __init__(self, fn: Callable[[Context], Any]) -> None:
        self.fn = fn
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Kdamond:
    """One running kdamond: a context, its operation set, and the task driving its loop."""

    #: where the context runs (an offloaded runner says "kernel") and why not elsewhere
    placement = "user space"
    placement_why = ""

    def __init__(self, index: int, ctx: Context, ops: DamonOperations, scheduler: Scheduler,
                 *, group: str, exclusive: bool, context_index: int = 0) -> None:
        self.index = index
        self.context_index = context_index
        self.name = f"kdamond.{index}"
        self.ctx = ctx
        ctx.ops = ops
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
        # the sampling schedule: sample k of the current schedule is due at base + k * interval
        # (multiplying, not summing, keeps float error flat); None restarts it from now
        self._sched_base = 0.0
        self._sched_k = 0
        self._sched_interval: float | None = None
        #: when this sample's prepare_access_checks began (trio time): its check is due no
        #: sooner than one interval later, as in the kernel
        self._prepared_at: float | None = None
        # the monitoring budget (damond.core.budget): the controller's state, and the window
        # (the samples since the last aggregation) being measured for its next decision
        self.cpu_budget = scheduler.cpu_budget
        self.budget = BudgetState()
        self.budget_off_why = "" if self.cpu_budget > 0 else "disabled (a budget of 0)"
        self.budget_exceeded = 0  # aggregation windows whose charged share exceeded the budget
        self.last_window: WindowCost | None = None
        self._charges_target = False  # the access check slows the target (smaps, soft_dirty)
        self._w_start_ns = 0
        self._w_cpu0 = 0
        self._w_samples = 0
        self._w_wake_ns: int | None = None
        self._w_target_ns = 0
        # batch sampling (the operation set's sample_aggregation, in a worker thread)
        self._batch_stop: bytearray | None = None
        #: a quiet span being slept through on the event loop (``_quiet_batch``)
        self._quiet_scope: trio.CancelScope | None = None
        self._batch_thread = BatchThread(f"kdamond.{index}")
        self._batch_off_why = "" if scheduler.batch_sampling else "disabled (--sampler per-sample)"
        self.sampler_kind = ""

    @property
    def ops(self) -> DamonOperations:
        """The operation set the context runs on now (a commit may switch it)."""
        return self.ctx.ops

    # -- control (called from other tasks) -----------------------------------------------

    async def call(self, fn: Callable[[Context], Any]) -> Any:
        """Run ``fn(ctx)`` inside the kdamond between two samples (``damon_call()``) and return
        its result. Raises ECANCELED if the kdamond stops first."""
        if not self.running:
            raise DamonError("EINVAL", f"{self.name} is not running")
        req = _Request(fn)
        self._requests.append(req)
        self._wakeup.set()
        if self._batch_stop is not None:
            # a batch ends after its current sample, so that requests are served between two
            # samples, as the kernel's kdamond_call() serves them, not at the batch's end
            self._batch_stop[0] = 1
        if self._quiet_scope is not None:
            self._quiet_scope.cancel()  # a quiet span on the loop ends at once
        await req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result

    async def commit(self, spec: ContextSpec) -> None:
        """Validate ``spec`` completely, then apply it online (``commit``). An invalid spec
        raises before anything changes."""
        new_ctx = self._scheduler.build(spec)
        new_ops = (self.ops if spec.ops == self.ctx.ops_name
                   else self._scheduler.registry.resolve(spec.ops))

        def apply(ctx: Context) -> None:
            if commit_context(ctx, new_ctx):
                ctx.ops.cleanup(ctx)
                ctx.ops = new_ops
                ctx.ops.init(ctx)
                loop.refresh_sz_limit(ctx)

        await self.call(apply)

    async def walk_schemes(self, *, total_bytes_only: bool = False) -> WalkControl:
        """``damos_walk()`` (the ``update_schemes_tried_regions`` / ``_tried_bytes`` state
        keywords): wait until every scheme completed its next apply pass and return what each
        tried (``control.regions[scheme_index]``, ``control.total_bytes[scheme_index]``).
        ``control.canceled`` is True when no pass could come (no schemes, all deactivated by
        watermarks, or the kdamond stopped). EBUSY while another walk is pending."""
        done = trio.Event()
        control = WalkControl(total_bytes_only=total_bytes_only, on_done=done.set)
        await self.call(lambda ctx: walk_request(ctx, control))
        await done.wait()
        return control

    async def stop(self) -> None:
        """Stop and wait until the kdamond has cleaned up (``damon_stop()``)."""
        self.stop_reason = self.stop_reason or "stopped by request"
        if self._batch_stop is not None:
            self._batch_stop[0] = 1  # a batch in its worker thread ends after its sample
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
        ctx = self.ctx
        # the run's clock object, not trio.current_time(): operation sets running in a worker
        # thread may read it too
        clock = trio.lowlevel.current_clock()
        self._clock_ns = lambda: round(clock.current_time() * 1e9)
        ctx.clock_ns = self._clock_ns
        self._mono_offset_ns = time.monotonic_ns() - self._clock_ns()
        virtual = _is_virtual(clock)
        if self.cpu_budget > 0 and virtual:
            # CPU seconds against virtual seconds mean nothing: sample as configured
            self.budget_off_why = "off: the clock is virtual (trio.testing.MockClock)"
        if virtual:
            # a worker thread sleeps in real time: it cannot keep a virtual clock's deadlines
            self._batch_off_why = "off: the clock is virtual (trio.testing.MockClock)"
        ctx.batch_sampling = not self._batch_off_why
        self._restart_window()
        try:
            with self._cancel_scope:
                await self._drive(loop.kdamond_start(ctx))
                self.running = True
                self.pid = os.getpid()
                self._last_aggregation_ns = self._clock_ns()
                task_status.started(self)
                while await self._drive(loop.kdamond_iteration(ctx)):
                    pass
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
            self._batch_thread.close()
            with trio.CancelScope(shield=True):
                try:
                    loop.run_steps(loop.kdamond_stop(ctx))
                finally:
                    for req in self._requests:
                        req.error = DamonError("ECANCELED", f"{self.name} stopped")
                        req.done.set()
                    self._requests.clear()
                    self._scheduler._forget(self)
                    self.finished.set()
            log.info("kdamond stopped", kdamond=self.index, reason=self.stop_reason)

    async def _drive(self, steps: loop.Steps) -> Any:
        """Perform the effects the core's loop asks for, and return what the steps return.

        The one place where the kdamond's time is accounted: wall and CPU time of everything
        between two waits (read twice per sample, not per phase: a thread-CPU clock read is a
        system call, ~0.1 ms under emulation), plus the CPU of calls run in a worker thread.
        Operation-set calls run inline unless they may block and the set says it blocks (then
        in a worker thread, so that a pageout never stalls clients or other kdamonds).

        For the budget it also measures what waking up for a sample costs (the thread's CPU
        across the sample wait, less the other kdamonds' work in between) and, when the access
        check slows the target, how long the access checks took (charged again, as the
        target's loss).
        """
        stats = self.stats
        sched = self._scheduler
        value: Any = None
        wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            while True:
                try:
                    effect = steps.send(value)
                except StopIteration as done:
                    return done.value
                value = None
                kind = type(effect)
                if kind is loop.OpsCall:
                    ops = self.ctx.ops
                    fn = effect.fn
                    if fn is ops.prepare_access_checks:
                        self._prepared_at = trio.current_time()
                    if effect.may_block and ops.info.blocking:
                        value, cpu_ns = await trio.to_thread.run_sync(_timed_cpu, fn,
                                                                       *effect.args)
                        stats.cpu_ns += cpu_ns
                    elif self._charges_target and (fn is ops.prepare_access_checks
                                                   or fn is ops.check_accesses):
                        t0 = time.perf_counter_ns()
                        value = fn(*effect.args)
                        self._w_target_ns += round((time.perf_counter_ns() - t0)
                                                   * TARGET_SLOWDOWN_FACTOR)
                    else:
                        value = fn(*effect.args)
                    if fn is ops.init or fn is ops.update:
                        self._refresh_target_charge()
                    continue
                if kind is loop.ServeRequests:
                    if self._requests:
                        self._serve_requests()
                        self._refresh_target_charge()  # a commit may change the targets
                    continue
                if kind is loop.Aggregated:
                    self._emit()
                    self._budget_decide()
                    continue
                # a wait: close the span, wait, open a new one
                cpu_end = time.thread_time_ns()
                stats.busy_ns += time.perf_counter_ns() - wall0
                stats.cpu_ns += cpu_end - cpu0
                sched.span_cpu_ns += cpu_end - cpu0
                others0 = sched.span_cpu_ns
                if kind is loop.SampleWait:
                    await self._sample_wait()
                elif kind is loop.SampleBatch:
                    value = await self._sample_batch(effect)
                else:
                    await self._activation_wait(effect.us)
                wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
                if kind is loop.SampleWait:
                    wake = cpu0 - cpu_end - (sched.span_cpu_ns - others0)
                    if self._w_wake_ns is None or wake < self._w_wake_ns:
                        self._w_wake_ns = max(0, wake)
        finally:
            cpu_end = time.thread_time_ns()
            stats.busy_ns += time.perf_counter_ns() - wall0
            stats.cpu_ns += cpu_end - cpu0
            sched.span_cpu_ns += cpu_end - cpu0

    def _next_deadline(self) -> tuple[float, float]:
        """The next sample's deadline on the absolute schedule (base + k * interval) and the
        interval in force. A new interval restarts the schedule from now; a deadline already
        past is an overrun, and the schedule restarts from now as well."""
        now = trio.current_time()
        interval = self.effective_sample_us() / 1e6
        if interval != self._sched_interval:
            self._sched_interval = interval
            self._sched_base, self._sched_k = now, 0
        deadline = self._sched_base + (self._sched_k + 1) * interval
        if deadline < now:
            self.stats.overruns += 1
            self._sched_base, self._sched_k = now, 0
            deadline = now + interval
        return deadline, interval

    async def _sample_wait(self) -> None:
        """Sleep to the next sample's absolute deadline, but no sooner than one interval after
        the sample's prepare began (the kernel's kdamond sleeps a whole interval between
        prepare and check: a shorter window misses accesses); a sample that starts after its
        deadline already passed is an overrun, and the schedule restarts from now."""
        stats = self.stats
        deadline, interval = self._next_deadline()
        if self._prepared_at is not None:
            earliest, self._prepared_at = self._prepared_at + interval, None
            if deadline < earliest:  # the schedule goes on from the moved deadline
                deadline = earliest
                self._sched_base, self._sched_k = earliest - interval, 0
        self._sched_k += 1
        await trio.sleep_until(deadline)
        stats.lateness_s.append(trio.current_time() - deadline)
        stats.samples += 1
        self._w_samples += 1

    async def _sample_batch(self, effect: loop.SampleBatch) -> SampledBatch:
        """Run a batch of samples in the kdamond's batch thread (or, when every target is
        known idle, sleep through it here: ``_quiet_batch``), on the same absolute schedule
        as ``_sample_wait`` (deadlines handed over as ``CLOCK_MONOTONIC`` nanoseconds), and
        account its samples, lateness, overruns and CPU time as if they had run here."""
        stats = self.stats
        first, interval = self._next_deadline()
        ops = effect.ctx.ops
        if (ops.quiet_span is not None and effect.nr_samples > 1
                and ops.quiet_span(effect.ctx)):
            batch, cpu_ns = await self._quiet_batch(effect, first, interval)
        else:
            batch, cpu_ns = await self._thread_batch(effect, effect.nr_samples, first, interval)
        stats.cpu_ns += cpu_ns
        done = batch.samples_done
        stats.lateness_s.extend((batch.lateness_ns / 1e9).tolist())
        stats.samples += done
        stats.overruns += batch.overruns
        stats.coalesced += batch.coalesced
        self._w_samples += done
        if self._charges_target:
            self._w_target_ns += round(batch.check_ns * TARGET_SLOWDOWN_FACTOR)
        # a batch keeps each sample's window a whole interval (see damond.ops.batch), so its
        # deadlines may have moved: the schedule goes on from its last check
        self._sched_base, self._sched_k = trio.current_time(), 0
        kind = batch.kind or "batch"
        if kind != self.sampler_kind:
            log.info("sampler", kdamond=self.index, kind=kind, samples_per_batch=done)
        self.sampler_kind = kind
        return batch

    async def _thread_batch(self, effect: loop.SampleBatch, nr_samples: int, first: float,
                            interval: float) -> tuple[SampledBatch, int]:
        """``nr_samples`` samples in the kdamond's batch thread; the batch and its CPU time."""
        stop = self._batch_stop = bytearray(1)
        try:
            return await self._batch_thread.run(
                _timed_cpu, effect.fn, effect.ctx, nr_samples, round(interval * 1e9),
                round(first * 1e9) + self._mono_offset_ns, stop)
        finally:
            self._batch_stop = None

    async def _quiet_batch(self, effect: loop.SampleBatch, first: float,
                           interval: float) -> tuple[SampledBatch, int]:
        """A batch that is one coalesced span from its start (every target known idle: see
        ``damond.ops.batch.run_batch``), slept through here rather than in the batch thread.

        The same samples and results as the thread's quiet span, for fewer wake-ups: a quiet
        kdamond wakes once per aggregation (this sleep's end) instead of three times (the
        thread for the job, the thread at the span's end, the loop for the answer). On this
        machine each such wake-up costs 60-115 µs of CPU, which is most of what monitoring
        an idle process costs. The last sample's check stays here only when it is cheap
        (``quiet_check``: every target still idle); otherwise that one sample runs in the
        batch thread, where a page-table walk blocks nobody. A request ends the span at
        once (the thread's span ends only at its deadline); its samples so far are counted,
        unchecked, and the next check still covers them, as the bits stay uncleared."""
        n = effect.nr_samples
        last = first + (n - 1) * interval
        with trio.CancelScope() as span:
            self._quiet_scope = span
            try:
                await trio.sleep_until(last)
            finally:
                self._quiet_scope = None
        kind = self.sampler_kind or ""
        sizes = [len(t.regions) for t in effect.ctx.targets]
        if span.cancelled_caught:
            now = trio.current_time()
            done = 0 if now < first else min(n - 1, int((now - first) // interval) + 1)
            return SampledBatch(accessed=[np.zeros((done, m), dtype=bool) for m in sizes],
                                lateness_ns=np.zeros(done, dtype=np.int64), kind=kind,
                                coalesced=done), 0
        cpu0 = time.thread_time_ns()
        woke = trio.current_time()
        found = effect.ctx.ops.quiet_check(effect.ctx)
        cpu_ns = time.thread_time_ns() - cpu0
        self.stats.loop_quiet_spans += 1
        late_ns = round((woke - last) * 1e9)
        if found is not None:
            check_ns, overruns = 0, 0
        else:  # some target ran: its check walks page tables, in the batch thread
            tail, tail_cpu = await self._thread_batch(effect, 1, woke, interval)
            cpu_ns += tail_cpu
            if not tail.samples_done:  # stopped meanwhile: the span's samples stand alone
                n -= 1
                found = None
            else:
                found = [r[0] for r in tail.accessed]
                late_ns += int(tail.lateness_ns[0])
            # the tail's own schedule began at this wake-up, already past: not an overrun
            check_ns, overruns = tail.check_ns, 0
        rows = [np.zeros((n, m), dtype=bool) for m in sizes]
        lateness = np.zeros(n, dtype=np.int64)
        if found is not None:
            for row, hits in zip(rows, found, strict=True):
                row[n - 1] = hits
            lateness[n - 1] = late_ns
        return SampledBatch(accessed=rows, lateness_ns=lateness, overruns=overruns,
                            check_ns=check_ns, kind=kind, coalesced=effect.nr_samples - 1), cpu_ns

    def sampler_status(self) -> dict[str, str]:
        """Which sampler runs this kdamond's samples, and why not a better one."""
        if self.ctx.batch_sampling and self.ops.sample_aggregation is not None:
            detail = self.sampler_kind or "batch (starting)"
            return {"kind": detail.split(" ", 1)[0], "detail": detail,
                    "where": "worker-thread", "why": "the operation set has a batch sampler; "
                    "one batch per aggregation interval, ended early by requests",
                    "idle_coalesced_samples": self.stats.coalesced,
                    "idle_spans_on_event_loop": self.stats.loop_quiet_spans}
        why = (self._batch_off_why if self._batch_off_why
               else f"operation set {self.ctx.ops_name!r} has no batch sampler")
        return {"kind": "per-sample", "detail": "per-sample", "where": "event-loop", "why": why}

    # -- the monitoring budget ------------------------------------------------------------

    def effective_sample_us(self) -> int:
        """The sampling interval in force: the configured one, stretched by the budget."""
        return effective_us(sample_interval(self.ctx.attrs), self.budget.stretch)

    def effective_aggr_us(self) -> int:
        """The aggregation interval in force (samples per aggregation are kept)."""
        return effective_us(self.ctx.attrs.aggr_us, self.budget.stretch)

    def _refresh_target_charge(self) -> None:
        """Whether the access check in use slows the target itself: ``smaps`` and
        ``soft_dirty`` clear bits of the whole process and walk all its page tables at every
        sample; ``page_idle`` touches the sampled pages only. Read from the operation set's
        status (``targets[].access_check``) at start, at each update and after requests."""
        try:
            targets = self.ops.status(self.ctx).get("targets", [])
        except Exception:  # a status bug must not stop monitoring; charge nothing extra
            targets = []
        self._charges_target = any(
            isinstance(t, dict) and t.get("access_check") in _TARGET_CHARGED for t in targets)

    def _budget_decide(self) -> None:
        """At an aggregation boundary with at least ``MIN_WINDOW_SAMPLES`` samples measured
        since the last decision: close that window and let the controller choose the next
        sampling interval. The interval changes only here, so that every aggregation has one
        sampling interval."""
        if self._w_samples < MIN_WINDOW_SAMPLES:
            return
        now = self._clock_ns()
        w = WindowCost(samples=self._w_samples, own_ns=self.stats.cpu_ns - self._w_cpu0,
                       wake_ns=self._w_wake_ns or 0, target_ns=self._w_target_ns,
                       wall_ns=now - self._w_start_ns)
        self._restart_window()
        if not w.samples or not w.wall_ns:
            return
        self.last_window = w
        if self.budget_off_why:
            return
        if w.charged_share > self.cpu_budget:
            self.budget_exceeded += 1
        old = self.budget
        self.budget = next_state(old, budget=self.cpu_budget,
                                 sample_s=sample_interval(self.ctx.attrs) / 1e6,
                                 cost_s=w.cost_per_sample_s)
        if self.budget.stretch != old.stretch:
            log.info("sampling interval stretched by the CPU budget"
                     if self.budget.stretch > old.stretch
                     else "sampling interval shortened" if self.budget.stretch > 1
                     else "sampling interval back to the configured one",
                     kdamond=self.index, sample_us=self.effective_sample_us(),
                     aggr_us=self.effective_aggr_us(),
                     configured_sample_us=self.ctx.attrs.sample_us,
                     cpu_budget=self.cpu_budget, charged_share=round(w.charged_share, 4),
                     cost_per_sample_us=round(w.cost_per_sample_s * 1e6, 1))

    def _restart_window(self) -> None:
        self._w_start_ns, self._w_cpu0 = self._clock_ns(), self.stats.cpu_ns
        self._w_samples, self._w_wake_ns, self._w_target_ns = 0, None, 0

    def budget_status(self) -> dict[str, Any]:
        """The budget's facts for ``status`` and the metrics."""
        w = self.last_window
        return {
            "cpu_budget": self.cpu_budget,
            "state": self.budget_off_why or "on",
            "stretch": round(self.budget.stretch, 3),
            "cpu_share": round(w.cpu_share, 4) if w else 0.0,
            "charged_share": round(w.charged_share, 4) if w else 0.0,
            "target_charged": self._charges_target,
            "exceeded": self.budget_exceeded,
            "changes": self.budget.changes,
        }

    async def _activation_wait(self, wait_us: int) -> None:
        """Watermarks: no scheme is active; wait, or less when a request arrives."""
        self.stats.wmark_waits += 1
        self._wakeup = trio.Event()
        with trio.move_on_after(wait_us / 1e6):
            await self._wakeup.wait()
        self._sched_interval = None  # the sampling schedule restarts after a wait
        self._restart_window()  # time spent not sampling is no part of a sampling window

    def _serve_requests(self) -> None:
        ctx = self.ctx
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

    def _emit(self) -> None:
        ctx = self.ctx
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
            **({} if self.running else {"stop_reason": self.stop_reason or "not started"}),
            "ops": self.ctx.ops_name, "runs": self.placement,
            "runs_why": self.placement_why or "damond's own sensing",
            "nr_targets": len(self.ctx.targets),
            "nr_regions": self.ctx.nr_regions(), "samples": s.samples,
            "aggregations": s.aggregations, "overruns": s.overruns,
            "cpu_s": s.cpu_ns / 1e9, "wmark_waits": s.wmark_waits,
            "sample_us": self.ctx.attrs.sample_us, "aggr_us": self.ctx.attrs.aggr_us,
            "effective_sample_us": self.effective_sample_us(),
            "effective_aggr_us": self.effective_aggr_us(),
            "budget": self.budget_status(),
            "sampler": self.sampler_status(),
            "lateness_p99_ms": s.lateness_percentile(99) * 1e3,
            "ops_status": self.ops.status(self.ctx),
        }


#: Access checks whose cost the target pays too (see ``Kdamond._refresh_target_charge``).
_TARGET_CHARGED = frozenset({"smaps", "soft_dirty"})


def _is_virtual(clock) -> bool:
    """Whether the run's clock is ``trio.testing.MockClock``. Only a program that imported
    trio.testing can have one, so the daemon need not import it: trio.testing imports pytest,
    a quarter of the daemon's start-up imports (seconds under emulation)."""
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(clock, testing.MockClock)


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
                 min_region: int | None = None,
                 cpu_budget: float = DEFAULT_CPU_BUDGET, batch_sampling: bool = True) -> None:
        self.registry = registry
        #: let operation sets with a batch sampler run each aggregation's samples in a worker
        #: thread (``DamonOperations.sample_aggregation``); False: one sample per loop pass
        self.batch_sampling = batch_sampling
        #: each kdamond's budget, a share of one CPU (``damond.core.budget``; 0 disables it)
        self.cpu_budget = check_budget(cpu_budget)
        #: CPU of every kdamond's work in the event loop's thread (tells wake-up costs apart)
        self.span_cpu_ns = 0
        self.seed = seed
        self.min_region = PAGE_SIZE if min_region is None else min_region
        self.running: list[Kdamond] = []
        #: called with each kdamond that starts (e.g. so trace clients follow new kdamonds)
        self.start_listeners: list[Callable[[Kdamond], None]] = []
        #: the kernel offload hook (``damond.service.offload``): ``try_start(index, spec, ctx,
        #: scheduler, group=)`` returns a runner with Kdamond's surface, or None and the reason
        #: the context runs here in user space; None: every context runs in user space
        self.offloader: Any = None
        self._nursery: trio.Nursery | None = None

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the kdamonds' nursery until cancelled; every kdamond stops with it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            await trio.sleep_forever()

    def build(self, spec: ContextSpec, *, ops_check: bool = True) -> Context:
        """Validate and build a context from a spec (nothing is started). ``ops_check=False``
        skips the operation set's own check (a context offloaded to the kernel's DAMON needs
        none of damond's sensing facilities)."""
        ctx = build_context(spec, avail_operations=self.registry.avail_operations(),
                            min_region=self.min_region, seed=self.seed)
        if ops_check:
            self.registry.resolve(spec.ops).validate(ctx)
        return ctx

    def _build_deferred(self, spec: ContextSpec) -> tuple[Context, DamonError | None]:
        """Build with the core's checks; the operation set's refusal is returned, not raised,
        so that a context the kernel's DAMON can run still starts there."""
        ctx = self.build(spec, ops_check=False)
        try:
            self.registry.resolve(spec.ops).validate(ctx)
        except DamonError as e:
            return ctx, e
        return ctx, None

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
        built = [(i, *self._build_deferred(spec), spec) for i, spec in specs]
        if self.offloader is None:  # all or nothing: refuse before the first start
            for _, _, refused, _ in built:
                if refused is not None:
                    raise refused
        started: list[Any] = []
        for ctx_index, (index, ctx, refused, spec) in enumerate(built):
            ops_name = spec.ops
            try:
                kd, why = None, ""
                if self.offloader is not None:
                    ctx.ops = self.registry.resolve(ops_name)
                    kd, why = await self.offloader.try_start(index, spec, ctx, self,
                                                             group=group)
                if kd is None and refused is not None:
                    raise DamonError(refused.errno_name, f"{refused.why}; and it cannot run "
                                     f"in the kernel's DAMON: {why}", refused.what)
                if kd is None:
                    kd = Kdamond(index, ctx, self.registry.resolve(ops_name), self, group=group,
                                 exclusive=exclusive, context_index=ctx_index if exclusive else 0)
                    kd.placement_why = why
                self.running.append(kd)
                await self._nursery.start(kd.run)
            except BaseException:
                for k in started:
                    await k.stop()
                raise
            started.append(kd)
            for listener in list(self.start_listeners):
                listener(kd)
            log.info("kdamond started", kdamond=index, ops=ops_name, group=group,
                     targets=len(ctx.targets), schemes=len(ctx.schemes), runs=kd.placement)
        return started

    def _forget(self, kd: Kdamond) -> None:
        if kd in self.running:
            self.running.remove(kd)

    async def stop_all(self) -> None:
        for kd in list(self.running):
            await kd.stop()

