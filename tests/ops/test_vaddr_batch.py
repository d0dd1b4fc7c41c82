"""vaddr's batch sampler on this host: a whole aggregation interval of samples per call, in a
worker thread (``damond.plugins.vaddr_batch``), driven by the real scheduler on a real process.

The host has neither page_idle nor soft-dirty, so the batches run the ``smaps`` check in
Python; the native page_idle sampler is tested in the guest lane
(tests/platform/test_idle_sampler.py).
"""

from __future__ import annotations

import subprocess
import sys
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


# -- quiet spans slept through on the event loop (Kdamond._quiet_batch) -------------------------

#: allocates and touches 32 MiB, says so, then sleeps on stdin until told to touch it in a loop
WAKING_TARGET = """
import mmap, sys
m = mmap.mmap(-1, 32 << 20)
for i in range(0, len(m), 4096):
    m[i] = 1
print("ready", flush=True)
sys.stdin.readline()
while True:
    for i in range(0, len(m), 4096):
        m[i] = 1
"""


def _voluntary_switches(thread_name: str) -> int:
    """How often the named thread of this process went to sleep (each sleep: one wake-up)."""
    import threading

    (thread,) = [t for t in threading.enumerate() if t.name == thread_name]
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


async def test_quiet_spans_are_slept_on_the_event_loop_without_waking_the_batch_thread():
    proc = await trio.lowlevel.open_process(["sleep", "30"])
    try:
        ctx = api.context("vaddr", attrs=AttrsSpec(), targets=[api.target(pid=proc.pid)])
        events = []
        async with api.session(seed=3) as s:
            kd = await s.start(ctx)
            kd.subscribe(events.append)
            await trio.sleep(0.6)  # the first batch finds the process idle
            switches0, aggr0 = _voluntary_switches(kd.name), kd.stats.aggregations
            await trio.sleep(1.0)
            switches = _voluntary_switches(kd.name) - switches0
            aggregations = kd.stats.aggregations - aggr0
            status = kd.status()
            await kd.stop()
    finally:
        proc.kill()
        await proc.wait()
    sampler = status["sampler"]
    assert sampler["idle_spans_on_event_loop"] >= aggregations - 1 > 5, (sampler, aggregations)
    # the batch thread slept through it all (it woke 2-3 times per aggregation before)
    assert switches <= 1, switches
    # the same answers and pace as the thread's spans: nothing accessed, every sample counted
    assert status["samples"] >= 20 * (status["aggregations"] - 1)
    assert all(max(ev.targets[0].nr_accesses) == 0 for ev in events)


async def test_a_target_that_wakes_during_a_quiet_span_is_checked_in_the_batch_thread():
    proc = await trio.lowlevel.open_process([sys.executable, "-c", WAKING_TARGET],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert (await proc.stdout.receive_some(64)).startswith(b"ready")
        ctx = api.context("vaddr", attrs=AttrsSpec(), targets=[api.target(pid=proc.pid)])
        events = []
        async with api.session(seed=3) as s:
            kd = await s.start(ctx)
            kd.subscribe(events.append)
            with trio.fail_after(10):
                while kd.stats.loop_quiet_spans < 3:
                    await trio.sleep(0.05)
            idle_events = len(events)
            await proc.stdin.send_all(b"go\n")
            await trio.sleep(1.0)
            status = kd.status()
            await kd.stop()
    finally:
        proc.kill()
        await proc.wait()
    assert all(max(ev.targets[0].nr_accesses) == 0 for ev in events[:idle_events])
    # the span that the wake-up interrupted ended with a real check, and sampling went on one
    # sample at a time: the touched mapping is found accessed in most samples
    busy = [max(ev.targets[0].nr_accesses) for ev in events[idle_events + 1:]]
    assert busy and max(busy) >= 10, busy
    assert status["sampler"]["kind"] == "python", status["sampler"]


async def test_a_request_ends_a_quiet_span_at_once():
    # 20 samples of 100 ms: an idle span lasts 1.9 s; a request must not wait for its end
    attrs = AttrsSpec(sample_us=100_000, aggr_us=2_000_000, update_us=4_000_000)
    proc = await trio.lowlevel.open_process(["sleep", "30"])
    try:
        ctx = api.context("vaddr", attrs=attrs, targets=[api.target(pid=proc.pid)])
        async with api.session(seed=3) as s:
            kd = await s.start(ctx)
            with trio.fail_after(10):
                while kd.stats.loop_quiet_spans < 1 or kd._quiet_scope is None:
                    await trio.sleep(0.05)
            await trio.sleep(0.3)  # some samples into the span
            samples0 = kd.stats.samples
            t0 = time.monotonic()
            passed = await kd.call(lambda c: c.passed_sample_intervals)
            waited = time.monotonic() - t0
            aggregations0 = kd.stats.aggregations
            await trio.sleep(2.5)  # monitoring goes on after the request
            samples, aggregations = kd.stats.samples, kd.stats.aggregations
            await kd.stop()
    finally:
        proc.kill()
        await proc.wait()
    assert waited < 1.0, waited
    # the samples whose deadlines had passed were counted before the request was served
    assert passed >= samples0 + 2, (passed, samples0)
    # (samples are counted when a batch ends: the next aggregation's end is in the window)
    assert aggregations > aggregations0 and samples >= passed + 10, (samples, passed)
