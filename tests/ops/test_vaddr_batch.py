"""vaddr's batch sampler on this host: a whole aggregation interval of samples per call, in a
worker thread (``damond.plugins.vaddr_batch``), driven by the real scheduler on a real process.

The host has neither page_idle nor soft-dirty, so the batches run the ``smaps`` check in
Python; the native page_idle sampler is tested in the guest lane
(tests/platform/test_idle_sampler.py).
"""

from __future__ import annotations

import time

import numpy as np
import trio

from damond import api
from damond.core.spec import AttrsSpec
from tests.ops.workloads import workload

MiB = 1 << 20
#: 10 samples per aggregation at 20 ms: a pace the smaps check keeps on a loaded 2-core host
ATTRS = AttrsSpec(sample_us=20_000, aggr_us=200_000, update_us=1_000_000)


async def _run(pid: int, seconds: float, *, sampler: str, attrs: AttrsSpec | None = None):
    ctx = api.context("vaddr", attrs=attrs or ATTRS, targets=[api.target(pid=pid)])
    events = []
    async with api.session(seed=3, sampler=sampler) as s:
        kd = await s.start(ctx)
        kd.subscribe(events.append)
        await trio.sleep(seconds)
        status = kd.status()
        await kd.stop()
    return status, events


def _hot_cold_means(events, info) -> tuple[float, float]:
    (h0, h1), (c0, c1) = info["ranges"]["hot"], info["ranges"]["cold"]
    hot, cold = [], []
    for ev in events[2:]:
        t = ev.targets[0]
        mid = (np.asarray(t.start) + np.asarray(t.end)) // 2
        nr = np.asarray(t.nr_accesses)
        hot.extend(nr[(mid >= h0) & (mid < h1)].tolist())
        cold.extend(nr[(mid >= c0) & (mid < c1)].tolist())
    return float(np.mean(hot)), float(np.mean(cold))


async def test_batches_sample_a_real_process_in_a_worker_thread():
    with workload("hotcold", "--hot", "16M", "--cold", "64M") as (proc, info):
        status, events = await _run(proc.pid, 2.5, sampler="auto")
    sampler = status["sampler"]
    assert sampler["kind"] == "python" and sampler["where"] == "worker-thread", sampler
    assert sampler["detail"].startswith("python (smaps"), sampler
    # whole aggregations of 10 samples each, with their lateness recorded per sample
    assert status["aggregations"] >= 5
    assert status["samples"] >= 10 * (status["aggregations"] - 1)
    assert len(events) >= 5
    hot, cold = _hot_cold_means(events, info)
    assert hot > cold + 5, (hot, cold)


async def test_per_sample_mode_samples_on_the_event_loop():
    with workload("hotcold", "--hot", "16M", "--cold", "64M") as (proc, info):
        status, events = await _run(proc.pid, 2.5, sampler="per-sample")
    assert status["sampler"]["kind"] == "per-sample"
    assert "--sampler per-sample" in status["sampler"]["why"]
    assert status["aggregations"] >= 3
    hot, cold = _hot_cold_means(events, info)
    assert hot > cold + 5, (hot, cold)


async def test_stop_ends_a_long_batch_after_its_current_sample():
    # one batch is 20 samples of 200 ms: 4 s; stopping must not wait for its end
    attrs = AttrsSpec(sample_us=200_000, aggr_us=4_000_000, update_us=8_000_000)
    ctx = api.context("vaddr", attrs=attrs, targets=[api.target(pid=1)])
    async with api.session(seed=3) as s:
        kd = await s.start(ctx)
        await trio.sleep(0.5)
        t0 = time.monotonic()
        await kd.stop()
        took = time.monotonic() - t0
        samples = kd.stats.samples
    assert took < 2.0, took
    assert 1 <= samples < 20


async def test_the_event_loop_stays_free_during_a_batch():
    # while a batch sleeps and checks in its thread, the loop runs other tasks at their pace
    attrs = AttrsSpec(sample_us=50_000, aggr_us=1_000_000, update_us=2_000_000)
    with workload("hotcold", "--hot", "16M", "--cold", "64M") as (proc, _info):
        ctx = api.context("vaddr", attrs=attrs, targets=[api.target(pid=proc.pid)])
        async with api.session(seed=3) as s:
            kd = await s.start(ctx)
            ticks = 0
            with trio.move_on_after(1.5):
                while True:
                    await trio.sleep(0.01)
                    ticks += 1
            status = kd.status()
            await kd.stop()
    assert status["sampler"]["kind"].startswith("python")
    # 1.5 s of 10 ms sleeps: well over a hundred turns of the loop unless something blocked it
    assert ticks > 75, ticks


async def test_an_idle_process_costs_one_wake_up_per_batch():
    proc = await trio.lowlevel.open_process(["sleep", "30"])
    try:
        status, events = await _run(proc.pid, 2.0, sampler="auto", attrs=AttrsSpec())
    finally:
        proc.kill()
        await proc.wait()
    target = status["ops_status"]["targets"][0]
    assert target["access_check"] == "smaps"
    # every sample was either skipped (the process did not run) or coalesced into a span
    assert status["sampler"]["idle_coalesced_samples"] > status["samples"] // 2
    assert target["idle_skipped_samples"] >= status["aggregations"] - 1
    # samples keep the configured pace and nothing is found accessed
    assert status["samples"] >= 20 * (status["aggregations"] - 1)
    assert all(max(ev.targets[0].nr_accesses) == 0 for ev in events)


async def test_requests_are_served_between_samples_not_at_the_batch_end():
    # one batch is 20 samples of 200 ms (4 s); a request must not wait for its end
    attrs = AttrsSpec(sample_us=200_000, aggr_us=4_000_000, update_us=8_000_000)
    with workload("hotcold", "--hot", "16M", "--cold", "64M") as (proc, _info):
        ctx = api.context("vaddr", attrs=attrs, targets=[api.target(pid=proc.pid)])
        async with api.session(seed=3) as s:
            kd = await s.start(ctx)
            await trio.sleep(0.5)
            waits = []
            for _ in range(3):
                t0 = time.monotonic()
                passed = await kd.call(lambda c: c.passed_sample_intervals)
                waits.append(time.monotonic() - t0)
                await trio.sleep(0.3)
            aggregations = kd.stats.aggregations
            await kd.stop()
    # each served within about one sampling interval, well before the 4 s batch would end
    assert max(waits) < 1.5, waits
    assert 0 < passed < 20 and aggregations == 0
