"""Quota goal metrics read from this machine (``damond.platform.memstat``), checked against the
files themselves."""

from __future__ import annotations

import os

import pytest

from damond.errors import DamonError
from damond.platform import memstat
from damond.platform.meminfo import read_meminfo


def test_psi_total_is_the_some_line_total(tmp_path):
    p = tmp_path / "memory"
    p.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=4321\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=99\n")
    assert memstat.some_mem_psi_total_us(str(p)) == 4321
    assert memstat.some_mem_psi_total_us(str(tmp_path / "missing")) == 0  # no PSI: 0


@pytest.mark.skipif(not os.path.exists("/sys/devices/system/node/node0/meminfo"),
                    reason="no NUMA node sysfs files on this machine")
def test_node_bp_from_node_meminfo():
    info = memstat.node_meminfo(0)
    used = memstat.node_mem_bp(0, used=True)
    free = memstat.node_mem_bp(0, used=False)
    assert 0 <= used <= 10_000 and 0 <= free <= 10_000
    assert abs(used + free - 10_000) <= 1 + 10_000 * 64 * 4096 // info["MemTotal"]
    with pytest.raises(DamonError) as e:
        memstat.node_meminfo(4095)  # a node this machine does not have
    assert e.value.errno_name == "ENOENT"


def test_active_and_inactive_bp_split_the_lru():
    a = memstat.in_active_mem_bp(active=True)
    i = memstat.in_active_mem_bp(active=False)
    assert 9_998 <= a + i <= 10_000
    info = read_meminfo()
    assert abs(a - info["Active"] * 10_000 // (info["Active"] + info["Inactive"])) <= 50


def test_missing_cgroup_uses_nothing():
    assert memstat.node_memcg_bp("/no-such-cgroup-damond", 0, used=True) == 0
    assert memstat.node_memcg_bp("/no-such-cgroup-damond", 0, used=False) == 10_000


def test_goal_metric_value_dispatch():
    assert memstat.goal_metric_value("user_input") is None
    assert memstat.goal_metric_value("some_mem_psi_us") >= 0
