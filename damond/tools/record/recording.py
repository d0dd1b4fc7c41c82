"""One recording: events from a source into the file, until the source, a timeout or a signal
ends it.

The source is an embedded kdamond (``damond.tools.record.embedded``) or a kdamond of a running
daemon, read through its control socket (``damond.tools.report.live``: ``cat`` the intervals,
group the ``trace`` stream back into aggregations). SIGINT, SIGTERM and ``--timeout`` end a
recording normally: the file is complete up to that point and the exit status is 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import time

import trio

from damond.tools.record.command import wait_exit
from damond.tools.record.embedded import DEFAULTS, record_embedded
from damond.tools.record.errors import RecordError
from damond.tools.record.progress import Counters, Progress
from damond.tools.record.sink import FileSink
from damond.tools.report.live import DaemonKdamond, DaemonSourceError

Failure = RecordError | DaemonSourceError


def _first(group: BaseExceptionGroup) -> Failure:
    """The first failure of a group (trio nurseries wrap what their bodies raise)."""
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


async def _stop_on_signals(scope: trio.CancelScope, caught: list[int]) -> None:
    """Cancel ``scope`` at SIGINT or SIGTERM, noting which signal in ``caught``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()


async def record(args: argparse.Namespace, proc: subprocess.Popen | None, pid: int,
                 prog: str) -> int:
    """Record what the options (checked by the command line) describe; ``proc`` is the started
    COMMAND, if any, and ``pid`` the process to monitor (0: none). Returns 0 or raises the
    first failure (RecordError, DaemonSourceError); ``prog`` starts the progress lines."""
    counters = Counters(started=time.monotonic())
    sink = FileSink(args.output, args.output_type, args.flush_interval,
                    args.output_permission, counters, DEFAULTS["update_us"])
    daemon = None
    if args.daemon:
        daemon = DaemonKdamond(args.socket_path, args.kdamond or 0)
        await daemon.connect()
        sink.update_us = daemon.update_us
    progress = Progress(prog, counters, sys.stderr, enabled=not args.quiet)
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
                    await daemon.stream(sink.push, counters.count_dropped)
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
            if proc is not None and daemon is not None:
                # reap the command as soon as it exits (record_embedded does it once its
                # kdamond runs): a zombie is still a valid target, as in the kernel
                inner.start_soon(wait_exit, proc)
            await source()
            inner.cancel_scope.cancel()
        sink.end()
    if sink.error is not None:
        reason = "stopped by the write failure below"
    elif stop.cancelled_caught and error is None:
        if caught:
            reason = "interrupted by " + signal.Signals(caught[0]).name
        elif args.timeout:
            reason = f"timeout of {args.timeout:g} s"
    if sink.error is not None:
        error = RecordError(f"writing {args.output} failed: {sink.error.strerror or sink.error}")
    if sink.writer is not None:
        saved = (f"; {args.output} holds those flushed before it" if sink.error is not None
                 else f" written to {args.output}")
        progress.finish(f"{reason}; {counters.snapshots} snapshots "
                        f"({counters.aggregations} aggregations) in "
                        f"{time.monotonic() - counters.started:.1f} s{saved}")
    if error is not None:
        raise error
    return 0
