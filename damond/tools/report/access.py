"""One snapshot as a table of regions, like ``damo report access``'s detailed style, with
numbers a reader does not have to convert: addresses in hex (as ``/proc/PID/maps`` shows
them), sizes with units, access rate in percent of the samples (with the raw sample count),
and age both as time and in aggregation intervals (DAMOS's ``age`` unit).
"""

from __future__ import annotations

from damond.formats.damo.record import RecordedSnapshot
from damond.formats.damo.units import format_sz, format_time_ns
from damond.tools.report.source import ReportError, Series


def pick(series: Series, index: int) -> tuple[int, RecordedSnapshot]:
    """(0-based position, snapshot) for ``index`` (negative: from the end, -1 the latest)."""
    n = len(series.snapshots)
    position = index if index >= 0 else n + index
    if not 0 <= position < n:
        raise ReportError(f"no snapshot {index}: target {series.target} has {n} "
                          f"(0..{n - 1}, or -1 for the latest)")
    return position, series.snapshots[position]


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in rows]


def snapshot_table(series: Series, index: int, base_ns: int) -> list[str]:
    position, s = pick(series, index)
    t0, t1 = s.start_ns - base_ns, s.end_ns - base_ns
    lines = [f"# kdamond {series.kdamond}, context {series.context}, target {series.target}: "
             f"snapshot {position} (0-based, of {len(series.snapshots)}), time "
             f"[{format_time_ns(t0, False)}, {format_time_ns(t1, False)}) "
             f"({format_time_ns(t1 - t0, False)}) since the recording started"]
    max_samples = s.aggr_us // s.sample_us if s.sample_us and s.aggr_us else None
    if max_samples:
        lines.append(f"# intervals: sample {format_time_ns(s.sample_us * 1000, False)}, "
                     f"aggr {format_time_ns(s.aggr_us * 1000, False)} ({max_samples} samples "
                     "per aggregation)")
    rows = [["#", "start", "end", "size", "access", "samples", "age", "aggrs"]]
    total = accessed = 0
    for i, (start, end, nr, age) in enumerate(zip(s.start.tolist(), s.end.tolist(),
                                                  s.nr_accesses.tolist(), s.age.tolist(),
                                                  strict=True)):
        total += end - start
        accessed += (end - start) if nr > 0 else 0
        rate = f"{nr * 100 / max_samples:.0f} %" if max_samples else "-"
        age_time = format_time_ns(age * s.aggr_us * 1000, False) if s.aggr_us else "-"
        rows.append([str(i), f"{start:#014x}", f"{end:#014x}", format_sz(end - start, False),
                     rate, str(nr), age_time, str(age)])
    lines += _table(rows, right={0, 3, 4, 5, 6, 7})
    lines.append(f"# {s.nr_regions} regions, {format_sz(total, False)}; accessed: "
                 f"{format_sz(accessed, False)}")
    return lines


def report(series: list[Series], index: int = -1) -> str:
    base = min(s.start_ns for s in series)
    blocks = ["\n".join(snapshot_table(s, index, base)) for s in series]
    return "\n\n".join(blocks) + "\n"
