"""What a recording has written so far, shown as one status line on standard error."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

import trio

from damond.core.events import AggregationEvent

#: progress refresh: in place on a terminal, and rarer as plain lines (logs, pipes)
PROGRESS_TTY_S = 1.0
PROGRESS_PLAIN_S = 5.0


@dataclass
class Counters:
    """What the progress line shows, updated as events arrive."""

    started: float = 0.0
    aggregations: int = 0
    snapshots: int = 0
    regions: int = 0  # of the latest aggregation, all targets
    dropped: int = 0  # trace events the daemon dropped for this reader

    def count(self, event: AggregationEvent) -> None:
        self.aggregations += 1
        self.snapshots += sum(1 for t in event.targets if t.nr_regions)
        self.regions = event.nr_events

    def count_dropped(self, n: int) -> None:
        """Trace events the daemon dropped (its ``# dropped N events`` notes)."""
        self.dropped += n


class Progress:
    """One status line on ``stream``, each starting with ``prog``: rewritten in place on a
    terminal about once a second, plain lines every few seconds otherwise (so logs stay
    readable)."""

    def __init__(self, prog: str, counters: Counters, stream: TextIO,
                 enabled: bool = True) -> None:
        self.prog = prog
        self.counters = counters
        self.stream = stream
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._shown = False

    def text(self) -> str:
        c = self.counters
        line = (f"{self.prog}: {time.monotonic() - c.started:.1f} s, {c.snapshots} snapshots, "
                f"{c.regions} regions")
        if c.dropped:
            line += f", {c.dropped} trace events dropped by the daemon"
        return line

    async def run(self) -> None:
        while self.enabled:
            await trio.sleep(PROGRESS_TTY_S if self.tty else PROGRESS_PLAIN_S)
            self.show()

    def show(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.text() + "\x1b[K")
            self._shown = True
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def finish(self, message: str) -> None:
        if not self.enabled:
            return
        if self._shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"{self.prog}: {message}\n")
        self.stream.flush()
