"""damond.service.systemd in-process: message format, addresses, the watchdog interval."""

from __future__ import annotations

import os
import socket
import time

import trio

from damond.service.systemd import (
    Notifier,
    format_message,
    monotonic_usec,
    watchdog,
    watchdog_interval,
)


def test_message_format_keeps_every_value_on_one_line():
    assert format_message({"READY": 1, "STATUS": "ok"}) == b"READY=1\nSTATUS=ok\n"
    # a status quoting a broken file cannot smuggle in another assignment
    assert format_message({"STATUS": "bad\nREADY=1"}) == b"STATUS=bad READY=1\n"


def test_without_notify_socket_nothing_is_sent():
    env = {}
    n = Notifier.from_environment(env)
    assert not n.enabled and n.ready("x") is False


def test_notify_socket_is_consumed_and_messages_arrive(tmp_path):
    path = str(tmp_path / "n")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    try:
        env = {"NOTIFY_SOCKET": path}
        n = Notifier.from_environment(env)
        assert env == {}
        before = monotonic_usec()
        assert n.reloading("reloading x")
        fields = dict(line.split("=", 1) for line in rx.recv(4096).decode().splitlines())
        assert fields["RELOADING"] == "1" and fields["STATUS"] == "reloading x"
        assert before <= int(fields["MONOTONIC_USEC"]) <= monotonic_usec()
        assert abs(monotonic_usec() - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 1e6
        n.close()
    finally:
        rx.close()


def test_a_gone_manager_is_not_an_error(tmp_path):
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.ready() is False
    assert n.watchdog() is False  # logged once, never raised


def test_watchdog_interval():
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": me}
    watchdog_interval(env)
    assert env == {}


async def test_watchdog_task_pings_on_schedule(autojump_clock):
    sent = []

    class Fake(Notifier):
        def watchdog(self) -> bool:
            sent.append(trio.current_time())
            return True

    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog, Fake(None), 5.0)
        await trio.sleep(21)
        nursery.cancel_scope.cancel()
    assert [round(t - sent[0]) for t in sent] == [0, 5, 10, 15, 20]
