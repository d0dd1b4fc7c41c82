"""The monitoring budget through the in-process API and ``damond record``'s option.

These run the ``sim`` operation set on trio's real clock (the budget compares CPU seconds with
wall seconds; on a virtual clock it is off, and says so).
"""

from __future__ import annotations

import subprocess

import pytest
import trio

from damond import api
from damond.core.budget import MIN_WINDOW_SAMPLES
from damond.ops.registry import OperationsRegistry
from damond.scheduler import Scheduler
from tests.control.conftest import DAMOND


@pytest.fixture
def registry():
    return OperationsRegistry(load_entry_points=False)


async def _run_sim(registry, seconds: float, **session_args):
    ctx = api.context("sim", targets=[api.target()])
    async with api.session(registry, seed=1, **session_args) as s:
        kd = await s.start(ctx)
        await trio.sleep(seconds)
        status = kd.status()
        await kd.stop()
    return status


async def test_a_tiny_budget_stretches_the_session_kdamond(registry):
    # a thousandth of a CPU is far less than any kdamond costs at 5 ms sampling
    st = await _run_sim(registry, 1.5, cpu_budget=0.001)
    assert st["budget"]["state"] == "on"
    assert st["budget"]["changes"] >= 1
    assert st["effective_sample_us"] > 2 * st["sample_us"]
    assert st["effective_aggr_us"] * st["sample_us"] == pytest.approx(
        st["effective_sample_us"] * st["aggr_us"], rel=1e-3)
    assert st["samples"] < 1.5 / 0.005  # fewer samples than the configured interval gives


async def test_the_session_default_is_no_budget(registry):
    st = await _run_sim(registry, 0.3)
    assert st["budget"]["cpu_budget"] == 0
    assert st["budget"]["state"].startswith("disabled")


async def test_zero_budget_keeps_the_configured_interval(registry):
    st = await _run_sim(registry, 0.6, cpu_budget=0)
    assert st["budget"]["state"].startswith("disabled")
    assert st["effective_sample_us"] == st["sample_us"]
    assert st["samples"] > MIN_WINDOW_SAMPLES  # windows were measured, none acted on
    assert st["budget"]["cpu_share"] > 0


def test_the_budget_is_off_on_a_virtual_clock(registry):
    async def main():
        return await _run_sim(registry, 5.001, cpu_budget=0.001)

    st = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert "virtual" in st["budget"]["state"]
    assert st["effective_sample_us"] == st["sample_us"]
    assert st["samples"] == 1000  # exactly the configured 5 ms over 5 virtual seconds


@pytest.mark.parametrize("bad", ["2", "-1", "x"])
def test_session_and_cli_refuse_a_budget_outside_0_to_1(bad):
    with pytest.raises(ValueError):
        Scheduler(OperationsRegistry(load_entry_points=False),
                  cpu_budget=float(bad) if bad != "x" else bad)
    for argv in (["serve", "--cpu-budget", bad], ["record", "--cpu-budget", bad]):
        r = subprocess.run([DAMOND, *argv], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert "--cpu-budget" in r.stderr


def test_record_refuses_a_budget_for_a_daemons_kdamond(tmp_path):
    r = subprocess.run([DAMOND, "record", "--socket", str(tmp_path / "s"), "--cpu-budget",
                        "0.1", "-o", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "own attributes" in r.stderr
