"""Where a recording's events go: a damo record file, written from a worker thread.

Formatting, compression and fsync happen in a worker thread, so they never delay a sample; the
file is replaced atomically at each flush (``RecordWriter``), so a crash or SIGKILL loses at most
the events since the last flush.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable

import trio

from damond.core.events import AggregationEvent
from damond.formats.damo.record import RecordWriter
from damond.tools.record.errors import RecordError
from damond.tools.record.progress import Counters


class FileSink:
    """Takes events from the kdamond (``push`` never blocks) and writes them to a damo record
    file from a worker thread, flushing at most ``flush_interval_s`` after the first unflushed
    event. The output is created only once monitoring runs (``open``): a failed start leaves any
    previous file alone; a previous file is kept as ``<output>.old``, as damo does.

    ``update_us``, the update interval the file states, may be set until ``open``: the source
    knows it only once it runs."""

    def __init__(self, path: str, output_type: str, flush_interval_s: float, permission: int,
                 counters: Counters, update_us: int) -> None:
        self.path = path
        self.output_type = output_type
        self.flush_interval_s = flush_interval_s
        self.permission = permission
        self.counters = counters
        self.update_us = update_us
        self.writer: RecordWriter | None = None
        self.error: OSError | None = None
        self._queue: deque[AggregationEvent] = deque()
        self._wakeup = trio.Event()
        self._ended = False

    def push(self, event: AggregationEvent) -> None:
        self.counters.count(event)
        if not self._ended:
            self._queue.append(event)
            self._wakeup.set()

    async def open(self) -> None:
        try:
            await trio.to_thread.run_sync(self._create)
        except (OSError, ValueError) as e:
            raise RecordError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}"
                              ) from None
        self._wakeup.set()

    def _create(self) -> None:
        if os.path.isfile(self.path):
            os.replace(self.path, self.path + ".old")
        # the writer never flushes by itself: run() decides, so an idle source still flushes
        self.writer = RecordWriter(self.path, self.output_type, math.inf, self.permission,
                                   self.update_us)

    def end(self) -> None:
        """No more events: run() writes what is queued, closes the file and returns."""
        self._ended = True
        self._wakeup.set()

    async def run(self, on_error: Callable[[], None]) -> None:
        dirty_since: float | None = None
        last_flush = time.monotonic()
        try:
            while True:
                if self.writer is None or not self._queue:
                    if self._ended:
                        break
                    due = (math.inf if dirty_since is None
                           else last_flush + self.flush_interval_s - time.monotonic())
                    self._wakeup = trio.Event()
                    with trio.move_on_after(max(0.0, due)):
                        await self._wakeup.wait()
                if self.writer is None:
                    continue
                batch = list(self._queue)
                self._queue.clear()
                if batch and dirty_since is None:
                    dirty_since = time.monotonic()
                flush = (dirty_since is not None
                         and time.monotonic() - last_flush >= self.flush_interval_s)
                if batch or flush:
                    await trio.to_thread.run_sync(self._write, batch, flush)
                if flush:
                    dirty_since, last_flush = None, time.monotonic()
            if self.writer is not None:
                await trio.to_thread.run_sync(self.writer.close)
        except OSError as e:
            self.error = e
            self._ended = True
            on_error()

    def _write(self, batch: list[AggregationEvent], flush: bool) -> None:
        for event in batch:
            self.writer.add(event)
        if flush:
            self.writer.flush()
