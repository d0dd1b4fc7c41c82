"""The monitoring budget on a real ``damond serve`` watching real processes on this host.

The access check is whatever the host allows (``auto``); the targets are real programs
writing real memory (``damond.tools.workload`` and a small program that frees its memory on a
signal). The daemon's CPU share is read from ``/proc/PID/stat``, the effective intervals and the
budget's facts from ``status``. Bounds are loose on purpose (2 shared cores, other work running):
the budget's exact arithmetic is tested in ``tests/core/test_budget.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.control.conftest import Conn, sockdir, start_damond  # noqa: F401 - fixtures

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: 4 samples per aggregation: the budget decides at the first aggregation boundary after 20
#: samples, so a stretched window stays short enough for a test
ATTRS = {"sample_us": 5000, "aggr_us": 20000}

#: A target whose memory can be dropped: writes SIZE bytes in a loop until SIGUSR1, then
#: unmaps them and idles (its sampling cost falls to that of an idle process).
SHRINKING = r"""
import mmap, signal, sys, time
size = int(sys.argv[1])
m = mmap.mmap(-1, size)
chunk = b"\x01" * (1 << 20)
freed = False
def free(*_):
    global freed
    freed = True
signal.signal(signal.SIGUSR1, free)
print("ready", flush=True)
while not freed:
    for off in range(0, size, len(chunk)):
        m[off:off + len(chunk)] = chunk
m.close()
while True:
    time.sleep(1)
"""


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status(c: Conn) -> dict[str, str]:
    prefix = "kdamond.0."
    return dict(line.removeprefix(prefix).split(": ", 1) for line in c.ok("status")
                if line.startswith(prefix))


def _monitor(c: Conn, pid: int, attrs: dict[str, int] = ATTRS) -> None:
    k = "kdamonds/0"
    c.ok("echo 1 > kdamonds/nr_kdamonds")
    c.ok(f"echo 1 > {k}/contexts/nr_contexts")
    c.ok(f"echo vaddr > {k}/contexts/0/operations")
    for name, value in attrs.items():
        c.ok(f"echo {value} > {k}/contexts/0/monitoring_attrs/intervals/{name}")
    c.ok(f"echo 1 > {k}/contexts/0/targets/nr_targets")
    c.ok(f"echo {pid} > {k}/contexts/0/targets/0/pid_target")
    c.ok(f"echo on > {k}/state")


def _wait_for(c: Conn, predicate, timeout: float, what: str) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        st = _status(c)
        if st and predicate(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; status {st}")
        time.sleep(0.2)


def _daemon_share(pid: int, seconds: float) -> float:
    c0, t0 = _cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    return (_cpu_s(pid) - c0) / (time.monotonic() - t0)


@pytest.fixture
def writer() -> Iterator[int]:
    """``damond.tools.workload writer``: 64 MiB written over and over."""
    proc = subprocess.Popen([sys.executable, "-m", "damond.tools.workload", "writer",
                             "--hot", "64M"], stdout=subprocess.PIPE, text=True)
    try:
        yield json.loads(proc.stdout.readline())["pid"]
    finally:
        proc.kill()
        proc.wait()


def test_budget_stretches_the_interval_and_holds_the_share(start_damond, writer):  # noqa: F811
    d = start_damond()  # the default budget: 0.05 of a CPU per kdamond
    with d.conn() as c:
        _monitor(c, writer)
        st = _wait_for(c, lambda s: int(s["budget.changes"]) >= 1, 30, "a budget decision")
        assert st["budget.cpu_budget"] == "0.05"
        assert st["budget.state"] == "on"
        eff = int(st["effective_sample_us"])
        assert eff > 5 * ATTRS["sample_us"], st
        # samples per aggregation are kept: both intervals stretch by the same factor
        assert int(st["effective_aggr_us"]) * ATTRS["sample_us"] == pytest.approx(
            eff * ATTRS["aggr_us"], rel=1e-3)
        assert st["sample_us"] == str(ATTRS["sample_us"])  # the configured value is kept
        share = _daemon_share(d.proc.pid, 6.0)
        st = _status(c)
        metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in c.ok("metrics")
                   if line.startswith("damond_kdamond_") and 'kdamond="0"' in line}
    assert metrics['damond_kdamond_effective_sample_seconds{kdamond="0"}'] == pytest.approx(
        int(st["effective_sample_us"]) / 1e6)
    assert metrics['damond_kdamond_cpu_budget_ratio{kdamond="0"}'] == 0.05
    # the charged share counts the target's perturbation too: the daemon's own CPU is below
    # it; twice the budget leaves room for the event loop and a loaded machine
    assert share < 2 * 0.05, (share, st)
    assert "sampling interval stretched by the CPU budget" in d.output()


def test_zero_budget_samples_as_configured(start_damond, writer):  # noqa: F811
    d = start_damond("--cpu-budget", "0")
    with d.conn() as c:
        _monitor(c, writer)
        # three times the samples after which a budget would have decided
        _wait_for(c, lambda s: int(s["samples"]) >= 60, 30, "60 samples")
        share = _daemon_share(d.proc.pid, 4.0)
        st = _status(c)
    assert st["effective_sample_us"] == str(ATTRS["sample_us"])
    assert st["budget.stretch"] == "1"
    assert st["budget.state"].startswith("disabled")
    assert int(st["budget.changes"]) == 0
    # the same target and attributes cost more than the budget would have allowed (the
    # daemon's share alone, on a machine that may be busy with other work)
    assert share > 0.05, (share, st)
    assert float(st["budget.charged_share"]) > 0.05


def test_budget_returns_to_the_configured_interval(start_damond):  # noqa: F811
    proc = subprocess.Popen([sys.executable, "-c", SHRINKING, str(256 << 20)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # half a CPU: an idle target fits at 20 ms sampling, 256 MiB rewritten in a loop does
        # not (96 MiB cost 0.44 of a CPU on an idle machine: too close to the budget)
        d = start_damond("--cpu-budget", "0.5")
        attrs = {"sample_us": 20000, "aggr_us": 80000}
        with d.conn() as c:
            _monitor(c, proc.pid, attrs)
            _wait_for(c, lambda s: float(s["budget.stretch"]) > 1.5, 30, "a stretch")
            proc.send_signal(signal.SIGUSR1)
            st = _wait_for(c, lambda s: s["effective_sample_us"] == str(attrs["sample_us"]),
                           30, "back to the configured interval")
            changes = int(st["budget.changes"])
            time.sleep(4.0)
            st = _status(c)
        assert st["effective_sample_us"] == str(attrs["sample_us"]), st
        assert int(st["budget.changes"]) == changes, "it went back and forth"
        assert "sampling interval back to the configured one" in d.output()
    finally:
        proc.kill()
        proc.wait()
