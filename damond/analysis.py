"""Reading monitoring results: working set size, hot/cold boundaries, access percentiles.

Shared by reports, benchmarks and tests so that damond's results and the kernel's DAMON results
(read from its tracepoint) are judged by exactly the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

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


def parse_tracepoint_line(line: str) -> tuple[int, int, int, int, int, int] | None:
    """(target, nr_regions, start, end, nr_accesses, age) from a ``damon_aggregated`` line
    as tracefs, ``perf script`` or damond's ``trace`` print it; None for other lines."""
    key = "damon_aggregated:"
    i = line.find(key)
    if i < 0:
        return None
    try:
        fields = line[i + len(key):].split()
        target = int(fields[0].split("=")[1])
        nr_regions = int(fields[1].split("=")[1])
        start_s, end_s = fields[2].rstrip(":").split("-")
        return (target, nr_regions, int(start_s), int(end_s), int(fields[3]),
                int(fields[4]) if len(fields) > 4 else 0)
    except (IndexError, ValueError):
        return None


def snapshots_from_trace(lines: Iterable[str], target: int = 0
                         ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Group tracepoint lines of one target into snapshots (start, end, nr_accesses, age): a
    snapshot is ``nr_regions`` consecutive events of that target."""
    out = []
    cur: list[tuple[int, int, int, int]] = []
    expected = None
    for line in lines:
        ev = parse_tracepoint_line(line)
        if ev is None or ev[0] != target:
            continue
        _, nr, s, e, n, a = ev
        if expected is None or len(cur) >= expected:
            if cur and expected is not None and len(cur) == expected:
                out.append(_arrays(cur))
            cur, expected = [], nr
        cur.append((s, e, n, a))
    if cur and expected is not None and len(cur) == expected:
        out.append(_arrays(cur))
    return out


def _arrays(rows: list[tuple[int, int, int, int]]):
    s, e, n, a = zip(*rows, strict=True)
    return (np.array(s, dtype=np.uint64), np.array(e, dtype=np.uint64),
            np.array(n, dtype=np.int64), np.array(a, dtype=np.int64))
