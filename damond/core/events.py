"""Monitoring results as they leave the core: the ``damon_aggregated`` tracepoint's data.

The kernel emits one tracepoint event per region at every aggregation (after merge, before
split). damond hands subscribers one immutable snapshot per aggregation instead: the same
numbers, in arrays, so that a kdamond never formats text or builds per-region objects on its hot
path. The core does no text: the tracepoint's lines are formatted and parsed by the subscribers
that need them, through ``damond.interfaces.tracepoint``.
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

