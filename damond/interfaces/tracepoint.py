"""The ``damon:damon_aggregated`` tracepoint as text: the one place it is formatted and parsed.

The kernel emits one event per region at every aggregation (after merge, before split), printed
as ``target_id=%lu nr_regions=%u %lu-%lu: %u %u`` (v5.18+: the last number is the region's age;
earlier kernels print no age). Each tool puts a head naming the thread and time before it:

* damond's ``trace`` stream: ``kdamond.K SEC.USEC: damon:damon_aggregated: ...``
* ``perf script``: ``kdamond.K PID [CPU] SEC.USEC: damon:damon_aggregated: ...``
* tracefs and ``trace-cmd report``: ``kdamond.K-PID [CPU] FLAGS SEC.USEC: damon_aggregated: ...``

damond writes the first two (:func:`format_lines`; the core hands out
:class:`~damond.core.events.AggregationEvent` arrays and never formats text) and reads all three
(:func:`parse_line`; :func:`parse_block` parses a whole block into numpy columns at once, for
readers of a busy kernel trace). The events carry no aggregation number: the one grouping a
reader can rely on is that a target's snapshot is ``nr_regions`` consecutive events of that target.
:func:`group_snapshots` groups a whole text that way (damo's rule, for record files and traces);
:class:`TraceGrouper` turns a live stream of one kdamond back into AggregationEvents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from damond.core.events import AggregationEvent, TargetSnapshot

#: the tracepoint's full name, as ``perf script`` and damond's ``trace`` print it
EVENT_NAME = "damon:damon_aggregated"
#: how the event field ends in every form (tracefs prints the name without its system)
_EVENT_FIELD_SUFFIX = "damon_aggregated:"
_COMM_PREFIX = "kdamond."
_NS_PER_S = 1_000_000_000


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def format_timestamp(time_ns: int) -> str:
    """``SEC.USEC``, as ``perf script`` prints CLOCK_MONOTONIC event times."""
    sec, nsec = divmod(time_ns, _NS_PER_S)
    return f"{sec}.{nsec // 1000:06d}"


def format_head(kdamond_index: int, time_ns: int, pid: int | None = None) -> str:
    """The text before an event's fields: damond's ``trace`` form, or ``perf script``'s
    (thread id ``pid``, CPU 0) when ``pid`` is given."""
    thread = f"{_COMM_PREFIX}{kdamond_index}"
    if pid is not None:
        thread += f" {pid} [000]"
    return f"{thread} {format_timestamp(time_ns)}: {EVENT_NAME}: "


def format_region_lines(head: str, target_id: int, start: Sequence[int], end: Sequence[int],
                        nr_accesses: Sequence[int], age: Sequence[int]) -> list[str]:
    """One line per region of one target's snapshot (``nr_regions`` is their number)."""
    prefix = f"{head}target_id={target_id} nr_regions={len(start)} "
    return [f"{prefix}{s}-{e}: {a} {g}"
            for s, e, a, g in zip(start, end, nr_accesses, age, strict=True)]


def format_target_lines(event: AggregationEvent, target: TargetSnapshot,
                        pid: int | None = None) -> list[str]:
    """The lines of one target of ``event`` (see :func:`format_lines`)."""
    return format_region_lines(
        format_head(event.kdamond_index, event.end_ns, pid), target.target_index,
        target.start.tolist(), target.end.tolist(), target.nr_accesses.tolist(),
        target.age.tolist())


def format_lines(event: AggregationEvent, pid: int | None = None) -> list[str]:
    """The event as the kernel's tracepoint would have printed it, one line per region, in
    the v5.18+ form (``target_id`` is the target's index, ``age`` present), time stamped with
    the aggregation's end; ``perf script``'s form when ``pid`` is given."""
    return [line for t in event.targets for line in format_target_lines(event, t, pid)]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


class TracepointLine(NamedTuple):
    """One parsed event: a region of one target at one aggregation."""

    kdamond_index: int | None  # None when the thread is not named ``kdamond.K``
    time_ns: int | None  # None when the line carries no time stamp
    target_id: int
    nr_regions: int  # of this target's snapshot
    start: int
    end: int
    nr_accesses: int
    age: int | None  # None in the pre-5.18 form


def parse_timestamp(token: str) -> int | None:
    """``"82877.315633"`` in nanoseconds, exactly (damo goes through a float); None if
    ``token`` is no time stamp."""
    sec, _, frac = token.partition(".")
    if not (sec.isdigit() and (frac.isdigit() or not frac)):
        return None
    return int(sec) * _NS_PER_S + int((frac + "000000000")[:9])


def _head(fields: list[str]) -> tuple[int | None, int | None]:
    """(kdamond index, time ns) from the fields before the event: the thread name comes first
    (``kdamond.K``, tracefs appends ``-PID``), the time stamp is the first later field that
    ends with ``:`` (perf's pid and CPU, tracefs' flags come between)."""
    kdamond = time_ns = None
    if fields and fields[0].startswith(_COMM_PREFIX):
        number = fields[0][len(_COMM_PREFIX):].partition("-")[0]
        kdamond = int(number) if number.isdigit() else None
    for field in fields[1:]:
        if field.endswith(":"):
            time_ns = parse_timestamp(field[:-1])
            break
    return kdamond, time_ns


def parse_head(line: str) -> tuple[int, int] | None:
    """(kdamond index, time in ns) of a line whose head names a kdamond and a time
    (``kdamond.K SEC.USEC: ...`` and the other forms); None for other lines."""
    kdamond, time_ns = _head(line.split())
    if kdamond is None or time_ns is None:
        return None
    return kdamond, time_ns


def parse_line(line: str) -> TracepointLine | None:
    """A ``damon_aggregated`` line in any of the forms above; None for any other line
    (headers, other events, notes, a malformed line)."""
    at = line.find(_EVENT_FIELD_SUFFIX + " ")
    if at < 0:
        return None
    body = line[at + len(_EVENT_FIELD_SUFFIX):].split()
    if len(body) < 4 or not body[0].startswith("target_id="):
        return None
    head = line[:at].split()
    if head and not line[at - 1].isspace():
        head.pop()  # the event field's system part, ``damon:``
    try:
        start, end = body[2].rstrip(":").split("-")
        kdamond, time_ns = _head(head)
        return TracepointLine(
            kdamond, time_ns, int(body[0].partition("=")[2]), int(body[1].partition("=")[2]),
            int(start), int(end), int(body[3]), int(body[4]) if len(body) > 4 else None)
    except ValueError:
        return None


def parse_lines(lines: Iterable[str]) -> Iterator[TracepointLine]:
    """The ``damon_aggregated`` events among ``lines``, other lines skipped."""
    for line in lines:
        parsed = parse_line(line)
        if parsed is not None:
            yield parsed


# --------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------


def _target_snapshot(target_id: int, rows: list[tuple[int, int, int, int]]) -> TargetSnapshot:
    start, end, nr_accesses, age = zip(*rows, strict=True)
    return TargetSnapshot(target_id, np.array(start, dtype=np.uint64),
                          np.array(end, dtype=np.uint64), np.array(nr_accesses, dtype=np.int64),
                          np.array(age, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class TracedSnapshot:
    """One target's snapshot read back from tracepoint lines."""

    end_ns: int | None  # the time stamp of its first line: the aggregation's end
    nr_regions: int  # what its lines announced
    regions: TargetSnapshot  # ``target_index`` is the lines' ``target_id``

    @property
    def complete(self) -> bool:
        """Whether every announced region was read (a trace may end in the middle)."""
        return self.regions.nr_regions == self.nr_regions


def group_snapshots(events: Iterable[TracepointLine], missing_age: int = -1
                    ) -> dict[int, list[TracedSnapshot]]:
    """Events grouped as damo groups ``perf script`` output: per ``target_id`` (in order of
    first appearance), a snapshot per ``nr_regions`` consecutive events of that target, in
    order. A snapshot starts when the target's previous one is full, so only the last one of a
    target can be incomplete. ``missing_age`` stands for the age pre-5.18 lines do not carry."""
    groups: dict[int, list[tuple[int | None, int, list[tuple[int, int, int, int]]]]] = {}
    for ev in events:
        snapshots = groups.setdefault(ev.target_id, [])
        if not snapshots or len(snapshots[-1][2]) >= snapshots[-1][1]:
            snapshots.append((ev.time_ns, ev.nr_regions, []))
        snapshots[-1][2].append((ev.start, ev.end, ev.nr_accesses,
                                 missing_age if ev.age is None else ev.age))
    return {target: [TracedSnapshot(end_ns, nr_regions, _target_snapshot(target, rows))
                     for end_ns, nr_regions, rows in snapshots]
            for target, snapshots in groups.items()}


class TraceGrouper:
    """Turns one kdamond's ``damon_aggregated`` lines, as damond's ``trace`` streams them, back
    into AggregationEvents (what ``kdamond.subscribe`` would have delivered), for recording
    from a running daemon.

    An aggregation is a run of lines with one time stamp; inside it, each target's snapshot is
    its ``nr_regions`` consecutive lines. A new aggregation starts when the time stamp changes
    or a target whose snapshot is complete appears again. An aggregation is known complete only
    when the next one begins (or at :meth:`finish`): the tracepoint does not say how many
    targets there are. Lines do not carry the start time: an aggregation starts where the
    previous one ended, or ``aggr_us`` before its end when it is the first or follows dropped
    events. Pre-5.18 lines (no age) get age 0.
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
        ev = parse_line(line)
        if ev is None or ev.kdamond_index != self.kdamond or ev.time_ns is None:
            return None
        done = None
        rows = self._rows.get(ev.target_id)
        if self._end_ns is not None and (
                ev.time_ns != self._end_ns or (rows is not None
                                               and len(rows) >= self._expected[ev.target_id])):
            done = self.finish()
        self._end_ns = ev.time_ns
        if ev.target_id not in self._rows:
            self._rows[ev.target_id] = []
            self._expected[ev.target_id] = ev.nr_regions
        self._rows[ev.target_id].append(
            (ev.start, ev.end, ev.nr_accesses, 0 if ev.age is None else ev.age))
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
        targets = tuple(_target_snapshot(t, r) for t, r in complete)
        return AggregationEvent(self.kdamond, 0, start_ns, end_ns, self.sample_us,
                                self.aggr_us, targets)


# --------------------------------------------------------------------------------------------
# Bulk parsing
# --------------------------------------------------------------------------------------------

#: one event line in any of the three forms; the time stamp is the last ``SEC.FRAC:`` field of
#: the head (the head's other fields differ per tool and are not needed in bulk)
_BULK_LINE = re.compile(
    r"(?<!\S)(\d+)\.(\d+): (?:damon:)?damon_aggregated: target_id=(\d+) "
    r"nr_regions=(\d+) (\d+)-(\d+): (\d+)(?: (\d+))?[ \t\r]*$", re.MULTILINE)


class TracepointColumns(NamedTuple):
    """Many parsed events as columns (one row per event, in the text's order)."""

    time_ns: np.ndarray  # int64
    target_id: np.ndarray  # int64
    nr_regions: np.ndarray  # int64
    start: np.ndarray  # uint64
    end: np.ndarray  # uint64
    nr_accesses: np.ndarray  # int64
    age: np.ndarray  # int64; ``missing_age`` for pre-5.18 lines

    def __len__(self) -> int:
        return len(self.time_ns)

    def slice(self, lo: int, hi: int | None = None) -> TracepointColumns:
        """Rows ``lo`` to ``hi`` (views, not copies)."""
        return TracepointColumns(*(c[lo:hi] for c in self))

    @staticmethod
    def concat(a: TracepointColumns, b: TracepointColumns) -> TracepointColumns:
        return TracepointColumns(*(np.concatenate((x, y)) for x, y in zip(a, b, strict=True)))


def empty_columns() -> TracepointColumns:
    i64 = np.empty(0, dtype=np.int64)
    u64 = np.empty(0, dtype=np.uint64)
    return TracepointColumns(i64, i64, i64, u64, u64, i64, i64)


def parse_block(text: str, missing_age: int = -1) -> TracepointColumns:
    """Every ``damon_aggregated`` line of ``text`` that carries a time stamp, parsed at once
    (one regular-expression pass and a column conversion in numpy, instead of
    :func:`parse_line` per line: what a reader of a busy kernel trace can afford). Other
    lines are skipped, as :func:`parse_lines` skips them; time stamps are exact
    (``SEC.FRAC`` with up to 9 fraction digits)."""
    rows = _BULK_LINE.findall(text)
    if not rows:
        return empty_columns()
    absent = None
    if not all(r[7] for r in rows):  # pre-5.18 lines: no age
        absent = np.array([not r[7] for r in rows])
        rows = [r if r[7] else (*r[:7], "0") for r in rows]
    fracs = {len(r[1]) for r in rows}
    if max(fracs) > 9:  # beyond nanoseconds: cut
        rows = [(r[0], r[1][:9], *r[2:]) for r in rows]
        fracs = {min(f, 9) for f in fracs}
    cols = np.array(rows, dtype=np.uint64).T  # numpy parses the digits (one C loop)
    if len(fracs) == 1:
        frac_ns = cols[1].astype(np.int64) * 10 ** (9 - fracs.pop())
    else:
        frac_ns = np.array([int(r[1]) * 10 ** (9 - len(r[1])) for r in rows], dtype=np.int64)
    time_ns = cols[0].astype(np.int64) * _NS_PER_S + frac_ns
    age = cols[7].astype(np.int64)
    if absent is not None:
        age[absent] = missing_age
    return TracepointColumns(time_ns, cols[2].astype(np.int64), cols[3].astype(np.int64),
                             cols[4], cols[5], cols[6].astype(np.int64), age)
