"""vaddr's batch sampler: a whole aggregation interval of samples per call, off the event loop.

Two samplers, chosen per batch:

- **native** (``damond.platform.idle_sampler`` with its C extension loaded): every target uses
  the ``page_idle`` check; the C loop reads PFNs, marks idle, sleeps and checks for the whole
  batch without the GIL, so the event loop and other kdamonds run meanwhile.
- **python**: any other case (the ``smaps`` or ``soft_dirty`` check, no C extension): the
  targets' own access-check backends run per sample in the worker thread
  (``damond.ops.batch.run_batch``). Same results as the per-sample loop; the gain is that a
  slow check no longer blocks the event loop, and one wake-up of the loop per batch.

A target whose process exits during a batch is dropped (its later rows stay unaccessed) as
the per-sample path drops it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from damond.core.operations import SampledBatch
from damond.errors import DamonError
from damond.ops.batch import run_batch
from damond.ops.common import sampling_addrs

try:  # the native sampler is optional: without it (or its C part) the Python batch runs
    from damond.platform import idle_sampler
except ImportError as exc:  # pragma: no cover - only when the module itself is missing
    idle_sampler = None
    _NO_SAMPLER = f"damond.platform.idle_sampler unavailable: {exc}"
else:
    _NO_SAMPLER = ""


def native_status() -> tuple[bool, str]:
    """Whether the native page_idle sampler can run here, and why (not)."""
    if idle_sampler is None:
        return False, _NO_SAMPLER
    return idle_sampler.KIND == "native", idle_sampler.WHY


def sample(ctx, procs: list, drop: Callable[[object], None], nr_samples: int,
           interval_ns: int, first_deadline_ns: int, stop: bytearray) -> SampledBatch:
    """One batch over ``ctx``'s targets (``procs[i]``: target i's open process or None;
    ``drop(target)`` marks a target whose process is gone)."""
    live = [p for t, p in zip(ctx.targets, procs, strict=True) if p is not None and len(t.regions)]
    if live and all(p.backend_name == "page_idle" for p in live) and native_status()[0]:
        return _native(ctx, procs, drop, nr_samples, interval_ns, first_deadline_ns, stop)
    return _python(ctx, procs, drop, nr_samples, interval_ns, first_deadline_ns, stop)


def _idle_skips(ctx, procs) -> list:
    """The ``IdleSkip`` of every target with a live process and regions (None for a target
    whose check has none: ``page_idle`` checks each page, whether its process ran or not)."""
    return [getattr(p.backend, "idle", None)
            for t, p in zip(ctx.targets, procs, strict=True) if p is not None and len(t.regions)]


def quiet_span(ctx, procs: list) -> bool:
    """Whether a batch begun now would be one coalesced span (``run_batch``'s ``quiet``):
    every live target's check knows its process has not run since its bits were cleared.
    Reads only what the last check left: no system call, so the event loop may ask."""
    idles = _idle_skips(ctx, procs)
    return bool(idles) and all(i is not None and i.quiet for i in idles)


def quiet_check(ctx, procs: list) -> list[np.ndarray] | None:
    """The check ending a quiet span, when it needs no page-table walk: every live target's
    process still has not run (one ``/proc/PID/stat`` read each), so nothing was accessed.
    None when some target ran or is gone: its check must walk (``smaps``) or drop it, which
    the worker thread does."""
    idles = _idle_skips(ctx, procs)
    if not idles or not all(i is not None and i.still_quiet() for i in idles):
        return None
    for i in idles:
        i.note_quiet()
    return [np.zeros(len(t.regions), dtype=bool) for t in ctx.targets]


def _python(ctx, procs, drop, nr_samples, interval_ns, first_deadline_ns, stop) -> SampledBatch:
    targets = ctx.targets
    addrs: list[np.ndarray | None] = [None] * len(targets)
    gone = [p is None for p in procs]

    def prepare() -> None:
        for i, (t, p) in enumerate(zip(targets, procs, strict=True)):
            if gone[i] or not len(t.regions):
                continue
            addrs[i] = sampling_addrs(t.regions, ctx.rng)
            try:
                p.backend.prepare(addrs[i])
            except DamonError:
                gone[i] = True
                drop(t)

    def check() -> list[np.ndarray]:
        out = []
        for i, (t, p) in enumerate(zip(targets, procs, strict=True)):
            n = len(t.regions)
            if gone[i] or not n:
                out.append(np.zeros(n, dtype=bool))
                continue
            if addrs[i] is None:  # a batch that began quiet: no prepare picked addresses
                addrs[i] = sampling_addrs(t.regions, ctx.rng)
            try:
                out.append(p.backend.check(addrs[i]))
            except DamonError:
                gone[i] = True
                drop(t)
                out.append(np.zeros(n, dtype=bool))
        return out

    def quiet() -> bool:
        """Every live target's check knows its process has not run (``IdleSkip``)."""
        return quiet_span(ctx, [None if gone[i] else p for i, p in enumerate(procs)])

    kinds = sorted({p.backend_name for p in procs if p is not None}) or ["none"]
    return run_batch(prepare, check, [len(t.regions) for t in targets], nr_samples=nr_samples,
                     interval_ns=interval_ns, first_deadline_ns=first_deadline_ns, stop=stop,
                     kind=f"python ({', '.join(kinds)}; worker thread)", quiet=quiet)


def _native(ctx, procs, drop, nr_samples, interval_ns, first_deadline_ns, stop) -> SampledBatch:
    order = [i for i, (t, p) in enumerate(zip(ctx.targets, procs, strict=True))
             if p is not None and len(t.regions)]
    specs = []
    for i in order:
        t, p = ctx.targets[i], procs[i]
        starts, ends = p.thp_areas()
        specs.append(idle_sampler.SampleTarget(
            pagemap_fd=p.backend.pagemap.fileno(), starts=t.regions.start,
            ends=t.regions.end, thp_starts=starts, thp_ends=ends))
    bitmap_fd = procs[order[0]].backend.bitmap.fileno()
    seed = int(ctx.rng.integers(1, 1 << 63))
    backend = procs[order[0]].backend
    res = idle_sampler.sample_batch(
        specs, bitmap_fd=bitmap_fd, kpageflags_fd=backend.kpageflags_fd(),
        zero_pfn=max(backend._zero_pfn, 0), nr_samples=nr_samples,
        interval_ns=interval_ns, first_deadline_ns=first_deadline_ns, seed=seed, stop=stop)
    done = res.samples_done
    accessed = [np.zeros((done, len(t.regions)), dtype=bool) for t in ctx.targets]
    for j, i in enumerate(order):
        accessed[i] = np.asarray(res.hits[j], dtype=bool)
        if res.errors[j]:
            drop(ctx.targets[i])
    return SampledBatch(accessed=accessed, lateness_ns=np.asarray(res.lateness_ns),
                        overruns=res.overruns, check_ns=0,
                        kind=f"native (page_idle; check reads by {res.check_reads}; "
                             "GIL released)")
