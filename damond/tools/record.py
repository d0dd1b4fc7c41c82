"""``damond record``: record DAMON's monitoring results in damo's record format.

damo users record with ``damo record`` and study the file with ``damo report``; damond writes the
same file (``damond.formats.damo.record``), so both damo's reports and damond's
(``damond report``) read it. Two sources of monitoring results:

* an embedded kdamond (``damond.api``, in this process, no daemon needed):
  ``damond record [options] -- COMMAND ARGS...`` runs the command and monitors it until it exits
  (a ``vaddr`` kdamond stops by itself when its target is gone), ``--pid PID`` monitors a running
  process, ``--ops sim`` a simulated one;
* a kdamond of a running ``damond serve`` (``--socket PATH --kdamond N``), read through its
  control socket (``damond.tools.report.live``: ``cat`` the intervals, group the ``trace``
  stream back into aggregations), so recording never changes the daemon's configuration and
  any number of recorders can watch one kdamond.

Recording ends when the monitoring ends, at ``--timeout``, or at SIGINT/SIGTERM (exit status 0:
the file is complete up to that point). A crash or SIGKILL loses at most ``--flush-interval``
seconds: everything older is in a complete file (``RecordWriter`` replaces the output
atomically at each flush). Events are written from a worker thread, so formatting, compression
and fsync never delay a sample.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from damond.core.events import AggregationEvent
from damond.errors import DamonError
from damond.formats.damo.kdamonds import DamoTextError, text_to_us
from damond.formats.damo.record import OUTPUT_TYPES, RecordWriter
from damond.tools.report.live import DaemonKdamond, DaemonSourceError

PROG = "damond record"
DEFAULT_OUTPUT = "damon.data"
OPS = ("vaddr", "fvaddr", "paddr", "sim")
#: damo's monitoring defaults (``damo start``), not the kernel's 60 s ops update: a recorded
#: process's new mappings should show up within a second
DEFAULTS = {"sample_us": 5_000, "aggr_us": 100_000, "update_us": 1_000_000,
            "min_nr_regions": 10, "max_nr_regions": 1_000}
DEFAULT_FLUSH_S = 10.0
#: progress refresh: in place on a terminal, and rarer as plain lines (logs, pipes)
PROGRESS_TTY_S = 1.0
PROGRESS_PLAIN_S = 5.0
COMMAND_GRACE_S = 3.0


class RecordError(Exception):
    """A failure reported in one line; ``status`` is the exit status (2: no daemon)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Counting and progress


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


class Progress:
    """One status line on stderr: rewritten in place on a terminal about once a second, plain
    lines every few seconds otherwise (so logs stay readable)."""

    def __init__(self, counters: Counters, stream, enabled: bool = True) -> None:
        self.counters = counters
        self.stream = stream
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._shown = False

    def text(self) -> str:
        c = self.counters
        line = (f"{PROG}: {time.monotonic() - c.started:.1f} s, {c.snapshots} snapshots, "
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
        self.stream.write(f"{PROG}: {message}\n")
        self.stream.flush()


# ---------------------------------------------------------------------------------------------
# Writing


class FileSink:
    """Takes events from the kdamond (``push`` never blocks) and writes them to a damo record
    file from a worker thread, flushing at most ``flush_interval_s`` after the first unflushed
    event. The output is created only once monitoring runs (``open``): a failed start leaves any
    previous file alone; a previous file is kept as ``<output>.old``, as damo does."""

    def __init__(self, path: str, output_type: str, flush_interval_s: float, permission: int,
                 counters: Counters) -> None:
        self.path = path
        self.output_type = output_type
        self.flush_interval_s = flush_interval_s
        self.permission = permission
        self.counters = counters
        self.update_us = DEFAULTS["update_us"]
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


# ---------------------------------------------------------------------------------------------
# Source 1: an embedded kdamond


def _int_or_us(text: str) -> int:
    try:
        return int(text_to_us(text))
    except (DamoTextError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a time in microseconds: {text!r}") from None


def _region(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        region = int(start, 0), int(end, 0)
    except ValueError:
        region = None
    if not sep or region is None or region[0] >= region[1]:
        raise argparse.ArgumentTypeError(f"expected START-END with START < END, not {text!r}")
    return region


def build_context(args: argparse.Namespace, pid: int):
    """The monitoring context the options describe, for ``pid`` (0: none)."""
    from damond import api
    from damond.core.spec import AttrsSpec

    attrs = AttrsSpec(**{k: getattr(args, k) or v for k, v in DEFAULTS.items()})
    return api.context(args.ops, attrs=attrs,
                       targets=[api.target(pid=pid, regions=args.regions or None)])


async def _wait_exit(proc: subprocess.Popen) -> None:
    while proc.poll() is None:
        await trio.sleep(0.1)


async def record_embedded(args: argparse.Namespace, pid: int, proc: subprocess.Popen | None,
                          sink: FileSink) -> str:
    """Monitor with an in-process kdamond until it stops (its target process is gone) or, for
    operation sets without a process target, until the command exits; why it ended."""
    from damond import api

    sink.update_us = args.update_us or DEFAULTS["update_us"]
    async with api.session(seed=args.seed) as session:
        try:
            kd = await session.start(build_context(args, pid))
        except DamonError as e:
            raise RecordError(f"cannot start monitoring ({args.ops}): {e}") from None
        kd.subscribe(sink.push)
        await sink.open()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when_set, kd.finished, nursery.cancel_scope)
            if proc is None or pid:  # a process target: the kdamond stops when it is gone
                await trio.sleep_forever()
            await _wait_exit(proc)  # paddr, sim: the command only sets the duration
            nursery.cancel_scope.cancel()
        if kd.finished.is_set():
            reason = f"monitoring ended ({kd.stop_reason})"
        else:
            reason = "the command exited"
        if proc is not None and proc.poll():
            reason += f"; the command exited with status {proc.returncode}"
        return reason


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def start_command(command: list[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(command)
    except OSError as e:
        raise RecordError(f"cannot run {command[0]!r}: {e.strerror or e}") from None


def end_command(proc: subprocess.Popen) -> None:
    """Terminate the recorded command if it outlives the recording (timeout, signal)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(COMMAND_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


# ---------------------------------------------------------------------------------------------
# Running a recording


Failure = RecordError | DaemonSourceError


def _first(group: BaseExceptionGroup) -> Failure:
    """The first failure of a group (trio nurseries wrap what their bodies raise)."""
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


def _counting_drops(counters: Counters) -> Callable[[int], None]:
    def count(n: int) -> None:
        counters.dropped += n

    return count


async def _stop_on_signals(scope: trio.CancelScope, caught: list[int]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()


async def _record(args: argparse.Namespace, proc: subprocess.Popen | None, pid: int) -> int:
    counters = Counters(started=time.monotonic())
    sink = FileSink(args.output, args.output_type, args.flush_interval,
                    args.output_permission, counters)
    daemon = None
    if args.daemon:
        daemon = DaemonKdamond(args.socket_path, args.kdamond or 0)
        await daemon.connect()
        sink.update_us = daemon.update_us
    progress = Progress(counters, sys.stderr, enabled=not args.quiet)
    stop = trio.CancelScope(deadline=trio.current_time() + args.timeout if args.timeout
                            else math.inf)
    caught: list[int] = []
    error: Failure | None = None
    reason = "stopped"

    async def source() -> None:
        nonlocal error, reason
        try:
            with stop:
                if daemon is not None:
                    await sink.open()
                    await daemon.stream(sink.push, _counting_drops(counters))
                    reason = daemon.end_reason or reason
                else:
                    reason = await record_embedded(args, pid, proc, sink)
        except* (RecordError, DaemonSourceError) as group:
            error = _first(group)

    async with trio.open_nursery() as outer:
        outer.start_soon(sink.run, stop.cancel)
        async with trio.open_nursery() as inner:
            inner.start_soon(_stop_on_signals, stop, caught)
            inner.start_soon(progress.run)
            await source()
            inner.cancel_scope.cancel()
        sink.end()
    if stop.cancelled_caught and error is None:
        if caught:
            reason = "interrupted by " + signal.Signals(caught[0]).name
        elif args.timeout:
            reason = f"timeout of {args.timeout:g} s"
    if sink.error is not None:
        error = RecordError(f"writing {args.output} failed: {sink.error.strerror or sink.error}")
    if sink.writer is not None:
        progress.finish(f"{reason}; {counters.snapshots} snapshots "
                        f"({counters.aggregations} aggregations) in "
                        f"{time.monotonic() - counters.started:.1f} s written to {args.output}")
    if error is not None:
        raise error
    return 0


def _check(args: argparse.Namespace) -> None:
    """Option combinations argparse cannot express."""
    command = list(args.command_argv or [])
    if command[:1] == ["--"]:
        command = command[1:]
    args.command_argv = command
    args.daemon = args.socket is not None or args.kdamond is not None
    sources = sum([bool(command), args.pid is not None, args.daemon])
    if sources > 1:
        raise RecordError("give one of: a COMMAND, --pid, or --socket/--kdamond", 2)
    if args.daemon:
        from damond.client import client_socket_path

        args.socket_path = client_socket_path(args.socket)
        given = [k for k in DEFAULTS if getattr(args, k) is not None]
        if given or args.ops is not None or args.regions:
            raise RecordError("the daemon's kdamond has its own attributes; configure it "
                              "through its control socket", 2)
        return
    args.ops = args.ops or "vaddr"
    if args.ops in ("vaddr", "fvaddr") and not command and args.pid is None:
        raise RecordError(f"{args.ops} monitors a process: give a COMMAND or --pid", 2)
    if args.ops == "fvaddr" and not args.regions:
        raise RecordError("fvaddr monitors fixed ranges: give them with --regions", 2)
    if args.ops in ("paddr", "sim") and args.pid is not None:
        raise RecordError(f"{args.ops} has no process target: --pid does not apply", 2)


def run(args: argparse.Namespace) -> int:
    """The ``record`` subcommand (argparse ``func``)."""
    proc = None
    try:
        _check(args)
        pid = 0
        if args.command_argv:
            proc = start_command(args.command_argv)
            pid = proc.pid if args.ops in ("vaddr", "fvaddr") else 0
        elif args.pid is not None:
            pid = args.pid
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise RecordError(f"no process with pid {pid}") from None
            except PermissionError:
                pass
        return trio.run(_record, args, proc, pid)
    except (RecordError, DaemonSourceError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if proc is not None:
            end_command(proc)


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"not an octal file mode: {text!r}")
    return mode


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="FILE",
                     help=f"record file (default {DEFAULT_OUTPUT}; an existing one is kept "
                          "as FILE.old)")
    out.add_argument("--output-type", choices=OUTPUT_TYPES, default="json_compressed",
                     help="damo's record types (default json_compressed)")
    out.add_argument("--output-permission", type=_mode, default=0o600, metavar="MODE",
                     help="octal file mode (default 600, like damo)")
    out.add_argument("--flush-interval", type=_positive, default=DEFAULT_FLUSH_S,
                     metavar="SECONDS",
                     help="make the file complete at least this often: a crash loses at most "
                          f"the last interval (default {DEFAULT_FLUSH_S:g})")
    out.add_argument("--timeout", type=_positive, metavar="SECONDS",
                     help="stop recording after this long (default: until monitoring ends "
                          "or SIGINT)")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    src = p.add_argument_group("what to monitor (embedded kdamond)")
    src.add_argument("--pid", type=int, help="monitor this running process")
    src.add_argument("--ops", choices=OPS,
                     help="operation set (default vaddr; sim needs no target)")
    src.add_argument("-r", "--regions", type=_region, nargs="+", metavar="START-END",
                     help="initial monitoring regions (required for fvaddr)")
    for name, default in DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        if name.endswith("_us"):
            src.add_argument(flag, type=_int_or_us, metavar="US",
                             help=f"default {default} (damo's; units like 5ms work)")
        else:
            src.add_argument(flag, type=int, metavar="N", help=f"default {default}")
    src.add_argument("--seed", type=int, help="seed of the random generators")
    dmn = p.add_argument_group("or: a kdamond of a running daemon")
    dmn.add_argument("--socket", metavar="PATH",
                     help="the daemon's control socket (default: $DAMOND_SOCKET, your own "
                          "daemon's, then /run/damond/damond.sock)")
    dmn.add_argument("--kdamond", type=int, metavar="N", help="kdamond index (default 0)")
    p.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS",
                   help="run this command and monitor it until it exits")


DESCRIPTION = ("Record DAMON monitoring results in damo's record format (damo report and "
               "damond report read it): of a COMMAND run until it exits, of a running process "
               "(--pid), of a simulated one (--ops sim), or of a kdamond of a running damond "
               "(--socket/--kdamond). SIGINT or --timeout ends the recording (exit status 0).")


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add ``record`` to the ``damond`` command's subparsers."""
    p = subparsers.add_parser("record", help="record monitoring results (damo's format)",
                              description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from damond.service import logs

    args = build_parser().parse_args(argv)
    logs.configure("warning")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
