"""damo's record files (``damo record --out``), written from damond's aggregation events and read
back for damond's own reports.

damo reads three self-describing types (``_damo_records.py`` ``parse_records_file``):

* ``json_compressed`` (damo's default): one zlib stream of a JSON list of records, one record per
  (kdamond, context, intervals, target), each with its snapshots;
* ``json``: the same list uncompressed;
* ``perf_script``: the text ``perf script`` prints for the ``damon_aggregated`` tracepoint, one
  line per region (formatted and parsed by ``damond.interfaces.tracepoint``).

The JSON keys and number forms are what damo 3.4.3 writes (``DamonRecord.to_kvpairs(raw=True)``,
``DamonSnapshot.to_kvpairs`` and ``DamonRegion.to_kvpairs`` with its *default* ``raw=False``):
times, sizes and intervals as raw digit strings, region addresses and ages with thousands commas
(``"1,052,672"``), ``nr_accesses.samples`` a JSON number, ``percent``/``usec`` null.

Durability. A recording can be killed at any moment and must still leave a file damo reads,
missing at most what was added since the last :meth:`RecordWriter.flush`. A zlib stream cannot be
appended to in place, and records are grouped per target, so the file is never edited: each flush
writes a complete new file next to it (``<out>.XXXXXXXX.damond-tmp``, created by ``mkstemp``:
never a path planted in advance; removed if the write fails), fsyncs it, and renames it over the
output (then fsyncs the directory). That would cost a recompression of everything each time, so
each record's snapshot text is compressed once, when added, by a raw-deflate compressor of its own
that each flush ends with a sync flush and drops (the bytes then end on a byte boundary and refer
to nothing outside themselves, so they stay valid wherever they are placed): the new file is the
zlib header, small freshly compressed JSON glue between the records, each record's compressed
bytes **copied** from the previous file (``copy_file_range``, in the kernel) followed by its new
bytes, a final block, and the Adler-32 of the whole text combined from per-record checksums. No
journal is needed: the previous output is the journal. Memory holds a compressor (about 256 KiB)
per record that received snapshots since the last flush, and the compressed bytes added since
then; a flush also happens on its own after ``flush_interval_s`` or 32 MiB.

Measured on this project's 2-core machine (ext4 on a virtio disk, zlib level 6, other jobs
running), 10 000 snapshots of one target with 100 regions each (1 000 000 regions: 208 MB of JSON
text, 8.4 MB compressed): ``add`` costs 0.26-0.37 ms per snapshot (formatting and compressing);
flushing all 10 000 at once takes 10-23 ms; once the file holds them, flushing ten more takes
10-18 ms (median of 20; worst 42 ms): the in-kernel copy of the 8.4 MB is ~3 ms, the fsync of the
new file ~7 ms, the directory's ~1 ms. The copy grows linearly with the compressed size (~0.35 ms
per MB); recompressing the text instead would take 2.1 s. The uncompressed types copy 15-25 times
more: a flush at that size takes ~0.3 s for json, ~0.2 s for perf_script. Reading that file back
with :func:`read_record` takes 8-10 s, mostly ``json.loads``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from damond.core.events import AggregationEvent, TargetSnapshot
from damond.formats.damo.units import (
    DamoTextError,
    text_to_bytes,
    text_to_nr,
    text_to_ns,
    text_to_percent,
    text_to_us,
)
from damond.interfaces import tracepoint

OUTPUT_TYPES = ("json_compressed", "json", "perf_script")

#: Pending (compressed) bytes that force a flush: bounds memory under any event rate.
MAX_PENDING_BYTES = 32 << 20
#: zlib stream header for a 32 KiB window and the default level (what ``zlib.compress`` writes).
_ZLIB_HEADER = b"\x78\x9c"
_TMP_SUFFIX = ".damond-tmp"
_COPY_CHUNK = 1 << 20
_ADLER_BASE = 65521


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of ``a + b`` from those of ``a`` and ``b`` (zlib's ``adler32_combine``, which
    Python's zlib module does not expose)."""
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 = (sum1 + (adler2 & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + (adler1 >> 16) + (adler2 >> 16) + _ADLER_BASE - rem) % _ADLER_BASE
    return sum1 | (sum2 << 16)


def _deflate_piece(text: bytes, final: bool) -> bytes:
    """``text`` as raw deflate blocks ending on a byte boundary (or with the final block)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return comp.compress(text) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


class _Segment:
    """One damo record's snapshot list (or, for perf_script, the whole body): bytes already in
    the output file (``offset``/``length``) and bytes to add at the next flush."""

    __slots__ = ("header", "nr_snapshots", "offset", "length", "pending", "compressor", "adler",
                 "text_len")

    def __init__(self, header: str) -> None:
        self.header = header
        self.nr_snapshots = 0
        self.offset = 0
        self.length = 0
        self.pending: list[bytes] = []
        self.compressor = None
        self.adler = 1  # Adler-32 of the empty text
        self.text_len = 0

    def append(self, text: str, compress: bool) -> int:
        data = text.encode()
        self.adler = zlib.adler32(data, self.adler)
        self.text_len += len(data)
        self.nr_snapshots += 1
        if compress:
            if self.compressor is None:
                self.compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = self.compressor.compress(data)
        if data:
            self.pending.append(data)
        return len(data)

    def seal(self) -> None:
        """End the compressed bytes on a byte boundary, so the next file can carry them as is."""
        if self.compressor is not None:
            self.pending.append(self.compressor.flush(zlib.Z_SYNC_FLUSH))
            self.compressor = None


class RecordWriter:
    """Writes AggregationEvents to a damo record file that is readable after every flush.

    ``output_type`` is one of :data:`OUTPUT_TYPES`; ``permission`` the file mode (damo's
    ``--output_permission`` default, 0o600); ``update_us`` is only copied into the records'
    ``intervals`` (events do not carry it, and damo's reports do not use it).

    perf_script lines name targets by index only (as the tracepoint does), so a perf_script file
    takes the events of one context; targets with no regions are skipped in every type (damo's
    recordings never hold empty snapshots, and its reports assume regions).
    """

    def __init__(self, path: str | os.PathLike, output_type: str = "json_compressed",
                 flush_interval_s: float = 5.0, permission: int = 0o600,
                 update_us: int = 1_000_000) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, not {output_type!r}")
        self.path = os.fspath(path)
        self.output_type = output_type
        self.flush_interval_s = flush_interval_s
        self.permission = permission
        self.update_us = update_us
        self._compress = output_type == "json_compressed"
        self._perf = output_type == "perf_script"
        self._segments: dict[tuple, _Segment] = {}
        self._perf_context: tuple[int, int] | None = None
        #: perf_script: target index -> [snapshots written, (start_ns, end_ns) of the first]
        self._perf_targets: dict[int, list] = {}
        self._pending_bytes = 0
        self._fd: int | None = None  # the current output file, source of the next copy
        self._closed = False
        self._write_file()
        self._last_flush = time.monotonic()

    # -- adding ------------------------------------------------------------------------------

    def add(self, event: AggregationEvent) -> None:
        """Append one snapshot per target of ``event``; flushes when the interval has passed."""
        if self._closed:
            raise ValueError("RecordWriter is closed")
        if self._perf:
            self._check_perf_context(event)
        for target in event.targets:
            if target.nr_regions == 0:
                continue
            if self._perf:
                segment = self._segment(("perf",), "")
                seen = self._perf_targets.setdefault(
                    target.target_index, [0, (event.start_ns, event.end_ns)])
                seen[0] += 1
                text = self._perf_lines(event, target)
            else:
                key = (event.kdamond_index, event.context_index, event.sample_us, event.aggr_us,
                       target.target_index)
                segment = self._segment(key, self._record_header(event, target.target_index))
                text = self._snapshot_json(event, target, first=segment.nr_snapshots == 0)
            self._pending_bytes += segment.append(text, self._compress)
        if (self._pending_bytes >= MAX_PENDING_BYTES
                or time.monotonic() - self._last_flush >= self.flush_interval_s):
            self.flush()

    def _check_perf_context(self, event: AggregationEvent) -> None:
        ctx = (event.kdamond_index, event.context_index)
        if self._perf_context is None:
            self._perf_context = ctx
        elif ctx != self._perf_context:
            raise ValueError("a perf_script record names targets by index only: it can hold one "
                             f"context, {self._perf_context}, not also {ctx}")

    def _segment(self, key: tuple, header: str) -> _Segment:
        """The segment of a (kdamond, context, intervals, target) record; perf_script has one."""
        segment = self._segments.get(key)
        if segment is None:
            segment = self._segments[key] = _Segment(header)
        return segment

    def _record_header(self, event: AggregationEvent, target_index: int) -> str:
        """``DamonRecord.to_kvpairs(raw=True)`` up to the snapshots list."""
        intervals = {
            "sample_us": str(event.sample_us), "aggr_us": str(event.aggr_us),
            "ops_update_us": str(self.update_us),
            "intervals_goal": {"access_bp": "0.000000", "aggrs": "0", "min_sample_us": "0",
                               "max_sample_us": "0"},
        }
        return (f'{{"kdamond_idx": {event.kdamond_index}, "context_idx": {event.context_index}, '
                f'"intervals": {json.dumps(intervals)}, "scheme_idx": null, '
                f'"target_id": {target_index}, "scheme_filters": [], "snapshots": [')

    @staticmethod
    def _snapshot_json(event: AggregationEvent, t: TargetSnapshot, first: bool) -> str:
        """``DamonSnapshot.to_kvpairs(raw=True)`` (regions in damo's non-raw region form)."""
        starts, ends = t.start.tolist(), t.end.tolist()
        regions = ",".join([
            f'{{"start": "{s:,}", "end": "{e:,}", "nr_accesses": {{"samples": {a}, '
            f'"percent": null}}, "age": {{"usec": null, "aggr_intervals": "{g:,}"}}, '
            f'"probe_hits": [], "sz_filter_passed": "0 B"}}'
            for s, e, a, g in zip(starts, ends, t.nr_accesses.tolist(), t.age.tolist(),
                                  strict=True)
        ])
        total = sum(ends) - sum(starts)
        return (f'{"" if first else ","}{{"start_time": "{event.start_ns}", '
                f'"end_time": "{event.end_ns}", "regions": [{regions}], '
                f'"total_bytes": "{total}", "damos_stats": null, "sample_interval_us": null}}')

    @staticmethod
    def _perf_lines(event: AggregationEvent, t: TargetSnapshot) -> str:
        """``perf script``'s lines for one target, as this process's thread printed them."""
        return "".join([line + "\n"
                        for line in tracepoint.format_target_lines(event, t, pid=os.getpid())])

    # -- writing the file -------------------------------------------------------------------

    def flush(self) -> None:
        """Make everything added so far durable: a new complete file replaces the output."""
        if self._closed:
            return
        for segment in self._segments.values():
            segment.seal()
        self._write_file()
        self._pending_bytes = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and release the file; further adds are refused, closing again does nothing."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _glue_texts(self) -> list[str]:
        """The JSON text around the segments: before each one, and after the last."""
        close = '], "data_source": "unknown"}'
        segments = list(self._segments.values())
        if not segments:
            return ["[]"]
        texts = ["[" + segments[0].header]
        texts += [f"{close},{segment.header}" for segment in segments[1:]]
        return texts + [close + "]"]

    def _pieces(self) -> Iterator[tuple[bytes, _Segment | None]]:
        """The file in order: literal bytes, or (b"", segment) where a segment's bytes go."""
        segments = list(self._segments.values())
        if self._perf:
            yield from ((b"", segment) for segment in segments)
            yield self._perf_tail().encode(), None
            return
        texts = self._glue_texts()
        for text, segment in zip(texts, segments + [None], strict=True):
            data = text.encode()
            yield (_deflate_piece(data, segment is None) if self._compress else data), None
            if segment is not None:
                yield b"", segment

    def _perf_tail(self) -> str:
        """damo's fake second snapshot (region 0-0, -1 accesses) for targets with only one:
        perf lines carry end times only, and damo deduces the first start from the second."""
        kd = self._perf_context[0] if self._perf_context else 0
        return "".join(
            tracepoint.format_region_lines(
                tracepoint.format_head(kd, 2 * end - start, pid=os.getpid()), target,
                [0], [0], [-1], [-1])[0] + "\n"
            for target, (count, (start, end)) in self._perf_targets.items() if count == 1
        )

    def _checksum(self) -> int:
        """Adler-32 of the whole JSON text, from the glue texts and the segments' checksums."""
        adler = 1
        segments = list(self._segments.values())
        for text, segment in zip(self._glue_texts(), segments + [None], strict=True):
            data = text.encode()
            adler = adler32_combine(adler, zlib.adler32(data), len(data))
            if segment is not None:
                adler = adler32_combine(adler, segment.adler, segment.text_len)
        return adler

    def _write_file(self) -> None:
        """Write the whole file under a temporary name, fsync it, rename it over the output."""
        # mkstemp: a fresh name created with O_EXCL (a symlink or file planted under a
        # predictable name is never opened, so never truncated or chmodded), in the output's
        # own directory (rename is atomic only within a file system)
        directory, base = os.path.split(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=f"{base}.", suffix=_TMP_SUFFIX, dir=directory)
        try:
            os.fchmod(fd, self.permission)  # on the descriptor: the umask must not loosen it
            placed = self._write_pieces(fd)
            os.fsync(fd)
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):  # a full disk must not leave it behind
                os.unlink(tmp)
            raise
        for segment, (offset, length) in placed.items():
            segment.offset, segment.length = offset, length
            segment.pending.clear()
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def _write_pieces(self, fd: int) -> dict[_Segment, tuple[int, int]]:
        out = io.BufferedWriter(io.FileIO(fd, "w", closefd=False), buffer_size=1 << 20)
        if self._compress:
            out.write(_ZLIB_HEADER)
        placed = {}
        for data, segment in self._pieces():
            if segment is None:
                out.write(data)
                continue
            out.flush()
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            if segment.length:
                _copy_range(self._fd, fd, segment.offset, segment.length)
            for chunk in segment.pending:
                out.write(chunk)
            out.flush()
            placed[segment] = (offset, os.lseek(fd, 0, os.SEEK_CUR) - offset)
        if self._compress:
            out.write(self._checksum().to_bytes(4, "big"))
        out.flush()
        out.detach()
        return placed


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``src`` from ``offset`` to ``dst`` (at its position)."""
    try:
        while length:
            n = os.copy_file_range(src, dst, length, offset)
            if n == 0:
                raise OSError(errno.EIO, "record file shrank while copying it")
            offset += n
            length -= n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while length:
        data = os.pread(src, min(length, _COPY_CHUNK), offset)
        if not data:
            raise OSError(errno.EIO, "record file shrank while copying it")
        os.write(dst, data)
        offset += len(data)
        length -= len(data)


def _fsync_dir(path: str) -> None:
    """Make a rename durable (the directory entry is what changed)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Reading.


@dataclass(frozen=True, slots=True)
class RecordedSnapshot:
    """One target's regions at one aggregation, as read from a record file.

    ``sample_us``/``aggr_us`` are None when the file does not say (damo's perf conversions);
    ``nr_accesses`` is in samples and ``age`` in aggregation intervals.
    """

    kdamond_index: int
    context_index: int
    target_index: int
    start_ns: int
    end_ns: int
    sample_us: int | None
    aggr_us: int | None
    start: np.ndarray  # uint64
    end: np.ndarray  # uint64
    nr_accesses: np.ndarray  # int64
    age: np.ndarray  # int64

    @property
    def nr_regions(self) -> int:
        return int(self.start.shape[0])


def read_record(path: str | os.PathLike) -> list[RecordedSnapshot]:
    """All snapshots of a damo record file (json_compressed, json or perf_script, written by
    damond or by damo), record by record, each record's snapshots in file order. damo's fake
    snapshots (a lone ``0-0`` region with -1 accesses) are dropped.

    A file that is none of the three (not text, a JSON that is not a list of records, a text
    without one ``damon_aggregated`` line) raises ValueError saying so: "not a record" is a
    different answer from "a record without snapshots". An empty file is a record without
    snapshots (what a perf_script recording that saw nothing leaves).
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:
        try:
            return _read_json(zlib.decompress(data).decode())
        except zlib.error:
            pass  # not zlib after all: a text that happens to start like a zlib header
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("neither a zlib stream (json_compressed) nor text (json, "
                         "perf_script)") from None
    if text.lstrip()[:1] in ("[", "{"):
        return _read_json(text)
    return _read_perf_script(text)


def _int(value: object, parse=text_to_nr) -> int:
    """An integer field, read with damo's ``parse`` unless it is plain digits (and commas)."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value.replace(",", ""))
        except ValueError:
            pass
    try:
        return int(parse(value))
    except (DamoTextError, TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"bad number in record: {value!r}") from e


def _read_json(text: str) -> list[RecordedSnapshot]:
    records = json.loads(text)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("JSON, but not a list of damo records")
    out = []
    for record in records:
        intervals = record.get("intervals")
        sample = _int(intervals["sample_us"], text_to_us) if intervals else None
        aggr = _int(intervals["aggr_us"], text_to_us) if intervals else None
        previous_end = None
        for snap in record.get("snapshots", []):
            snapshot = _json_snapshot(record, snap, sample, aggr, previous_end)
            previous_end = snapshot.end_ns
            if not _is_fake(snapshot):
                out.append(snapshot)
    return out


def _json_snapshot(record: dict, snap: dict, sample: int | None, aggr: int | None,
                   previous_end: int | None) -> RecordedSnapshot:
    regions = snap.get("regions", [])
    start = np.array([_int(r["start"], text_to_bytes) for r in regions], dtype=np.uint64)
    end = np.array([_int(r["end"], text_to_bytes) for r in regions], dtype=np.uint64)
    nr_accesses = np.array([_region_samples(r, sample, aggr) for r in regions], dtype=np.int64)
    age = np.array([_region_age(r, aggr) for r in regions], dtype=np.int64)
    end_ns = _int(snap["end_time"], text_to_ns)
    start_time = snap.get("start_time")
    if start_time is not None:
        start_ns = _int(start_time, text_to_ns)
    else:
        start_ns = previous_end if previous_end is not None else end_ns
    return RecordedSnapshot(
        kdamond_index=record.get("kdamond_idx") or 0, context_index=record.get("context_idx") or 0,
        target_index=_int(record.get("target_id") or 0), start_ns=start_ns, end_ns=end_ns,
        sample_us=sample, aggr_us=aggr, start=start, end=end, nr_accesses=nr_accesses, age=age)


def _region_samples(region: dict, sample: int | None, aggr: int | None) -> int:
    """``nr_accesses.samples``, or damo's conversion of ``percent`` when only that is given."""
    acc = region.get("nr_accesses") or {}
    if acc.get("samples") is not None:
        return _int(acc["samples"])
    if acc.get("percent") is not None and sample and aggr:
        return int(text_to_percent(acc["percent"]) * (aggr / sample) / 100)
    raise ValueError(f"region without a usable nr_accesses: {region!r}")


def _region_age(region: dict, aggr: int | None) -> int:
    age = region.get("age") or {}
    if age.get("aggr_intervals") is not None:
        return _int(age["aggr_intervals"])
    if age.get("usec") is not None and aggr:
        return int(text_to_us(age["usec"]) / aggr)
    raise ValueError(f"region without a usable age: {region!r}")


def _is_fake(s: RecordedSnapshot) -> bool:
    return (s.nr_regions == 1 and int(s.start[0]) == 0 and int(s.end[0]) == 0
            and int(s.nr_accesses[0]) == -1 and int(s.age[0]) == -1)


def _read_perf_script(text: str) -> list[RecordedSnapshot]:
    """``damon_aggregated`` lines of ``perf script`` (or ``trace-cmd report``) output, grouped
    like damo does (``tracepoint.group_snapshots``); lines without a time stamp are skipped.
    Pre-5.18 lines (no age) get age -1."""
    events = [e for e in tracepoint.parse_lines(text.splitlines()) if e.time_ns is not None]
    if not events and text.strip():
        raise ValueError("text without a single damon:damon_aggregated trace line")
    out = []
    for target, snapshots in tracepoint.group_snapshots(events, missing_age=-1).items():
        ends = [s.end_ns for s in snapshots]
        for i, traced in enumerate(snapshots):
            end_ns = traced.end_ns
            if i:
                start_ns = ends[i - 1]
            elif len(ends) > 1:  # damo: the first one lasted as long as the average
                start_ns = end_ns - (ends[-1] - ends[0]) // (len(ends) - 1)
            else:
                start_ns = end_ns
            t = traced.regions
            snapshot = RecordedSnapshot(0, 0, target, start_ns, end_ns, None, None, t.start,
                                        t.end, t.nr_accesses, t.age)
            if not (_is_fake(snapshot) and i == len(snapshots) - 1):
                out.append(snapshot)
    return out
