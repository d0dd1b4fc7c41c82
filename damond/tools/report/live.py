"""A kdamond of a running ``damond serve`` as a stream of aggregation events, read through its
control socket: what ``damond record --socket`` writes to a file and what ``damond report
--socket`` reports on.

Only reads: the intervals with ``cat``, then the ``trace`` stream (grouped back into
aggregations by ``tracepoint.TraceGrouper``), and the kdamond's ``state`` once a second on a
second connection, to end when the kdamond is turned off. Recording therefore never changes
the daemon's configuration, works for read-only users, and any number of recorders can watch
one kdamond. The intervals are read once: a commit that changes them while recording is not
followed (the events keep the intervals read at the start).

It is a client like ``damond ctl``: it speaks the wire text through ``damond.control.protocol``
(status and note lines, data-line escaping) and imports no server module.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from damond.control.protocol import (
    OK,
    LineSplitter,
    encode_request,
    error_text,
    is_error,
    is_note,
    parse_dropped_note,
    unescape_data_line,
)
from damond.core.events import AggregationEvent
from damond.interfaces.tracepoint import TraceGrouper

STATE_POLL_S = 1.0
Push = Callable[[AggregationEvent], None]


class DaemonSourceError(Exception):
    """A failure reported in one line; ``status`` 2 when the daemon cannot be reached (as
    ``damond ctl``), 1 otherwise."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Lines:
    """Lines of a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._lines: deque[str] = deque()
        self._splitter = LineSplitter()

    async def readline(self) -> str | None:
        """The next line without its newline; None at the end of the stream."""
        while not self._lines:
            data = await self.stream.receive_some(1 << 16)
            if not data:
                return None
            self._lines.extend(self._splitter.feed(data))
        return self._lines.popleft()


class _Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.lines = _Lines(stream)

    @classmethod
    async def open(cls, path: str) -> _Connection:
        try:
            return cls(await trio.open_unix_socket(path))
        except OSError as e:
            raise DaemonSourceError(f"cannot connect to the daemon at {path}: "
                                    f"{e.strerror or e}", status=2) from None

    async def command(self, line: str) -> list[str]:
        """Data lines (unescaped, notes left out) of a command that must answer OK."""
        try:
            await self.stream.send_all(encode_request(line))
            data = []
            while (reply := await self.lines.readline()) is not None:
                if reply == OK:
                    return data
                if is_error(reply):
                    raise DaemonSourceError(f"{line!r} failed: {error_text(reply)}")
                if not is_note(reply):
                    data.append(unescape_data_line(reply))
        except (OSError, trio.BrokenResourceError) as e:
            raise DaemonSourceError(f"connection to the daemon lost: {e}") from None
        raise DaemonSourceError(f"the daemon closed the connection during {line!r}")

    async def value(self, path: str) -> str:
        return " ".join(await self.command(f"cat {path}")).strip()

    async def number(self, path: str) -> int:
        text = await self.value(path)
        try:
            return int(text)
        except ValueError:
            raise DaemonSourceError(f"unexpected value of {path}: {text!r}") from None


class DaemonKdamond:
    """A kdamond of a running daemon: :meth:`connect` once, then :meth:`stream`."""

    def __init__(self, socket_path: str, index: int) -> None:
        self.socket_path = socket_path
        self.index = index
        self.sample_us = self.aggr_us = self.update_us = 0
        self.end_reason = ""  # set when the stream ended because the kdamond stopped

    async def connect(self) -> None:
        """Check that the kdamond runs and read its intervals (before anything is written)."""
        conn = await _Connection.open(self.socket_path)
        async with conn.stream:
            nr_kdamonds = await conn.number("kdamonds/nr_kdamonds")
            if not 0 <= self.index < nr_kdamonds:
                raise DaemonSourceError(f"the daemon has no kdamond {self.index} "
                                        f"(nr_kdamonds is {nr_kdamonds})")
            k = f"kdamonds/{self.index}"
            state = await conn.value(f"{k}/state")
            if state != "on":
                raise DaemonSourceError(f"kdamond {self.index} is not running "
                                        f"(state {state!r})")
            intervals = f"{k}/contexts/0/monitoring_attrs/intervals"
            self.sample_us = await conn.number(f"{intervals}/sample_us")
            self.aggr_us = await conn.number(f"{intervals}/aggr_us")
            self.update_us = await conn.number(f"{intervals}/update_us")

    async def stream(self, push: Push, on_dropped: Callable[[int], None] = lambda n: None
                     ) -> None:
        """Push aggregations until the kdamond stops (returns), the daemon goes away (raises
        DaemonSourceError), or cancellation. ``on_dropped`` gets the number of trace events
        the daemon dropped because this reader was slow."""
        grouper = TraceGrouper(self.index, self.sample_us, self.aggr_us)
        conn = await _Connection.open(self.socket_path)
        failure = None
        try:
            async with conn.stream, trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_state, nursery.cancel_scope)
                failure = await self._read_trace(conn, grouper, push, on_dropped)
                nursery.cancel_scope.cancel()
        finally:
            if (event := grouper.finish()) is not None:
                push(event)
        if failure is not None:
            raise DaemonSourceError(failure)

    @staticmethod
    async def _read_trace(conn: _Connection, grouper: TraceGrouper, push: Push,
                          on_dropped: Callable[[int], None]) -> str:
        """Feed trace lines to ``grouper`` until the stream ends; why it ended."""
        try:
            await conn.stream.send_all(encode_request("trace"))
            status = await conn.lines.readline()
            if status != OK:
                return f"'trace' failed: {status}"
            while (line := await conn.lines.readline()) is not None:
                if is_note(line):
                    if (dropped := parse_dropped_note(line)) is not None:
                        on_dropped(dropped)
                elif (event := grouper.feed(unescape_data_line(line))) is not None:
                    push(event)
        except (OSError, trio.BrokenResourceError) as e:
            return f"connection to the daemon lost: {e}"
        return "the daemon closed the connection"

    async def _watch_state(self, scope: trio.CancelScope) -> None:
        """End the stream when the kdamond is turned off. A failure here is left to the trace
        connection to report."""
        try:
            conn = await _Connection.open(self.socket_path)
            async with conn.stream:
                while True:
                    await trio.sleep(STATE_POLL_S)
                    if await conn.value(f"kdamonds/{self.index}/state") != "on":
                        self.end_reason = f"kdamond {self.index} stopped"
                        scope.cancel()
                        return
        except (DaemonSourceError, OSError, trio.BrokenResourceError):
            return


async def collect(socket_path: str, kdamond: int, seconds: float) -> list[AggregationEvent]:
    """A daemon's kdamond recorded in memory for ``seconds`` (or until it stops)."""
    source = DaemonKdamond(socket_path, kdamond)
    await source.connect()
    events: list[AggregationEvent] = []
    with trio.move_on_after(seconds):
        await source.stream(events.append)
    return events
