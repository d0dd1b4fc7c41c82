"""Reading monitoring results: working set size, hot/cold boundaries, access percentiles.

Shared by reports, benchmarks and tests so that damond's results and the kernel's DAMON results
(read from its tracepoint, through ``damond.interfaces.tracepoint``) are judged by exactly the
same arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from damond.interfaces import tracepoint

#: The kernel selftest's working-set definition (sysfs_update_schemes_tried_regions_wss_
#: estimation.py): regions accessed in at least 25% of the samples, for at least 2 aggregations.
WSS_MIN_ACCESS_RATIO = 0.25
WSS_MIN_AGE = 2


def wss(start: np.ndarray, end: np.ndarray, nr_accesses: np.ndarray, age: np.ndarray,
        max_nr_accesses: int, min_ratio: float = WSS_MIN_ACCESS_RATIO,
        min_age: int = WSS_MIN_AGE) -> int:
    """Bytes of the regions that count as the working set in one snapshot."""
    hot = (np.asarray(nr_accesses) >= int(min_ratio * max_nr_accesses)) & (
        np.asarray(age) >= min_age)
    return int((np.asarray(end, dtype=np.uint64) - np.asarray(start, dtype=np.uint64))[hot]
               .sum(dtype=np.uint64))


def percentile(values: Sequence[float], q: float) -> float:
    """The selftest's percentile: the element at ``int(len * q / 100)`` of the sorted list."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def hot_boundary(start: np.ndarray, end: np.ndarray, nr_accesses: np.ndarray, lo: int,
                 hi: int) -> int:
    """Where accesses stop inside [lo, hi) for a range whose hot part comes first: the end of
    the last region there that saw any access (``lo`` when none did)."""
    s = np.asarray(start, dtype=np.uint64)
    e = np.asarray(end, dtype=np.uint64)
    inside = (e > np.uint64(lo)) & (s < np.uint64(hi))
    accessed = inside & (np.asarray(nr_accesses) > 0)
    if not accessed.any():
        return lo
    return int(min(int(e[accessed].max()), hi))


def mean_access_over(start: np.ndarray, end: np.ndarray, nr_accesses: np.ndarray, lo: int,
                     hi: int) -> float:
    """Size-weighted mean ``nr_accesses`` of the part of [lo, hi) the regions cover."""
    total = weight = 0
    for s, e, n in zip(np.asarray(start).tolist(), np.asarray(end).tolist(),
                       np.asarray(nr_accesses).tolist(), strict=True):
        overlap = max(0, min(e, hi) - max(s, lo))
        weight += overlap
        total += overlap * n
    return total / weight if weight else 0.0


def snapshots_from_trace(lines: Iterable[str], target: int = 0
                         ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The complete snapshots of one target in tracepoint lines (tracefs, ``perf script`` or
    damond's ``trace``), as (start, end, nr_accesses, age) arrays; pre-5.18 lines get age 0."""
    events = (e for e in tracepoint.parse_lines(lines) if e.target_id == target)
    snapshots = tracepoint.group_snapshots(events, missing_age=0)
    return [(s.regions.start, s.regions.end, s.regions.nr_accesses, s.regions.age)
            for s in snapshots.get(target, []) if s.complete]


def accessed_bytes(start: np.ndarray, end: np.ndarray, nr_accesses: np.ndarray,
                   min_nr_accesses: int = 1, min_size: int = 1) -> int:
    """Bytes of one snapshot's regions seen accessed at least ``min_nr_accesses`` times (in
    samples) whose size is at least ``min_size``: ``damo report wss``'s working set (its
    ``--acc_thres``/``--sz_thres``, both 1 by default), so damond's wss matches damo's."""
    s = np.asarray(start, dtype=np.uint64)
    e = np.asarray(end, dtype=np.uint64)
    sizes = e - s
    keep = (np.asarray(nr_accesses) >= min_nr_accesses) & (sizes >= np.uint64(min_size))
    return int(sizes[keep].sum(dtype=np.uint64))
