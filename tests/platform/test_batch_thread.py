"""The kdamond's batch thread: jobs run in one other OS thread, their values and exceptions
come back to the event loop, a cancelled caller still waits for its job, and the thread ends
and can start again."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from damond.platform.batch_thread import BatchThread


async def test_a_job_runs_in_the_thread_and_returns_its_value():
    bt = BatchThread("test")
    try:
        here = threading.get_ident()
        first = await bt.run(lambda x: (threading.get_ident(), x * 2), 21)
        second = await bt.run(lambda: threading.get_ident())
        assert first[1] == 42
        assert first[0] != here and first[0] == second  # one thread, kept between jobs
    finally:
        bt.close()


async def test_an_exception_is_raised_in_the_caller_and_the_thread_goes_on():
    bt = BatchThread("test")
    try:
        def fail():
            raise ValueError("from the thread")

        with pytest.raises(ValueError, match="from the thread"):
            await bt.run(fail)
        assert await bt.run(lambda: "still here") == "still here"
    finally:
        bt.close()


async def test_a_cancelled_caller_waits_for_its_job():
    bt = BatchThread("test")
    ended = []

    def slow():
        time.sleep(0.3)
        ended.append(time.monotonic())

    try:
        with trio.move_on_after(0.05) as scope:
            await bt.run(slow)  # the cancellation waits for the job...
            assert ended, "the caller returned before its job ended"
            await trio.sleep(0)  # ...and is delivered at the caller's next checkpoint
        assert scope.cancelled_caught
    finally:
        bt.close()


async def test_a_caller_already_cancelled_starts_nothing():
    bt = BatchThread("test")
    started = []
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            await bt.run(started.append, 1)
        assert scope.cancelled_caught and not started
    finally:
        bt.close()


async def test_close_ends_the_thread_and_a_later_run_starts_another():
    bt = BatchThread("test")
    first = await bt.run(threading.get_ident)
    before = {t.ident for t in threading.enumerate()}
    assert first in before
    bt.close()
    bt.close()  # twice is harmless
    assert first not in {t.ident for t in threading.enumerate()}
    try:
        assert await bt.run(lambda: "again") == "again"
    finally:
        bt.close()
