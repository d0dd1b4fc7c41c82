"""Offload in the guest kernel (Linux 6.12: DAMON vaddr, fvaddr, paddr, tracefs): a real
``damond serve`` runs contexts as kernel kdamonds, relays their events, reads back their stats,
and leaves the kernel's tree as it found it (``pytest -m guest``, one qemu boot)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import tests.control.conftest as control_conftest
from damond.errors import DamonError
from damond.platform import kernel_damon
from damond.platform.kernel_damon import KernelDamonTree
from damond.platform.zram import zram_swap
from damond.tools.report import analysis
from tests.offload.conftest import setup_context, status_of
from tests.ops.workloads import resident_pages, workload

pytestmark = pytest.mark.guest
MiB = 1 << 20
PAGE = 4096
TREE = KernelDamonTree()
S = "kdamonds/0/contexts/0/schemes"
# the daemon starts ~10x slower under emulation
control_conftest.START_TIMEOUT_S = max(control_conftest.START_TIMEOUT_S, 120.0)


@pytest.fixture(autouse=True)
def _kernel_with_vaddr_and_free_tree():
    if not TREE.present() or kernel_damon.find_tracefs() is None:
        pytest.skip("the kernel has no DAMON sysfs or tracefs with DAMON events")
    if TREE.nr_kdamonds():
        pytest.skip("the kernel's DAMON tree is not empty")
    yield
    assert TREE.nr_kdamonds() == 0, "a test left kernel kdamonds behind"


def _instances() -> list[str]:
    root = kernel_damon.find_tracefs()
    return sorted(n for n in os.listdir(os.path.join(root, "instances"))
                  if n.startswith("damond-"))


def _trace(c, n: int, while_streaming=None) -> list[str]:
    c.send(f"trace {n}\n")
    assert c.readline() == "OK"
    lines = [c.readline()]
    if while_streaming is not None:
        while_streaming()
    lines += [c.readline() for _ in range(n - 1)]
    assert c.readline() == "OK"
    return lines


def _event_enable(daemon_pid: int) -> str:
    """The ``damon_aggregated`` enable file of damond's tracefs instance for kernel slot 0."""
    root = kernel_damon.find_tracefs()
    with open(os.path.join(root, "instances", f"damond-{daemon_pid}-k0",
                           kernel_damon.EVENT_DIR, "enable")) as f:
        return f.read().strip()


def _wait_for(what: str, cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def _hot_cold(lines: list[str], info: dict) -> tuple[float, float]:
    (h0, h1), (c0, c1) = info["ranges"]["hot"], info["ranges"]["cold"]
    snaps = analysis.snapshots_from_trace(lines)[-5:]
    assert snaps, lines[:5]
    hot = [analysis.mean_access_over(s, e, n, h0, h1) for s, e, n, _ in snaps]
    cold = [analysis.mean_access_over(s, e, n, c0, c1) for s, e, n, _ in snaps]
    return analysis.percentile(hot, 50), analysis.percentile(cold, 50)


def _pageout_scheme() -> dict:
    return {"action": "pageout", "access_pattern/sz/min": 4096,
            "access_pattern/sz/max": 2**64 - 1, "access_pattern/nr_accesses/max": 0,
            "access_pattern/age/min": 10, "access_pattern/age/max": 2**32 - 1}


def test_offloaded_hot_cold_pageout_stats_trace_and_clean_stops(start_damond):
    try:
        swap = zram_swap(256 * MiB)
        swap.__enter__()
    except DamonError as e:
        pytest.skip(f"no swap for pageout: {e}")
    try:
        with workload("hotcold", "--hot", "8M", "--cold", "48M") as (proc, info):
            d = start_damond("--offload", "auto")
            (c0, c1) = info["ranges"]["cold"]
            with d.conn() as c, d.conn() as c2:
                setup_context(c, "vaddr", proc.pid)
                c.ok("echo on > kdamonds/0/state")
                st = status_of(c, 0)
                assert st["runs"] == "kernel", st
                assert TREE.nr_kdamonds() == 1 and TREE.state(0) == "on"
                assert c.value("kdamonds/0/pid") == str(TREE.pid(0)) == st["kernel_pid"]
                assert _instances() == [f"damond-{d.proc.pid}-k0"]
                # nobody subscribes yet: the kernel's tracepoint is off in damond's instance
                assert _event_enable(d.proc.pid) == "0", st
                assert st["events"].startswith("not read (no subscriber yet)"), st
                # the kernel's events, through damond's trace: hot above cold; the tracepoint
                # is on while the trace client reads, off again once it has left
                seen = []
                lines = _trace(c, 300, lambda: seen.append(
                    (_event_enable(d.proc.pid), status_of(c2, 0)["events"])))
                assert seen[0][0] == "1" and seen[0][1].startswith("relayed to 1 "), seen
                hot, cold = _hot_cold(lines, info)
                assert hot > 3 * max(cold, 0.5), (hot, cold)
                _wait_for("the tracepoint stays on without subscribers",
                          lambda: _event_enable(d.proc.pid) == "0", 30)
                assert status_of(c, 0)["events"].startswith(
                    "not read (no subscriber since the last one left)")
                # a pageout scheme, committed online to the kernel, shrinks the cold mapping
                cold_before = resident_pages(proc.pid, c0, c1) * PAGE
                c.ok(f"echo 1 > {S}/nr_schemes")
                for rel, value in _pageout_scheme().items():
                    c.ok(f"echo {value} > {S}/0/{rel}")
                c.ok("echo commit > kdamonds/0/state")
                deadline = time.monotonic() + 120
                while resident_pages(proc.pid, c0, c1) * PAGE > 0.5 * cold_before:
                    assert time.monotonic() < deadline, "the cold mapping was not paged out"
                    time.sleep(1)
                # stats read through damond are the kernel's files
                c.ok("echo update_schemes_stats > kdamonds/0/state")
                mine = [int(c.value(f"{S}/0/stats/{f}")) for f in ("nr_tried", "sz_tried",
                                                                   "nr_applied", "sz_applied")]
                kernel = [int(TREE.read(f"0/contexts/0/schemes/0/stats/{f}"))
                          for f in ("nr_tried", "sz_tried", "nr_applied", "sz_applied")]
                assert mine == kernel and mine[3] > 0, (mine, kernel)
                # the newer state keywords go to the kernel too: its walk, its tried regions
                c.ok("echo update_schemes_tried_regions > kdamonds/0/state")
                nr = int(c.value(f"{S}/0/tried_regions/total_bytes") != "0")
                kernel_total = int(TREE.read("0/contexts/0/schemes/0/tried_regions/total_bytes"))
                assert int(c.value(f"{S}/0/tried_regions/total_bytes")) == kernel_total
                if nr:
                    assert c.value(f"{S}/0/tried_regions/0/start") == TREE.read(
                        "0/contexts/0/schemes/0/tried_regions/0/start")
                c.ok("echo update_schemes_tried_bytes > kdamonds/0/state")
                c.ok("echo update_schemes_effective_quotas > kdamonds/0/state")
                assert c.value(f"{S}/0/quotas/effective_bytes") == TREE.read(
                    "0/contexts/0/schemes/0/quotas/effective_bytes")
                # off: the kernel's tree as found
                c.ok("echo off > kdamonds/0/state")
                assert TREE.nr_kdamonds() == 0 and _instances() == []
                # on again; the kernel's kdamond turned off behind damond's back: damond
                # learns it from the thread's exit (a pidfd), gives the kernel's tree back
                c.ok("echo on > kdamonds/0/state")
                assert status_of(c, 0)["runs"] == "kernel"
                TREE.write("0/state", "off")
                _wait_for("damond did not notice its kernel kdamond stopped", lambda: "the "
                          "kernel's kdamond stopped" in status_of(c, 0).get("stop_reason", ""))
                assert TREE.nr_kdamonds() == 0 and _instances() == []
                # on again, then SIGTERM: as found again
                c.ok("echo on > kdamonds/0/state")
                assert status_of(c, 0)["runs"] == "kernel"
            assert d.stop(signal.SIGTERM) == 0
            assert TREE.nr_kdamonds() == 0 and _instances() == []
    finally:
        swap.__exit__(None, None, None)


def test_user_space_sees_hot_above_cold_too(start_damond):
    with workload("hotcold", "--hot", "8M", "--cold", "48M") as (proc, info):
        d = start_damond("--offload", "never")
        with control_conftest.Conn(d.path, timeout=180) as c:  # 1 s aggregations, emulated
            # damond's own sensing pays system calls per region: sample 10x less often
            setup_context(c, "vaddr", proc.pid, sample_us=50_000, aggr_us=1_000_000)
            c.ok("echo on > kdamonds/0/state")
            assert status_of(c, 0)["runs"] == "user space"
            assert TREE.nr_kdamonds() == 0
            hot, cold = _hot_cold(_trace(c, 80), info)
            assert hot > 3 * max(cold, 0.5), (hot, cold)


def test_restart_after_sigkill_removes_only_what_it_left(start_damond):
    with workload("hotcold", "--hot", "8M", "--cold", "16M") as (proc, _info):
        d = start_damond("--offload", "auto")
        with d.conn() as c:
            setup_context(c, "vaddr", proc.pid)
            c.ok("echo on > kdamonds/0/state")
            assert status_of(c, 0)["runs"] == "kernel"
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        assert TREE.state(0) == "on"  # the kernel's kdamond outlives the killed daemon
        assert _instances() == [f"damond-{d.proc.pid}-k0"]
        d2 = start_damond("--offload", "auto")
        assert TREE.nr_kdamonds() == 0 and _instances() == []
        assert "removed 1 kernel kdamonds of dead damond" in d2.output()


def test_someone_elses_kernel_kdamond_is_left_untouched(start_damond):
    with workload("hotcold", "--hot", "8M", "--cold", "16M") as (proc, _info):
        TREE.set_nr_kdamonds(1)
        try:
            TREE.write("0/contexts/nr_contexts", 1)
            TREE.write("0/contexts/0/operations", "vaddr")
            TREE.write("0/contexts/0/targets/nr_targets", 1)
            TREE.write("0/contexts/0/targets/0/pid_target", proc.pid)
            TREE.write("0/state", "on")
            before = {k: v for k, v in TREE.listing().items() if "/stats/" not in k}
            d = start_damond("--offload", "auto")
            with d.conn() as c:
                setup_context(c, "vaddr", proc.pid, sample_us=50_000, aggr_us=1_000_000)
                c.ok("echo on > kdamonds/0/state")
                st = status_of(c, 0)
                assert st["runs"] == "user space"
                assert "in use by someone else (kdamond 0 runs" in st["runs_why"], st
                assert any(line.startswith("offload vaddr: no (the kernel's DAMON tree is in "
                                           "use by someone else") for line in c.ok("features"))
            assert d.stop() == 0
            after = {k: v for k, v in TREE.listing().items() if "/stats/" not in k}
            assert after == before
        finally:
            if TREE.state(0) == "on":
                TREE.write("0/state", "off")
            TREE.set_nr_kdamonds(0)
