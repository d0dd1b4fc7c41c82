"""Where reports get their snapshots: a record file, or a kdamond of a running daemon recorded
in memory for a while, grouped into one time series per monitoring target.

Both end up as ``RecordedSnapshot`` lists (what ``read_record`` returns), so every report works
the same on damo's files, damond's files and live data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from damond.client import client_socket_path
from damond.core.events import AggregationEvent
from damond.formats.damo.record import RecordedSnapshot, read_record


class ReportError(Exception):
    """A failure reported in one line (exit status 1, or ``status``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Series:
    """The snapshots of one target (of one kdamond's context), in time order."""

    kdamond: int
    context: int
    target: int
    snapshots: list[RecordedSnapshot]

    @property
    def start_ns(self) -> int:
        return self.snapshots[0].start_ns

    @property
    def end_ns(self) -> int:
        return self.snapshots[-1].end_ns


def snapshots_of_events(events: Iterable[AggregationEvent]) -> list[RecordedSnapshot]:
    """Aggregation events as record snapshots (one per target with regions)."""
    return [
        RecordedSnapshot(ev.kdamond_index, ev.context_index, t.target_index, ev.start_ns,
                         ev.end_ns, ev.sample_us, ev.aggr_us, t.start, t.end, t.nr_accesses,
                         t.age)
        for ev in events for t in ev.targets if t.nr_regions
    ]


def group_series(snapshots: Iterable[RecordedSnapshot]) -> list[Series]:
    """One series per (kdamond, context, target), in order of first appearance."""
    groups: dict[tuple[int, int, int], list[RecordedSnapshot]] = {}
    for s in snapshots:
        groups.setdefault((s.kdamond_index, s.context_index, s.target_index), []).append(s)
    return [Series(k, c, t, sorted(snaps, key=lambda s: (s.end_ns, s.start_ns)))
            for (k, c, t), snaps in groups.items()]


def load_snapshots(args: argparse.Namespace) -> list[RecordedSnapshot]:
    """From ``--input`` (default damon.data), or live with ``--socket``/``--kdamond``."""
    if args.socket is not None:
        return _live(args)
    try:
        return read_record(args.input)
    except OSError as e:
        raise ReportError(f"cannot read {args.input}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ReportError(f"{args.input} is not a damo record file: {e}") from None


def _live(args: argparse.Namespace) -> list[RecordedSnapshot]:
    # imported here: trio (about 50 ms) is only needed when reading a daemon, not a file
    import trio

    from damond.tools.report.live import DaemonSourceError, collect

    path = client_socket_path(args.socket)
    kdamond = args.kdamond or 0
    print(f"damond report: recording kdamond {kdamond} for {args.seconds:g} s",
          file=sys.stderr)
    try:
        events = trio.run(collect, path, kdamond, args.seconds)
    except* DaemonSourceError as group:
        first = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise ReportError(str(first), first.status) from None
    return snapshots_of_events(events)


def select(series: list[Series], kdamond: int | None, target: int | None) -> list[Series]:
    """The series of ``kdamond`` (default: the first one's) and ``target`` (default: all)."""
    if not series:
        raise ReportError("no snapshots to report")
    if kdamond is None:
        kdamond = series[0].kdamond
    chosen = [s for s in series if s.kdamond == kdamond and (target is None or s.target == target)]
    if not chosen:
        have = ", ".join(f"kdamond {s.kdamond} target {s.target}" for s in series)
        raise ReportError(f"no snapshots of kdamond {kdamond}"
                          + ("" if target is None else f" target {target}") + f" (have: {have})")
    return chosen
