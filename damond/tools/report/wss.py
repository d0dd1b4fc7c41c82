"""Working set size distribution, in ``damo report wss``'s output form.

Working set of a snapshot: the bytes of its regions seen accessed in at least one sample
(``--acc-thres``, default 1) and at least ``--sz-thres`` bytes big (default 1): damo's
definition (``analysis.accessed_bytes``), so the two tools print the same numbers for the same
file. The first ``--exclude-samples`` snapshots (default 20, damo's) are skipped: monitoring
starts with a few big regions whose counts say little. Percentile ``p`` is the value at index
``int(p / 100 * n)`` of the sizes sorted by size (or, ``--sortby time``, in time order: the
size at that point of the run), like damo.

Targets are summed snapshot by snapshot unless ``--per-target`` (damo collapses by default
too; it sums per-target lists after sorting them, damond sums in time order and then sorts,
which only differs for several targets).
"""

from __future__ import annotations

from damond.formats.damo.units import format_sz
from damond.tools.report import analysis
from damond.tools.report.source import Series

NR_COLS_BAR = 59


def wss_values(series: Series, acc_thres: int, sz_thres: int, exclude: int) -> list[int]:
    return [analysis.accessed_bytes(s.start, s.end, s.nr_accesses, acc_thres, sz_thres)
            for s in series.snapshots[exclude:]]


def format_dist(values: list[float], percentiles: range, raw: bool,
                all_values: bool = False) -> list[str]:
    """damo's ``fmt_dists`` layout: header, average, then one bar line per percentile of
    ``values`` taken in the order given."""
    lines = ["# <percentile> <wss>"]
    if not values:
        return lines + ["# no snapshot"]
    lines.append(f"# avr:\t{format_sz(sum(values) / len(values), raw)}")
    if all_values:
        return lines + [f"{i} {format_sz(v, raw)}" for i, v in enumerate(values)]
    picked = [(p, values[min(len(values) - 1, int(p / 100 * len(values)))])
              for p in percentiles]
    top = max((v for _, v in picked), default=0)
    per_col = top / NR_COLS_BAR if top > 0 else 1
    for p, v in picked:
        cols = int(v / per_col)
        lines.append(f"{p:3d} {format_sz(v, raw):>15} |{'*' * cols}{' ' * (NR_COLS_BAR - cols)}|")
    return lines


def report(series: list[Series], *, percentiles: range = range(0, 101, 25), acc_thres: int = 1,
           sz_thres: int = 1, exclude: int = 20, sort_by: str = "size", per_target: bool = False,
           raw: bool = False, all_values: bool = False) -> str:
    dists: list[tuple[int, list[int]]] = []
    for s in series:
        dists.append((s.target, wss_values(s, acc_thres, sz_thres, exclude)))
    if not per_target:
        summed: list[int] = []
        for _, values in dists:
            for i, v in enumerate(values):
                if i < len(summed):
                    summed[i] += v
                else:
                    summed.append(v)
        dists = [(0, summed)]
    lines = []
    for target, values in dists:
        if sort_by == "size":
            values = sorted(values)
        lines.append(f"# target_id\t{target}")
        lines += format_dist(values, percentiles, raw, all_values)
    return "\n".join(lines) + "\n"
