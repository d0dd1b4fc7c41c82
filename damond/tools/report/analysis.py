"""Reading monitoring results: working set size, hot/cold boundaries, access percentiles.

Shared by reports, benchmarks and tests so that damond's results and the kernel's DAMON results
(read from its tracepoint) are judged by exactly the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from damond.core.events import AggregationEvent, TargetSnapshot

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


def parse_trace_head(line: str) -> tuple[int, int] | None:
    """(kdamond index, time in ns) of a line of damond's ``trace`` stream,
    ``kdamond.K SEC.USEC: damon:damon_aggregated: ...``; None for other lines."""
    fields = line.split(None, 2)
    if len(fields) < 3 or not fields[0].startswith("kdamond."):
        return None
    try:
        sec, _, usec = fields[1].rstrip(":").partition(".")
        return int(fields[0][8:]), int(sec) * 1_000_000_000 + int((usec + "000000")[:6]) * 1000
    except ValueError:
        return None


class TraceGrouper:
    """Turns one kdamond's ``damon_aggregated`` trace lines back into AggregationEvents (what
    ``kdamond.subscribe`` would have delivered), for recording from a running daemon.

    The tracepoint fires once per region, so an aggregation is a run of lines with one time
    stamp; inside it, each target's snapshot is its ``nr_regions`` consecutive lines. A new
    aggregation starts when the time stamp changes or a target whose snapshot is complete
    appears again. An aggregation is known complete only when the next one begins (or at
    :meth:`finish`): the tracepoint does not say how many targets there are. Lines do not carry
    the start time: an aggregation starts where the previous one ended, or ``aggr_us`` before
    its end when it is the first or follows dropped events.
    """

    def __init__(self, kdamond: int, sample_us: int, aggr_us: int) -> None:
        self.kdamond = kdamond
        self.sample_us = sample_us
        self.aggr_us = aggr_us
        self._end_ns: int | None = None
        self._previous_end_ns: int | None = None
        self._rows: dict[int, list[tuple[int, int, int, int]]] = {}
        self._expected: dict[int, int] = {}

    def feed(self, line: str) -> AggregationEvent | None:
        """Take one line (other kdamonds' and non-event lines are ignored); the aggregation
        this line completed, if any."""
        head = parse_trace_head(line)
        if head is None or head[0] != self.kdamond:
            return None
        parsed = parse_tracepoint_line(line)
        if parsed is None:
            return None
        target, nr_regions, start, end, nr_accesses, age = parsed
        done = None
        rows = self._rows.get(target)
        if self._end_ns is not None and (
                head[1] != self._end_ns or (rows is not None
                                            and len(rows) >= self._expected[target])):
            done = self.finish()
        self._end_ns = head[1]
        if target not in self._rows:
            self._rows[target] = []
            self._expected[target] = nr_regions
        self._rows[target].append((start, end, nr_accesses, age))
        return done

    def finish(self) -> AggregationEvent | None:
        """The aggregation in progress, if any target's snapshot in it is complete."""
        end_ns, rows, expected = self._end_ns, self._rows, self._expected
        self._end_ns, self._rows, self._expected = None, {}, {}
        complete = [(t, r) for t, r in sorted(rows.items()) if len(r) == expected[t]]
        if end_ns is None or not complete:
            return None
        aggr_ns = self.aggr_us * 1000
        start_ns = self._previous_end_ns
        if start_ns is None or not 0 < end_ns - start_ns <= 1.5 * aggr_ns:
            start_ns = end_ns - aggr_ns
        self._previous_end_ns = end_ns
        targets = []
        for target, regions in complete:
            s, e, n, a = _arrays(regions)
            targets.append(TargetSnapshot(target, s, e, n, a))
        return AggregationEvent(self.kdamond, 0, start_ns, end_ns, self.sample_us,
                                self.aggr_us, tuple(targets))
