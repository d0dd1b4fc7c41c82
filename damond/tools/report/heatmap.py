"""The heatmap matrix: access rate over time (rows) and address (columns).

Address axis. A virtual address space is mostly unmapped: DAMON's vaddr monitors three areas
(around the heap, the mmap area, the stack) separated by terabytes of nothing, and a plain
address axis would show three dots. So the axis only has *monitored* addresses: the union of
every snapshot's regions, as contiguous ranges, with the gaps between them cut out. By default
only the hottest range is drawn (like damo's ``--draw_range hottest``), but "hottest" means the
most accesses in total (bytes x access rate, summed over time), not damo's accesses per byte,
which picks a tiny busy area such as the stack over the mapping a program works on.
``--draw-range all`` draws every monitored range side by side, each taking columns in
proportion to its size; ``--address-range`` zooms into addresses (cut the same way).

Cell value. As in damo, a cell is the average over its time x address area of the regions'
access rates, parts that no region covered counting as zero; a cell that no region touched at
all is NaN (blank). Access rate is ``nr_accesses / (aggr_us / sample_us)`` in percent, or raw
samples when the record does not carry the intervals (damo's perf conversions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from damond.formats.damo.record import RecordedSnapshot
from damond.tools.report.source import ReportError

DRAW_RANGES = ("hottest", "all")


@dataclass(frozen=True)
class Heatmap:
    values: np.ndarray  # rows x cols, float64, NaN where nothing was monitored
    t0_ns: int  # time span drawn (absolute, as in the record)
    t1_ns: int
    base_ns: int  # the recording's start: times are shown relative to it
    ranges: list[tuple[int, int]]  # drawn address ranges, left to right
    monitored: list[tuple[int, int]]  # every monitored range of the series
    unit: str  # "%" (access rate) or "samples"
    selection: str = "all"  # how ranges were chosen: "hottest", "all" or "zoom"

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def cols(self) -> int:
        return int(self.values.shape[1])

    @property
    def total_bytes(self) -> int:
        return sum(e - s for s, e in self.ranges)

    @property
    def bytes_per_col(self) -> float:
        return self.total_bytes / self.cols

    def offset_of(self, addr: int) -> float | None:
        """Position of ``addr`` on the cut axis (bytes from the left edge), None if not drawn."""
        offset = 0
        for s, e in self.ranges:
            if s <= addr <= e:
                return float(offset + addr - s)
            offset += e - s
        return None

    def columns_of(self, start: int, end: int) -> range:
        """Columns drawing any part of [start, end)."""
        cols: list[int] = []
        offset = 0
        for s, e in self.ranges:
            lo, hi = max(s, start), min(e, end)
            if lo < hi:
                first = int((offset + lo - s) / self.bytes_per_col)
                last = int(np.ceil((offset + hi - s) / self.bytes_per_col)) - 1
                cols += [first, min(last, self.cols - 1)]
            offset += e - s
        return range(min(cols), max(cols) + 1) if cols else range(0)

    def range_columns(self) -> list[range]:
        """The columns of each drawn range."""
        return [self.columns_of(s, e) for s, e in self.ranges]


def rates(s: RecordedSnapshot) -> tuple[np.ndarray, str]:
    """The regions' access rates in percent, or samples when the intervals are unknown."""
    if s.sample_us and s.aggr_us:
        return s.nr_accesses * (100.0 * s.sample_us / s.aggr_us), "%"
    return s.nr_accesses.astype(np.float64), "samples"


def monitored_ranges(snapshots: list[RecordedSnapshot]) -> list[tuple[int, int]]:
    """The union of all snapshots' regions, as sorted, disjoint, non-touching ranges."""
    if not snapshots:
        return []
    starts = np.concatenate([s.start for s in snapshots])
    ends = np.concatenate([s.end for s in snapshots])
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(starts)) - 1
    return [(int(starts[a]), int(reach[b])) for a, b in zip(first, last, strict=True)]


def total_heat(snapshots: list[RecordedSnapshot], ranges: list[tuple[int, int]]) -> list[float]:
    """Accesses per range: bytes x access rate x duration, summed over the snapshots."""
    heat = [0.0] * len(ranges)
    rs = np.array([r[0] for r in ranges], dtype=np.uint64)
    for s in snapshots:
        values, _ = rates(s)
        weight = values * (s.end - s.start).astype(np.float64) * max(s.end_ns - s.start_ns, 1)
        idx = np.searchsorted(rs, s.start, side="right") - 1
        for i, w in zip(idx.tolist(), weight.tolist(), strict=True):
            if i >= 0:
                heat[i] += w
    return heat


def clip_ranges(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    return [(max(s, start), min(e, end)) for s, e in ranges if max(s, start) < min(e, end)]


def choose_ranges(snapshots: list[RecordedSnapshot], draw_range: str,
                  address_range: tuple[int, int] | None) -> tuple[list, list, str]:
    """(ranges to draw, all monitored ranges, how they were chosen)."""
    monitored = monitored_ranges(snapshots)
    if address_range is not None:
        drawn = clip_ranges(monitored, *address_range)
        if not drawn:
            raise ReportError(f"nothing was monitored in [{address_range[0]:#x}, "
                              f"{address_range[1]:#x})")
        return drawn, monitored, "zoom"
    if draw_range == "all" or len(monitored) <= 1:
        return monitored, monitored, "all"
    heat = total_heat(snapshots, monitored)
    return [monitored[int(np.argmax(heat))]], monitored, "hottest"


def _column_integrals(s: RecordedSnapshot, values: np.ndarray, ranges: list[tuple[int, int]],
                      edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the integral over the cut axis of the regions' values, and of coverage."""
    rs = np.array([r[0] for r in ranges], dtype=np.uint64)
    re = np.array([r[1] for r in ranges], dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum((re - rs).astype(np.float64))[:-1]])
    k = np.searchsorted(re, s.start, side="right")  # the first drawn range ending after start
    inside = k < len(ranges)
    k = np.minimum(k, len(ranges) - 1)
    lo = np.maximum(s.start, rs[k])
    hi = np.minimum(s.end, re[k])
    inside &= lo < hi
    if not inside.any():
        zero = np.zeros(len(edges) - 1)
        return zero, zero
    k, lo, hi, v = k[inside], lo[inside], hi[inside], values[inside]
    x0 = offsets[k] + (lo - rs[k]).astype(np.float64)
    x1 = offsets[k] + (hi - rs[k]).astype(np.float64)
    order = np.argsort(x0, kind="stable")
    x0, x1, v = x0[order], x1[order], v[order]
    xp = np.column_stack([x0, x1]).ravel()
    out = []
    for weights in (v, np.ones_like(v)):
        pieces = weights * (x1 - x0)
        before = np.concatenate([[0.0], np.cumsum(pieces)[:-1]])
        fp = np.column_stack([before, before + pieces]).ravel()
        g = np.interp(edges, xp, fp, left=0.0, right=float(fp[-1]))
        out.append(np.diff(g))
    return out[0], out[1]


def build(snapshots: list[RecordedSnapshot], rows: int, cols: int, *,
          draw_range: str = "hottest", address_range: tuple[int, int] | None = None,
          time_range: tuple[int, int] | None = None) -> Heatmap:
    """The heatmap of one target's snapshots. ``time_range`` is in ns relative to the first
    snapshot's start; ``address_range`` absolute addresses."""
    if not snapshots:
        raise ReportError("no snapshots to draw")
    if rows < 1 or cols < 1:
        raise ReportError("the resolution must be at least 1x1")
    base = min(s.start_ns for s in snapshots)
    t0, t1 = base, max(s.end_ns for s in snapshots)
    if time_range is not None:
        t0, t1 = max(t0, base + time_range[0]), min(t1, base + time_range[1])
        if t0 >= t1:
            raise ReportError("the time range holds no snapshot")
    shown = [s for s in snapshots if s.end_ns > t0 and s.start_ns < t1]
    ranges, monitored, selection = choose_ranges(shown, draw_range, address_range)
    total = float(sum(e - s for s, e in ranges))
    edges = np.linspace(0.0, total, cols + 1)
    col_width = total / cols
    unit = rates(shown[0])[1]
    values = np.zeros((len(shown), cols))
    cover = np.zeros((len(shown), cols))
    for i, s in enumerate(shown):
        v, _ = rates(s)
        integral, covered = _column_integrals(s, v, ranges, edges)
        values[i] = integral / col_width
        cover[i] = covered
    row_edges = np.linspace(float(t0), float(t1), rows + 1)
    starts = np.array([s.start_ns for s in shown], dtype=np.float64)
    ends = np.array([s.end_ns for s in shown], dtype=np.float64)
    overlap = (np.minimum(row_edges[1:, None], ends[None, :])
               - np.maximum(row_edges[:-1, None], starts[None, :]))
    weights = np.clip(overlap, 0.0, None) / ((t1 - t0) / rows)
    heat = weights @ values
    heat[(weights @ cover) <= 0] = np.nan
    return Heatmap(heat, t0, t1, base, ranges, monitored, unit, selection)
