"""One OS thread per kdamond for its sampling batches, handed work with as little as possible
between the event loop and the thread.

Why not ``trio.to_thread.run_sync``: a batch goes to a thread and back once per aggregation, and
every millisecond between two batches is a millisecond the samples are not taken. Measured in
the emulated guest (issue 9), a round trip through ``to_thread`` of a function that does
nothing costs 3.5 ms (7.9 ms beside a spinning process), against 0.5 ms (1.7 ms) for two
threads signalling each other directly: the difference is trio's thread cache, context copies
and run_sync_soon, all in emulated Python. Here the event loop puts the job on a queue the
thread blocks on, and waits until the thread writes one byte to a pipe; nothing else.

Like ``to_thread.run_sync`` (without ``abandon_on_cancel``), a job is never abandoned: a
cancelled caller still waits for it to end (a batch holds the context it samples, and ends
after its current sample once its stop flag is set).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import trio

_STOP = object()


class BatchThread:
    """Runs one job at a time in its own thread; started on first use, ended by :meth:`close`
    (after which the next :meth:`run` starts a new one)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._done_r = self._done_w = -1
        self._result: tuple[Any, BaseException | None] = (None, None)
        self._busy = False

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args = job
            try:
                self._result = (fn(*args), None)
            except BaseException as e:  # handed to the caller, raised there
                self._result = (None, e)
            os.write(self._done_w, b"\0")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the thread; its value, or its exception raised here."""
        if self._busy:
            raise RuntimeError(f"{self.name}: one job at a time")
        # a caller already cancelled starts nothing (as to_thread.run_sync): a kdamond being
        # stopped must not begin another batch that would then run to its end
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._thread is None:
            self._done_r, self._done_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        self._busy = True
        try:
            self._jobs.put((fn, args))
            with trio.CancelScope(shield=True):  # never abandoned: see the module's docstring
                while True:
                    await trio.lowlevel.wait_readable(self._done_r)
                    try:
                        os.read(self._done_r, 1)
                        break
                    except BlockingIOError:  # woken without the byte: wait again
                        continue
            (value, error), self._result = self._result, (None, None)
        finally:
            self._busy = False
        if error is not None:
            raise error
        return value

    def close(self) -> None:
        """End the thread (it is idle: :meth:`run` always waits for its job) and release the
        pipe. Safe to call more than once."""
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        self._thread.join()
        self._thread = None
        os.close(self._done_r)
        os.close(self._done_w)
        self._done_r = self._done_w = -1
