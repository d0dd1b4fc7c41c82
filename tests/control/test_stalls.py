"""One client's command must not stall the kdamonds or the other clients.

With 65,536 regions in the tree (any admin can write that many), ``dump``, ``tree`` and ``ls``
produce megabytes of text: they run in a worker thread, so a running kdamond keeps its
sampling schedule. A ``commit`` waits for the kdamond's next sample (20 s at a 20 s sampling
interval): it waits outside the server's gate, so other clients are answered meanwhile.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.control.conftest import Conn

#: the issue's bound on a running kdamond's sampling lateness while a big reply is produced
MAX_LATENESS_MS = 50.0
NR_REGIONS = 65536


def _lateness(c: Conn) -> dict[str, float]:
    [line] = c.ok("lateness")
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:])}


def _window(c: Conn, first: int) -> dict[str, float]:
    [line] = c.ok(f"lateness {first}")
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:])}


@pytest.fixture
def big_tree(damond):
    """kdamond 0: one target with 65,536 regions (not running); kdamond 1: sim, running."""
    with damond.conn() as c:
        c.ok("echo 2 > kdamonds/nr_kdamonds")
        c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
        c.ok("echo 1 > kdamonds/0/contexts/0/targets/nr_targets")
        c.ok(f"echo {NR_REGIONS} > kdamonds/0/contexts/0/targets/0/regions/nr_regions")
        k = "kdamonds/1/contexts"
        c.ok(f"echo 1 > {k}/nr_contexts")
        c.ok(f"echo sim > {k}/0/operations")
        c.ok(f"echo 1 > {k}/0/targets/nr_targets")
        c.ok("echo on > kdamonds/1/state")
        time.sleep(0.5)
    return damond


@pytest.mark.slow
@pytest.mark.parametrize("command, min_lines", [
    ("dump", 4 * NR_REGIONS),
    ("tree /", 3 * NR_REGIONS),
    ("ls kdamonds/0/contexts/0/targets/0/regions", NR_REGIONS),
])
def test_big_replies_do_not_stall_sampling(big_tree, command, min_lines):
    """The reply is produced twice and the better run must meet the bound: a stall (the
    bug this guards against cost 4.25 s) shows in both, while one scheduling hiccup of this
    shared 2-core machine (58 and 70 ms, in two of six full runs on 2026-12-06) shows in one
    only."""
    windows = []
    for _attempt in range(2):
        with big_tree.conn() as c, big_tree.conn() as other:
            first = int(_lateness(c)["samples"]) + 1
            t0 = time.monotonic()
            data = c.ok(command)
            took = time.monotonic() - t0
            window = _window(other, first)
        assert len(data) >= min_lines
        assert window["n"] >= 1, window
        windows.append((window["max_ms"], took, window))
        if window["max_ms"] < MAX_LATENESS_MS:
            break
    assert min(w[0] for w in windows) < MAX_LATENESS_MS, (command, windows)


@pytest.mark.slow
def test_a_commit_waiting_for_a_slow_kdamond_blocks_no_other_client(damond):
    with damond.conn() as c:
        k = "kdamonds/0/contexts/0"
        c.ok("echo 1 > kdamonds/nr_kdamonds")
        c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
        c.ok(f"echo sim > {k}/operations")
        c.ok(f"echo 1 > {k}/targets/nr_targets")
        for name in ("sample_us", "aggr_us"):
            c.ok(f"echo 20000000 > {k}/monitoring_attrs/intervals/{name}")
        c.ok(f"echo 20000000 > {k}/monitoring_attrs/intervals/update_us")
        c.ok("echo on > kdamonds/0/state")
    done: dict[str, object] = {}

    def waiter(command: str) -> None:
        with Conn(damond.path, timeout=60) as w:
            t0 = time.monotonic()
            done[command] = (w.cmd(command)[1], time.monotonic() - t0)

    waiters = [threading.Thread(target=waiter, args=(f"echo {cmd} > kdamonds/0/state",))
               for cmd in ("commit", "update_schemes_stats")]
    for w in waiters:
        w.start()
    time.sleep(0.5)
    try:
        with damond.conn() as c:
            t0 = time.monotonic()
            for line in ("cat kdamonds/0/state", "status", "ls", "pwd", "echo 3 > "
                         "kdamonds/0/contexts/0/monitoring_attrs/nr_regions/min"):
                c.cmd(line)
            answered = time.monotonic() - t0
        assert answered < 2.0, answered
        assert not done, f"the waits should still be waiting for the next sample: {done}"
    finally:
        with damond.conn() as c:  # stopping ends the waits (ECANCELED) or they completed
            c.cmd("echo off > kdamonds/0/state")
        for w in waiters:
            w.join(timeout=30)
