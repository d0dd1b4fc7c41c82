"""What the core needs from an operation set: the kernel's ``struct damon_operations``.

The kernel's core calls ``ctx->ops`` callbacks; damond's core calls the callables of one
``DamonOperations`` record. ``damond.ops.registry`` fills it once per context start or commit from
the selected plugin's hook implementations, with the kernel's defaults where the set leaves an
optional callback out, so nothing but a plain function call separates a sample from the
operation set: no plugin dispatch, and the core never imports pluggy or any operation set.
Tests may hand in any object with these attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from damond.core.context import Context, Scheme, Target
    from damond.core.regions import Regions

#: DAMOS_MAX_SCORE: ``get_scheme_score`` answers 0..MAX_SCORE, higher meaning "apply first".
MAX_SCORE = 99


@dataclass(frozen=True, slots=True)
class SchemeAction:
    """One region a scheme's action is to be applied to, in the order the kernel applies them."""

    target_index: int
    start: int
    end: int
    scheme_index: int
    action: str
    #: A core filter allowed this region (``core_filters_allowed``): ops filters are skipped.
    core_allowed: bool = False


@dataclass(slots=True)
class SampledBatch:
    """What a batch of samples found (``DamonOperations.sample_aggregation``)."""

    #: Per target, a boolean array of shape (samples done, regions): row k says which regions'
    #: sampled page was accessed during sample k.
    accessed: list[np.ndarray]
    #: Per sample done, how late the check woke up after its deadline (ns).
    lateness_ns: np.ndarray
    #: Samples whose deadline had passed before their sleep began (the schedule restarted).
    overruns: int = 0
    #: Wall time spent in the access checks themselves: what a perturbing check (``smaps``,
    #: ``soft_dirty``) costs the target as well.
    check_ns: int = 0
    #: Which sampler ran the batch ("native", "python", ...), for ``status``.
    kind: str = ""
    #: Samples not taken one by one because every target was known idle (counted as done,
    #: nothing accessed; the span's last sample checked the whole span).
    coalesced: int = 0

    @property
    def samples_done(self) -> int:
        return len(self.lateness_ns)


@dataclass(frozen=True, slots=True)
class DamonOperations:
    """One operation set's callbacks, each taking the whole context so that a set can batch a
    sample's system calls. Per-context and per-target state lives in ``ctx.ops_data`` and
    ``target.ops_data``; the record itself is stateless and may serve many contexts."""

    #: The name written to a context's ``operations`` file.
    name: str
    #: The set's self-description (``damond.ops.info.OpsInfo``): the core never reads it; the
    #: scheduler reads ``blocking``, the interfaces the rest.
    info: Any
    #: Refuse a freshly built context (raise ``DamonError``) before it starts or is committed.
    validate: Callable[[Context], None]
    #: Once when the kdamond starts: private state, initial regions of targets without any.
    init: Callable[[Context], None]
    #: Every update interval: follow the address space (e.g. vaddr's mappings).
    update: Callable[[Context], None]
    #: Start of every sample: pick ``sampling_addr`` of each region, clear its accessed state.
    prepare_access_checks: Callable[[Context], None]
    #: After the sampling interval: one boolean array per target, one entry per region.
    check_accesses: Callable[[Context], list[np.ndarray]]
    #: Scores 0..MAX_SCORE of the given regions of a target for a scheme, or None (no scorer:
    #: quotas then apply in address order).
    get_scheme_score: Callable[[Context, Target, Regions, Scheme], np.ndarray | None]
    #: Apply the actions in order; the bytes really applied for each.
    apply_scheme: Callable[[Context, list[SchemeAction]], list[int]]
    #: Validity of each target, or None when the set has no notion of it (never stops).
    target_valid: Callable[[Context], list[bool] | None]
    #: The kdamond stopped: release private state.
    cleanup: Callable[[Context], None]
    #: A watermark metric's value (``free_mem_rate``: per thousand), or None when unknown.
    wmark_metric: Callable[[Context, str], int | None]
    #: A small dict of facts for ``status`` and ``features``.
    status: Callable[[Context], dict]
    #: A quota goal metric's current value (``damond.core.context.QuotaGoal``; 6.8+), or None
    #: when unknown; the registry falls back to the system's value.
    goal_metric: Callable[[Context, Any], int | None] = None  # type: ignore[assignment]
    #: Optional: sample the regions ``nr_samples`` times in one call, off the event loop (a
    #: worker thread; a native sampler releases the GIL for the whole batch). Arguments:
    #: ``(ctx, nr_samples, interval_ns, first_deadline_ns, stop)``; deadlines are
    #: ``CLOCK_MONOTONIC`` nanoseconds (sample k is checked at first_deadline_ns + k *
    #: interval_ns), ``stop`` a one-byte bytearray the driver sets to end the batch early.
    #: Answers a ``SampledBatch``. The call must not change the context: the regions are read
    #: only, and their counters are updated afterwards by the core from the answer. None: the
    #: set samples through ``prepare_access_checks`` and ``check_accesses`` only.
    sample_aggregation: Callable[..., SampledBatch] | None = None
    #: Optional, with ``sample_aggregation``: ``(ctx) -> bool``, whether a batch begun now
    #: would be one coalesced span (every target known idle). Asked on the event loop: must
    #: not block.
    quiet_span: Callable[[Context], bool] | None = None
    #: Optional, with ``quiet_span``: ``(ctx) -> list[np.ndarray] | None``, the check ending a
    #: quiet span when it is cheap (every target still idle), else None (the sample then runs
    #: through ``sample_aggregation`` in the worker thread). Asked on the event loop.
    quiet_check: Callable[[Context], list[np.ndarray] | None] | None = None


#: The callbacks of an operation set, in the record's order: every field but ``name`` and
#: ``info``. The registry derives the plugin hook names from this (``damon_ops_<callback>``).
CALLBACKS: tuple[str, ...] = tuple(
    f.name for f in fields(DamonOperations) if f.name not in ("name", "info"))

#: Older name of ``DamonOperations`` (the type the core's functions take).
OpsHandle = DamonOperations
