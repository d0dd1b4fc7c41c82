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
