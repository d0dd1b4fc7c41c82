"""sd_notify against a real listener: READY only when everything is up, STATUS, the watchdog,
RELOADING with MONOTONIC_USEC, STOPPING, and a startup failure."""

from __future__ import annotations

import os
import signal
import time
import uuid

from tests.service.conftest import (
    NotifyListener,
    base_env,
    samples,
    sim_kdamond,
    write_config,
)


def test_ready_only_once_the_socket_listens_and_the_kdamonds_run(serve, notify, config_path):
    write_config(config_path, [sim_kdamond(seed=1), sim_kdamond(seed=2)])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    _, ready = notify.wait_for(lambda f: f.get("READY") == "1")
    # nothing was retried or waited for: at READY the socket answers and both kdamonds run
    with d.conn() as c:
        assert c.value("kdamonds/0/state") == "on"
        assert c.value("kdamonds/1/state") == "on"
        assert c.value("kdamonds/0/pid") == str(d.pid)
    assert "2 of 2 kdamonds running" in ready["STATUS"]
    assert d.socket_path in ready["STATUS"]
    # STATUS= told what was going on before READY, and READY came exactly once
    before = [f for _, f in notify.messages[:notify.messages.index((_, ready))]]
    assert any("STATUS" in f for f in before)
    assert not any("READY" in f for f in before)
    notify.drain(0.2)
    assert notify.fields("READY") == ["1"]


def test_abstract_notify_socket(serve):
    listener = NotifyListener(f"@damond-test-{uuid.uuid4().hex}")
    try:
        serve(env=base_env(NOTIFY_SOCKET=listener.address))
        _, ready = listener.wait_for(lambda f: "READY" in f)
        assert "0 of 0 kdamonds running" in ready["STATUS"]
    finally:
        listener.close()


def test_watchdog_pings_at_half_the_interval(serve, notify):
    usec = 200_000
    serve(env=base_env(NOTIFY_SOCKET=notify.address, WATCHDOG_USEC=str(usec)),
          shell_prefix="export WATCHDOG_PID=$$; ")
    notify.wait_for(lambda f: "READY" in f)
    first = len(notify.messages)
    notify.drain(1.0)
    pings = [t for t, f in notify.messages[first:] if f.get("WATCHDOG") == "1"]
    assert 7 <= len(pings) <= 13, pings  # one per 100 ms
    gaps = [(b - a) / 1e6 for a, b in zip(pings, pings[1:], strict=False)]
    assert 0.07 < sum(gaps) / len(gaps) < 0.13, gaps


def test_no_watchdog_pings_for_another_pid(serve, notify):
    serve(env=base_env(NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="100000",
                       WATCHDOG_PID="1"))
    notify.wait_for(lambda f: "READY" in f)
    notify.drain(0.4)
    assert notify.fields("WATCHDOG") == []


def test_reload_sends_reloading_with_monotonic_usec_then_ready(serve, notify, config_path):
    write_config(config_path, [sim_kdamond()])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    mark = len(notify.messages)
    sent_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.signal(signal.SIGHUP)
    received_us, reloading = notify.wait_for(lambda f: "RELOADING" in f, after=mark)
    assert reloading["RELOADING"] == "1"
    # the daemon read CLOCK_MONOTONIC between our kill() and our recv()
    assert sent_us <= int(reloading["MONOTONIC_USEC"]) <= received_us
    assert "reloading" in reloading["STATUS"]
    _, ready = notify.wait_for(lambda f: "READY" in f, after=mark)
    assert "reloaded: committed 0" in ready["STATUS"]


def test_sigterm_sends_stopping_and_exits_cleanly(serve, notify, config_path):
    write_config(config_path, [sim_kdamond()])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    with d.conn() as c:
        assert samples(c) > 0
    d.signal(signal.SIGTERM)
    _, stopping = notify.wait_for(lambda f: "STOPPING" in f)
    assert stopping["STOPPING"] == "1" and "SIGTERM" in stopping["STATUS"]
    assert d.wait() == 0
    assert not os.path.exists(d.socket_path)
    assert "kdamond stopped" in d.stderr()


def test_startup_failure_is_reported_and_never_ready(serve, notify, config_path):
    write_config(config_path, [sim_kdamond(min_regions=1)])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    assert d.wait() == 1
    notify.drain(0.1)
    assert notify.fields("READY") == []
    [status] = [s for s in notify.fields("STATUS") if s.startswith("failed")]
    assert "min_nr_regions 1 is below 3" in status
    assert notify.fields("ERRNO") == ["22"]  # EINVAL
    assert not os.path.exists(d.socket_path)


def test_status_follows_kdamonds_that_stop_later(serve, notify, config_path):
    write_config(config_path, [sim_kdamond()])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    mark = len(notify.messages)
    with d.conn() as c:
        c.ok("echo off > kdamonds/0/state")
    _, msg = notify.wait_for(lambda f: "0 of 1 kdamonds running" in f.get("STATUS", ""),
                             after=mark, timeout=5)
    assert "READY" not in msg
