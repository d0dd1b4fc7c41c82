"""``damond report``'s command line: options of each report, and the dispatch to its module.

Every report reads its snapshots the same way (``source``: a record file, or a daemon's kdamond
recorded for ``--seconds``), so the input options are one parent parser shared by all reports.
"""

from __future__ import annotations

import argparse
import sys

from damond.formats.damo.units import DamoTextError, text_to_bytes, text_to_ns
from damond.tools.clitools import EXIT_INTERRUPTED, ToolCommand, report_failure
from damond.tools.report import access, heatmap, heatmap_png, wss
from damond.tools.report.heatmap_text import STYLES, render, render_raw
from damond.tools.report.source import ReportError, group_series, load_snapshots, select

DEFAULT_INPUT = "damon.data"
DEFAULT_LIVE_S = 5.0


def _address(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return int(text_to_bytes(text))
    except (DamoTextError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not an address: {text!r}") from None


def _time_ns(text: str) -> int:
    try:
        return int(text_to_ns(text))
    except (DamoTextError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a time (e.g. 1.5s, 200ms): {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count (0 or more), not {text!r}")
    return value


def _source_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("input")
    g.add_argument("-i", "--input", default=DEFAULT_INPUT, metavar="FILE",
                   help=f"damo record file (default {DEFAULT_INPUT})")
    g.add_argument("--socket", metavar="PATH",
                   help="report live from a running daemon instead (its control socket)")
    g.add_argument("--kdamond", type=int, metavar="N",
                   help="kdamond to report (default: the first in the file; 0 live)")
    g.add_argument("--seconds", type=float, default=DEFAULT_LIVE_S, metavar="S",
                   help=f"live: record this long first (default {DEFAULT_LIVE_S:g})")
    g.add_argument("--target", type=int, metavar="T", help="target index (default: the "
                   "first for heatmap, all for wss and access)")
    return p


def _heatmap_parser(sub, parent) -> None:
    p = sub.add_parser(
        "heatmap", parents=[parent], help="access frequency over time and address",
        description="Time (rows) x address (columns) map of access rates. Only monitored "
                    "addresses are drawn: by default the monitored range with the most "
                    "accesses; --draw-range all puts every range side by side with the gaps "
                    "between them cut out.")
    p.add_argument("--output", default="stdout", metavar="stdout|raw|FILE",
                   help="stdout (text map, default), raw (time address value lines, like "
                        "damo), or an image FILE.png (.svg, .pdf, .jpg)")
    p.add_argument("--resol", type=_positive_int, nargs=2, metavar=("ROWS", "COLS"),
                   help="rows (time) and columns (address); default 40 80 for text, "
                        "500 500 for images")
    p.add_argument("--draw-range", choices=heatmap.DRAW_RANGES, default="hottest",
                   help="hottest (default): the monitored range with the most accesses; all: "
                        "every monitored range")
    p.add_argument("--address-range", type=_address, nargs=2, metavar=("START", "END"),
                   help="zoom into these addresses (0x... or sizes like 4K)")
    p.add_argument("--time-range", type=_time_ns, nargs=2, metavar=("START", "END"),
                   help="zoom into this time, from the recording's start (1s, 500ms; a bare "
                        "number is ns, as in damo)")
    p.add_argument("--style", choices=sorted(STYLES), default="digits",
                   help="characters of the text map")
    p.set_defaults(report=_heatmap)


def _wss_parser(sub, parent) -> None:
    p = sub.add_parser(
        "wss", parents=[parent], help="working set size percentiles",
        description="Working set size distribution like damo report wss: per snapshot, the "
                    "bytes of regions accessed at least --acc-thres times.")
    p.add_argument("-r", "--range", type=int, nargs=3, default=[0, 101, 25],
                   metavar=("START", "STOP", "STEP"),
                   help="percentiles to print (default 0 101 25)")
    p.add_argument("--exclude-samples", type=_count, default=None, metavar="N",
                   help=f"skip the first N snapshots (default: damo's {wss.DAMO_EXCLUDE}, but "
                        "at most a quarter of the record)")
    p.add_argument("-t", "--acc-thres", type=int, default=1, metavar="N",
                   help="samples a region needs to count (default 1)")
    p.add_argument("--sz-thres", type=int, default=1, metavar="BYTES",
                   help="smallest region that counts (default 1)")
    p.add_argument("-s", "--sortby", choices=["size", "time"], default="size",
                   help="percentiles of sizes (default) or points in time")
    p.add_argument("--per-target", action="store_true", help="one distribution per target")
    p.add_argument("--all-wss", action="store_true", help="every snapshot's size instead")
    p.add_argument("--raw-number", action="store_true", help="plain byte counts")
    p.set_defaults(report=_wss)


def _access_parser(sub, parent) -> None:
    p = sub.add_parser(
        "access", parents=[parent], help="one snapshot's regions as a table",
        description="The regions of one snapshot: address range, size, access rate, age.")
    p.add_argument("--snapshot", type=int, default=-1, metavar="N",
                   help="snapshot index (0 the first, -1 the latest; default -1)")
    p.set_defaults(report=_access)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="report_type", metavar="REPORT", required=True)
    parent = _source_options()
    _heatmap_parser(sub, parent)
    _wss_parser(sub, parent)
    _access_parser(sub, parent)


DESCRIPTION = ("Reports of DAMON monitoring results (damo-like): heatmap, wss, access; from "
               "a damo record file or live from a running damond's kdamond.")


def _series(args: argparse.Namespace, all_targets: bool):
    series = group_series(load_snapshots(args))
    if not series:
        raise ReportError(f"no snapshots in {args.input if args.socket is None else 'the trace'}")
    chosen = select(series, args.kdamond, args.target)
    return chosen if all_targets else chosen[:1]


def _heatmap(args: argparse.Namespace) -> str:
    (series,) = _series(args, all_targets=False)
    image = args.output not in ("stdout", "raw")
    rows, cols = args.resol or ((500, 500) if image else (40, 80))
    hm = heatmap.build(series.snapshots, rows, cols, draw_range=args.draw_range,
                       address_range=tuple(args.address_range) if args.address_range else None,
                       time_range=tuple(args.time_range) if args.time_range else None)
    if args.output == "stdout":
        return render(hm, args.style)
    if args.output == "raw":
        return render_raw(hm)
    source = args.input if args.socket is None else f"live kdamond {args.kdamond or 0}"
    heatmap_png.save(hm, args.output, f"{source}: kdamond {series.kdamond}, "
                                      f"target {series.target}")
    return ""


def _wss(args: argparse.Namespace) -> str:
    series = _series(args, all_targets=True)
    note = wss.exclusion_note(series, args.exclude_samples)
    if note is not None:
        print(f"{REPORT.prog}: {note}", file=sys.stderr)
    return wss.report(series, percentiles=range(*args.range),
                      acc_thres=args.acc_thres, sz_thres=args.sz_thres,
                      exclude=args.exclude_samples, sort_by=args.sortby,
                      per_target=args.per_target, raw=args.raw_number,
                      all_values=args.all_wss)


def _access(args: argparse.Namespace) -> str:
    return access.report(_series(args, all_targets=True), args.snapshot)


def run(args: argparse.Namespace) -> int:
    """The ``report`` subcommand (argparse ``func``)."""
    try:
        text = args.report(args)
    except ReportError as e:
        return report_failure(REPORT.prog, e)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # | head
        return 0
    return 0


#: ``damond report`` and ``python -m damond.tools.report``
REPORT = ToolCommand(name="report", help="heatmap, working set size, snapshot table",
                     description=DESCRIPTION, add_arguments=add_arguments, run=run)
