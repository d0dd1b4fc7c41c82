"""Monitoring results as they leave the core: the ``damon:damon_aggregated`` tracepoint's data.

The kernel emits one tracepoint event per region at every aggregation (after merge, before
split). damond hands subscribers one immutable snapshot per aggregation instead: the same
numbers, in arrays, so that a kdamond never formats text or builds per-region objects on its hot
path. Formatting to the tracepoint's text happens in the subscriber (``format_tracepoint_lines``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """Regions of one target at one aggregation. Arrays are private copies (read-only)."""

    target_index: int
    start: np.ndarray  # uint64
    end: np.ndarray  # uint64
    nr_accesses: np.ndarray  # int64, the completed aggregation's count
    age: np.ndarray  # int64, in aggregation intervals

    @property
    def nr_regions(self) -> int:
        return int(self.start.shape[0])


@dataclass(frozen=True, slots=True)
class AggregationEvent:
    """One aggregation of one context.

    ``start_ns``/``end_ns`` are CLOCK_MONOTONIC nanoseconds (what ``perf script`` prints as the
    event time): the previous aggregation (or the kdamond start) and this one.
    """

    kdamond_index: int
    context_index: int
    start_ns: int
    end_ns: int
    sample_us: int
    aggr_us: int
    targets: tuple[TargetSnapshot, ...]

    @property
    def nr_events(self) -> int:
        """How many tracepoint events (regions) this aggregation stands for."""
        return sum(t.nr_regions for t in self.targets)


def format_tracepoint_lines(event: AggregationEvent) -> list[str]:
    """Render the event as ``perf script`` prints ``damon:damon_aggregated`` (v5.18+ form:
    ``target_id`` is the target's index, ``age`` present)."""
    sec, nsec = divmod(event.end_ns, 1_000_000_000)
    prefix = f"kdamond.{event.kdamond_index} {sec}.{nsec // 1000:06d}: damon:damon_aggregated: "
    lines = []
    for t in event.targets:
        n = t.nr_regions
        head = f"{prefix}target_id={t.target_index} nr_regions={n} "
        for s, e, a, g in zip(
            t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(), t.age.tolist(), strict=True
        ):
            lines.append(f"{head}{s}-{e}: {a} {g}")
    return lines
