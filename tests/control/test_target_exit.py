"""When a kdamond's target exits, the kdamond stops, and every reader learns why: ``status``,
the metrics, and a ``trace`` that was waiting for its events (a ``# `` note)."""

from __future__ import annotations

import re
import subprocess
import time

from damond.control.protocol import parse_stopped_note
from tests.control.conftest import needs_vaddr


def _start_on(c, pid: int) -> None:
    c.ok("echo 1 > kdamonds/nr_kdamonds")
    c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
    c.ok("echo vaddr > kdamonds/0/contexts/0/operations")
    c.ok("echo 1 > kdamonds/0/contexts/0/targets/nr_targets")
    c.ok(f"echo {pid} > kdamonds/0/contexts/0/targets/0/pid_target")
    c.ok("echo on > kdamonds/0/state")


@needs_vaddr
def test_target_exit_shows_in_status_metrics_and_a_waiting_trace(damond):
    target = subprocess.Popen(["sleep", "600"])
    try:
        with damond.conn() as c, damond.conn() as t:
            _start_on(c, target.pid)
            t.send("trace\n")
            assert t.readline() == "OK"
            target.kill()
            target.wait()
            note = None
            deadline = time.monotonic() + 30
            while note is None and time.monotonic() < deadline:
                line = t.readline()
                if line.startswith("# "):
                    note = parse_stopped_note(line)
            assert note is not None, "no stop note reached the waiting trace"
            name, reason = note
            assert name == "kdamond.0" and reason
            assert c.value("kdamonds/0/state") == "off"
            status = c.ok("status")
            assert "kdamond.0.state: off" in status
            assert f"kdamond.0.stop_reason: {reason}" in status
            metrics = "\n".join(c.ok("metrics"))
            m = re.search(r'^damond_kdamond_stop_info\{kdamond="0",reason="([^"]*)"\} 1\.0$',
                          metrics, re.M)
            assert m and m.group(1) == reason, metrics
            # the trace is still open and still served
            t.send("\n")
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()


@needs_vaddr
def test_an_unreaped_target_is_still_a_target_until_its_parent_waits(damond):
    """Linux's ``damon_va_target_valid()`` finds the task through its pid, which a zombie keeps
    until it is reaped: a parent polling its child (``while proc.poll() is None``, as the
    kernel's selftests do) may read DAMON's files until it has waited for it."""
    target = subprocess.Popen(["sleep", "600"])
    try:
        with damond.conn() as c:
            _start_on(c, target.pid)
            target.kill()  # exits, but nobody waits for it yet: a zombie
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until the process is certainly a zombie
                with open(f"/proc/{target.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
                time.sleep(0.01)
            time.sleep(0.5)  # several samples and an aggregation of the exited target
            assert c.value("kdamonds/0/state") == "on"
            c.ok("echo update_schemes_stats > kdamonds/0/state")
            target.wait()  # reaped: now it is gone
            deadline = time.monotonic() + 10
            while c.value("kdamonds/0/state") == "on" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert c.value("kdamonds/0/state") == "off"
            assert "kdamond.0.stop_reason: every target is gone" in c.ok("status")
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
