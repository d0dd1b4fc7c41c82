"""The real operation sets on this host, driven through a real ``damond serve`` and its socket.

The host kernel has no page_idle and no soft-dirty, so vaddr uses the ``smaps`` access check
(per mapping): the workload keeps its hot and cold memory in separate mappings. Pageout needs
swap: the test brings up a zram swap device for its duration.
"""

from __future__ import annotations

import re
import time

import pytest

from damond.errors import DamonError
from damond.platform import page_idle
from damond.platform.pagesize import PAGE_SIZE
from damond.platform.zram import zram_swap
from damond.tools.report import analysis
from tests.control.conftest import Conn, damond, sockdir, start_damond  # noqa: F401 - fixtures
from tests.ops.workloads import resident_pages, workload

MiB = 1 << 20
PAGE = PAGE_SIZE
TRACE_LINE = re.compile(r"^kdamond\.\d+ \d+\.\d{6}: damon:damon_aggregated: target_id=\d+ "
                        r"nr_regions=\d+ \d+-\d+: \d+ \d+$")


def trace(conn: Conn, count: int) -> list[str]:
    """``trace COUNT``: OK, then COUNT event lines (and drop notes), then OK."""
    conn.send(f"trace {count}\n")
    assert conn.readline() == "OK"
    lines = []
    while True:
        line = conn.readline()
        if line == "OK":
            return lines
        assert not line.startswith("ERR "), line
        if not line.startswith("# "):
            assert TRACE_LINE.match(line), line
            lines.append(line)


def setup_vaddr(c: Conn, pid: int) -> None:
    for line in (
        "cd /sys/kernel/mm/damon/admin",
        "echo 1 > kdamonds/nr_kdamonds",
        "echo 1 > kdamonds/0/contexts/nr_contexts",
        "echo vaddr > kdamonds/0/contexts/0/operations",
        "echo 1 > kdamonds/0/contexts/0/targets/nr_targets",
        f"echo {pid} > kdamonds/0/contexts/0/targets/0/pid_target",
        "echo on > kdamonds/0/state",
    ):
        c.ok(line)


def last_snapshots(lines: list[str], n: int):
    return analysis.snapshots_from_trace(lines)[-n:]


def test_vaddr_sees_hot_and_cold_mappings_and_pageout_reclaims_the_cold_one(start_damond):  # noqa: F811
    try:
        swap = zram_swap(512 * MiB)
        swap.__enter__()
    except DamonError as e:
        pytest.skip(f"no swap for pageout: {e}")
    try:
        with workload("hotcold", "--hot", "32M", "--cold", "128M") as (proc, info):
            # the configured 5 ms sampling, not stretched by the CPU budget: this test is about
            # what the access checks see, not about their cost
            _check_hot_cold_and_pageout(start_damond("--cpu-budget", "0"), proc.pid, info)
    finally:
        swap.__exit__(None, None, None)


def _check_hot_cold_and_pageout(d, pid: int, info: dict) -> None:
    (h0, h1), (c0, c1) = info["ranges"]["hot"], info["ranges"]["cold"]
    with d.conn() as c:
        setup_vaddr(c, pid)
        # a few aggregations: the hot mapping's regions show accesses, the cold one's none
        deadline = time.monotonic() + 60
        while True:
            snaps = last_snapshots(trace(c, 400), 3)
            hot = [analysis.mean_access_over(s, e, n, h0, h1) for s, e, n, _ in snaps]
            cold = [analysis.mean_access_over(s, e, n, c0, c1) for s, e, n, _ in snaps]
            # the cold mapping starts one page after the hot one: a region that straddles
            # the boundary can keep a few dozen cold pages counted as hot for a while, until a
            # random split isolates them (0.0024 = 80 pages of 32768); 0.05 still means at
            # most 0.25% of the cold mapping seen at the hot mapping's rate
            if snaps and min(hot) >= 10 and max(cold) < 0.05:
                break
            assert time.monotonic() < deadline, f"hot {hot} cold {cold}"
        rss_before = _rss(pid)
        cold_resident = resident_pages(pid, c0, c1) * PAGE
        assert cold_resident >= 0.9 * (c1 - c0)
        # page out regions idle for a second (10 aggregations), online
        s = "kdamonds/0/contexts/0/schemes"
        for line in (f"echo 1 > {s}/nr_schemes", f"echo pageout > {s}/0/action",
                     f"echo 4096 > {s}/0/access_pattern/sz/min",
                     f"echo {2**64 - 1} > {s}/0/access_pattern/sz/max",
                     f"echo 0 > {s}/0/access_pattern/nr_accesses/max",
                     f"echo 10 > {s}/0/access_pattern/age/min",
                     f"echo {2**32 - 1} > {s}/0/access_pattern/age/max",
                     "echo commit > kdamonds/0/state"):
            c.ok(line)
        # wait for the resident set to shrink by 80% of the cold mapping (pageout proceeds
        # window by window; the RSS counter can trail the page tables briefly)
        deadline = time.monotonic() + 90
        while rss_before - _rss(pid) < 0.8 * (c1 - c0):
            assert time.monotonic() < deadline, (
                f"RSS {rss_before} -> {_rss(pid)}; cold resident "
                f"{resident_pages(pid, c0, c1) * PAGE} of {c1 - c0}")
            time.sleep(0.5)
        assert resident_pages(pid, c0, c1) * PAGE <= 0.2 * (c1 - c0)
        assert resident_pages(pid, h0, h1) * PAGE >= 0.95 * (h1 - h0)
        deadline = time.monotonic() + 30
        while True:  # the stats files are refreshed on request only
            c.ok("echo update_schemes_stats > kdamonds/0/state")
            applied = int(c.value(f"{s}/0/stats/sz_applied"))
            if applied >= 0.8 * (c1 - c0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        tried = int(c.value(f"{s}/0/stats/sz_tried"))
        assert applied >= 0.8 * (c1 - c0)
        assert tried >= applied and int(c.value(f"{s}/0/stats/nr_applied")) > 0
        c.ok("echo off > kdamonds/0/state")


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(page_idle.available()[0], reason="this kernel has page_idle")
def test_paddr_is_refused_without_page_idle(damond):  # noqa: F811
    with damond.conn() as c:
        for line in ("echo 1 > kdamonds/nr_kdamonds", "echo 1 > kdamonds/0/contexts/nr_contexts",
                     "echo paddr > kdamonds/0/contexts/0/operations",
                     "echo 1 > kdamonds/0/contexts/0/targets/nr_targets"):
            c.ok(line)
        data, status = c.cmd("echo on > kdamonds/0/state")
        assert status.startswith("ERR EINVAL kdamonds/0/state: paddr needs idle page tracking")
        assert "CONFIG_IDLE_PAGE_TRACKING" in status
        assert c.value("kdamonds/0/state") == "off"

