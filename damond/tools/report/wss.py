"""Working set size distribution, in ``damo report wss``'s output form.

Working set of a snapshot: the bytes of its regions seen accessed in at least one sample
(``--acc-thres``, default 1) and at least ``--sz-thres`` bytes big (default 1): damo's
definition (``analysis.accessed_bytes``), so the two tools print the same numbers for the same
file. The first ``--exclude-samples`` snapshots are skipped: monitoring starts with a few big
regions whose counts say little. damo always skips 20 by default, which leaves nothing of a
short record (an 18-snapshot recording printed only ``# no snapshot``); without the option
damond skips damo's 20 but at most a quarter of the snapshots (so records of 80 snapshots or
more give damo's numbers), and says what it skipped. Percentile ``p`` is the value at index
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
#: damo's default ``--exclude_samples``
DAMO_EXCLUDE = 20
#: without ``--exclude-samples``, at most this share of a target's snapshots is skipped
DEFAULT_EXCLUDE_SHARE = 0.25


def default_exclude(nr_snapshots: int) -> int:
    """Snapshots skipped when ``--exclude-samples`` is not given: damo's 20, at most a
    quarter of the record."""
    return min(DAMO_EXCLUDE, int(nr_snapshots * DEFAULT_EXCLUDE_SHARE))


def excluded(series: Series, exclude: int | None) -> int:
    """How many of ``series``' first snapshots are skipped (``None``: the default)."""
    n = len(series.snapshots)
    return min(n, default_exclude(n) if exclude is None else exclude)


def wss_values(series: Series, acc_thres: int, sz_thres: int, exclude: int | None) -> list[int]:
    return [analysis.accessed_bytes(s.start, s.end, s.nr_accesses, acc_thres, sz_thres)
            for s in series.snapshots[excluded(series, exclude):]]


def format_dist(values: list[float], percentiles: range, raw: bool,
                all_values: bool = False, why_none: str = "") -> list[str]:
    """damo's ``fmt_dists`` layout: header, average, then one bar line per percentile of
    ``values`` taken in the order given."""
    lines = ["# <percentile> <wss>"]
    if not values:
        return lines + ["# no snapshot" + (f": {why_none}" if why_none else "")]
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
           sz_thres: int = 1, exclude: int | None = None, sort_by: str = "size",
           per_target: bool = False, raw: bool = False, all_values: bool = False) -> str:
    """The report's text; ``exclude`` None skips :func:`default_exclude` snapshots."""
    dists: list[tuple[int, list[int], list[Series]]] = []
    for s in series:
        dists.append((s.target, wss_values(s, acc_thres, sz_thres, exclude), [s]))
    if not per_target:
        summed: list[int] = []
        for _, values, _ in dists:
            for i, v in enumerate(values):
                if i < len(summed):
                    summed[i] += v
                else:
                    summed.append(v)
        dists = [(0, summed, list(series))]
    lines = []
    for target, values, sources in dists:
        if sort_by == "size":
            values = sorted(values)
        lines.append(f"# target_id\t{target}")
        why = ""
        if not values and sources and any(s.snapshots for s in sources):
            n = max(len(s.snapshots) for s in sources)
            why = (f"all {n} snapshots were skipped by --exclude-samples "
                   f"{exclude if exclude is not None else default_exclude(n)}; "
                   "--exclude-samples 0 keeps them")
        lines += format_dist(values, percentiles, raw, all_values, why)
    return "\n".join(lines) + "\n"


def exclusion_note(series: list[Series], exclude: int | None) -> str | None:
    """What the default skipped, for standard error (the report itself stays damo's form);
    None when nothing was skipped or the user chose the number."""
    if exclude is not None:
        return None
    skipped = {(excluded(s, None), len(s.snapshots)) for s in series}
    if not any(k for k, _ in skipped):
        return None
    k, n = max(skipped)
    return (f"skipped the first {k} of {n} snapshots (monitoring's start; damo skips "
            f"{DAMO_EXCLUDE}, damond at most a quarter); --exclude-samples N chooses, 0 keeps "
            "all")
