"""Scheduler behaviour on trio's MockClock with the ``sim`` operation set."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from damond import api
from damond.core.spec import AttrsSpec, WatermarksSpec
from damond.errors import DamonError
from damond.ops.registry import OperationsRegistry
from damond.plugins.sim_workload import MiB


@pytest.fixture
def registry():
    return OperationsRegistry(load_entry_points=False)


def _by_range(event, lo, hi):
    """nr_accesses of the regions of target 0 lying within [lo, hi)."""
    t = event.targets[0]
    inside = (t.start >= lo) & (t.end <= hi)
    return t.nr_accesses[inside], t.end[inside] - t.start[inside]


async def test_aggregates_every_floor_aggr_over_sample(registry, autojump_clock):
    ctx = api.context("sim", attrs=AttrsSpec(sample_us=5000, aggr_us=12000),
                      targets=[api.target()])
    events = []
    async with api.session(registry, seed=1) as s:
        kd = await s.start(ctx)
        kd.subscribe(events.append)
        await trio.sleep(1.001)
        samples = kd.stats.samples
        await kd.stop()
    # 12 ms / 5 ms -> every 2 samples, i.e. every 10 ms (kernel 6.7+ sample-count timer)
    assert samples == 200
    assert len(events) == 100
    gaps = [b.end_ns - a.end_ns for a, b in zip(events, events[1:], strict=False)]
    assert all(abs(g - 10_000_000) <= 1 for g in gaps)  # ns rounding of trio's float clock
    # nr_accesses can reach at most the 2 samples of an aggregation
    assert max(int(t.nr_accesses.max()) for ev in events for t in ev.targets) <= 2


async def test_hot_range_high_cold_range_zero(registry, autojump_clock):
    workload = {"seed": 3, "ranges": [
        {"name": "hot", "start": 0x10000000, "size": 16 * MiB, "p": 0.95},
        {"name": "mid", "start": 0x50000000, "size": 32 * MiB, "p": 0.3},
        {"name": "cold", "start": 0x90000000, "size": 128 * MiB, "p": 0.0}]}
    ctx = api.context("sim", targets=[api.target(workload=workload)])
    events = []
    async with api.session(registry, seed=2) as s:
        kd = await s.start(ctx)
        kd.subscribe(events.append)
        await trio.sleep(3.0)
        await kd.stop()
    late = events[10:]
    hot = np.concatenate([_by_range(ev, 0x10000000, 0x11000000)[0] for ev in late])
    cold = np.concatenate([_by_range(ev, 0x90000000, 0x98000000)[0] for ev in late])
    assert hot.size and cold.size
    assert hot.mean() >= 15  # p = 0.95 of 20 samples
    assert cold.max() == 0


@pytest.mark.parametrize("min_nr,max_nr", [(10, 1000), (10, 40), (20, 60)])
async def test_region_count_within_bounds(registry, autojump_clock, min_nr, max_nr):
    ctx = api.context("sim", attrs=AttrsSpec(min_nr_regions=min_nr, max_nr_regions=max_nr),
                      targets=[api.target()])
    events = []
    async with api.session(registry, seed=5) as s:
        kd = await s.start(ctx)
        kd.subscribe(events.append)
        await trio.sleep(4.0)
        await kd.stop()
    counts = [ev.targets[0].nr_regions for ev in events[5:]]
    assert min(counts) >= min_nr
    assert max(counts) <= max_nr


async def test_pageout_size_quota_never_exceeded(registry, autojump_clock):
    quota = 1 * MiB
    ctx = api.context("sim", targets=[api.target()], schemes=[
        api.scheme("pageout", nr_accesses=(0, 0), quota_sz=quota, quota_reset_ms=100)])
    charged, paged_out = [], []
    async with api.session(registry, seed=7) as s:
        kd = await s.start(ctx)

        def check(_ev):
            q = kd.ctx.schemes[0].quota
            charged.append((q.charged_sz, q.esz))
            paged_out.append(kd.ctx.ops_data.spaces[0].paged_out)

        kd.subscribe(check)
        await trio.sleep(3.0)
        stats = await kd.call(lambda c: c.schemes[0].stats)
        await kd.stop()
    assert all(c <= esz == quota for c, esz in charged)
    # each 100 ms window pages out at most the quota
    assert all(b - a <= quota for a, b in zip(paged_out, paged_out[1:], strict=False))
    assert paged_out[-1] >= 10 * quota
    assert stats.qt_exceeds >= 10
    assert stats.sz_tried <= quota * (stats.qt_exceeds + 1)
    assert stats.sz_applied > 0 and stats.nr_applied > 0


async def test_watermarks_switch_scheme(registry, autojump_clock):
    # 10 GiB machine; the default-like workload is ~336 MiB resident
    gib = 1 << 30
    workload = {"seed": 1, "mem_total": 10 * gib, "other_used": 0, "ranges": [
        {"name": "hot", "size": 16 * MiB, "p": 0.9},
        {"name": "cold", "size": 64 * MiB, "p": 0.0}],
        "phases": [
            {"at": 2, "other_used": int(4.5 * gib)},  # free ~542: between mid and high
            {"at": 4, "other_used": 6 * gib},  # free ~392: below mid -> on
            {"at": 6, "other_used": int(4.5 * gib)},  # back between: stays on
            {"at": 8, "other_used": int(9.5 * gib)},  # free ~42: below low -> off
        ]}
    wm = WatermarksSpec(metric="free_mem_rate", interval_us=100_000, high=600, mid=500,
                        low=200)
    ctx = api.context("sim", targets=[api.target(workload=workload)],
                      schemes=[api.scheme("stat", wmarks=wm)])
    tried = {}
    async with api.session(registry, seed=1) as s:
        kd = await s.start(ctx)
        for t in range(1, 11):
            await trio.sleep_until(kd.ctx.ops_data.start_ns / 1e9 + t - 0.05)
            tried[t] = (await kd.call(lambda c: c.schemes[0].stats.nr_tried),
                        kd.stats.samples)
        await kd.stop()
    assert tried[2][0] == 0  # free ~966: above high, never activated
    assert tried[4][0] == 0  # between mid and high while inactive: stays off
    assert tried[6][0] > 0  # below mid: activated
    assert tried[8][0] > tried[6][0]  # between mid and high while active: stays on
    assert tried[10][0] == tried[9][0]  # below low: off again
    # while every scheme is inactive the kdamond does not sample at all
    assert tried[4][1] == 0
    assert tried[10][1] == tried[9][1]
    assert kd.stats.wmark_waits > 0


async def test_kdamond_stops_when_targets_are_gone(registry, autojump_clock):
    ctx = api.context("sim", targets=[
        api.target(workload={"ranges": [{"size": MiB, "p": 0.5}], "lifetime_s": 1.0}),
        api.target(workload={"ranges": [{"size": MiB, "p": 0.5}], "lifetime_s": 2.0})])
    async with api.session(registry) as s:
        kd = await s.start(ctx)
        t0 = trio.current_time()
        await kd.finished.wait()
        assert 2.0 <= trio.current_time() - t0 < 2.1
        assert not kd.running and kd.pid == -1
        assert kd.stop_reason == "every target is gone"
        assert s.running == []


async def test_online_commit_keeps_stats_and_regions(registry, autojump_clock):
    ctx = api.context("sim", targets=[api.target()],
                      schemes=[api.scheme("stat", nr_accesses=(0, 0))])
    async with api.session(registry, seed=9) as s:
        kd = await s.start(ctx)
        # mid-aggregation (aggregations every 100 ms): no apply pass, merge or split happens
        # between the two requests below
        await trio.sleep(1.03)
        before = await kd.call(lambda c: (c.schemes[0].stats.nr_tried, c.targets[0].regions))
        new = api.context("sim", targets=[api.target()], schemes=[
            api.scheme("stat", nr_accesses=(0, 0)), api.scheme("stat", nr_accesses=(10, None))])
        await kd.commit(new)
        after = await kd.call(lambda c: (c.schemes[0].stats.nr_tried,
                                         c.schemes[1].stats.nr_tried, c.targets[0].regions))
        assert after[0] == before[0]  # kept, not reset
        assert after[1] == 0
        assert after[2].ranges() == before[1].ranges()  # region state kept
        await trio.sleep(1.0)
        final = await kd.call(lambda c: (c.schemes[0].stats.nr_tried,
                                         c.schemes[1].stats.nr_tried))
        await kd.stop()
    assert final[0] > before[0] and final[1] > 0


async def test_invalid_commit_leaves_kdamond_untouched(registry, autojump_clock):
    ctx = api.context("sim", targets=[api.target()])
    async with api.session(registry) as s:
        kd = await s.start(ctx)
        await trio.sleep(0.5)
        bad = api.context("sim", attrs=AttrsSpec(min_nr_regions=1), targets=[api.target()])
        with pytest.raises(DamonError) as e:
            await kd.commit(bad)
        assert e.value.errno_name == "EINVAL"
        bad2 = api.context("nosuchops", targets=[api.target()])
        with pytest.raises(DamonError):
            await kd.commit(bad2)
        assert kd.running and kd.ctx.attrs.min_nr_regions == 10
        samples = kd.stats.samples
        await trio.sleep(0.5)
        assert kd.stats.samples > samples
        await kd.stop()


async def test_commit_rescales_counters(registry, autojump_clock):
    ctx = api.context("sim", targets=[api.target()])
    async with api.session(registry, seed=4) as s:
        kd = await s.start(ctx)
        await trio.sleep(2.03)  # mid-aggregation: no merge or split between the two requests
        ages = await kd.call(lambda c: c.targets[0].regions.age.copy())
        new = api.context("sim", attrs=AttrsSpec(aggr_us=200_000), targets=[api.target()])
        await kd.commit(new)
        rescaled = await kd.call(lambda c: c.targets[0].regions.age.copy())
        await kd.stop()
    assert rescaled.tolist() == (ages * 100_000 // 200_000).tolist()


async def test_several_kdamonds_and_exclusivity(registry, autojump_clock):
    ctx = api.context("sim", targets=[api.target()])
    async with api.session(registry) as s:
        kds = await s.start(ctx, ctx)
        assert [k.index for k in kds] == [0, 1]
        await trio.sleep(0.501)
        assert all(k.stats.samples == 100 for k in kds)
        with pytest.raises(DamonError) as e:
            await s.scheduler.start([(5, ctx)], group="debugfs", exclusive=True)
        assert e.value.errno_name == "EBUSY"
        for k in kds:
            await k.stop()
        [ex] = await s.scheduler.start([(5, ctx)], group="debugfs", exclusive=True)
        with pytest.raises(DamonError) as e:
            await s.start(ctx)
        assert e.value.errno_name == "EBUSY"
        await ex.stop()


async def test_start_refuses_invalid_spec(registry, autojump_clock):
    async with api.session(registry) as s:
        with pytest.raises(DamonError) as e:
            await s.start(api.context("sim", attrs=AttrsSpec(sample_us=10, aggr_us=5),
                                      targets=[api.target()]))
        assert e.value.errno_name == "EINVAL"
        with pytest.raises(DamonError):
            await s.start(api.context("sim", targets=[api.target(workload={"ranges": []})]))
        assert s.running == []


async def test_apply_interval_applies_more_often(registry, autojump_clock):
    ctx = api.context("sim", targets=[api.target()], schemes=[
        api.scheme("stat"), api.scheme("stat", apply_interval_us=10_000)])
    async with api.session(registry) as s:
        kd = await s.start(ctx)
        await trio.sleep(2.0)
        passes = await kd.call(lambda c: [sc.stats.nr_tried / max(1, c.nr_regions())
                                          for sc in c.schemes])
        await kd.stop()
    # like the kernel selftest damos_apply_interval.py: 10 ms is tried ~10x more than 100 ms
    assert passes[1] >= 9 * passes[0] * 0.8


async def test_requests_wake_a_watermark_wait(registry, autojump_clock):
    wm = WatermarksSpec(metric="free_mem_rate", interval_us=60_000_000, high=0, mid=0, low=0)
    ctx = api.context("sim", targets=[api.target()], schemes=[api.scheme("stat", wmarks=wm)])
    async with api.session(registry) as s:
        kd = await s.start(ctx)
        await trio.sleep(1.0)
        t0 = trio.current_time()
        await kd.call(lambda c: None)
        assert trio.current_time() - t0 < 0.01  # not the 60 s watermark interval
        assert kd.stats.samples == 0
        await kd.stop()


def test_run_helper_is_reproducible():
    ctx = api.context("sim", targets=[api.target()])
    a = api.run(ctx, 1.001, seed=11, clock=trio.testing.MockClock(autojump_threshold=0))
    b = api.run(ctx, 1.001, seed=11, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(a) == len(b) == 10
    for x, y in zip(a, b, strict=True):
        for tx, ty in zip(x.targets, y.targets, strict=True):
            assert tx.start.tolist() == ty.start.tolist()
            assert tx.nr_accesses.tolist() == ty.nr_accesses.tolist()


async def test_walk_schemes_returns_the_next_pass_tried_regions(registry, autojump_clock):
    # 6.2+ update_schemes_tried_regions: every region a scheme tried during its next pass
    ctx = api.context("sim", targets=[api.target()], schemes=[
        api.scheme("stat"), api.scheme("stat", nr_accesses=(1, None))])
    async with api.session(registry, seed=3) as s:
        kd = await s.start(ctx)
        await trio.sleep(0.5)
        before = await kd.call(lambda c: c.schemes[0].stats.nr_tried)
        control = await kd.walk_schemes()
        after = await kd.call(lambda c: (c.schemes[0].stats.nr_tried,
                                         [(int(a), int(b)) for a, b in zip(
                                             c.targets[0].regions.start,
                                             c.targets[0].regions.end, strict=True)]))
        bytes_only = await kd.walk_schemes(total_bytes_only=True)
        await kd.stop()
    assert not control.canceled
    tried = control.regions[0]
    # the match-everything stat scheme tried every region of one pass, in address order
    assert 0 < len(tried) <= after[0] - before
    assert [r.start for r in tried] == sorted(r.start for r in tried)
    assert sum(r.end - r.start for r in tried) == control.total_bytes[0]
    spans = after[1]
    assert control.total_bytes[0] == sum(e - b for b, e in spans)
    assert control.regions[1] and all(r.nr_accesses >= 1 for r in control.regions[1])
    assert bytes_only.regions == {} and bytes_only.total_bytes[0] == control.total_bytes[0]


async def test_walk_schemes_is_canceled_without_schemes_and_busy_twice(registry,
                                                                       autojump_clock):
    async with api.session(registry, seed=3) as s:
        kd = await s.start(api.context("sim", targets=[api.target()]))
        control = await kd.walk_schemes()
        assert control.canceled
        await kd.stop()
    slow = api.scheme("stat", apply_interval_us=2_000_000)
    async with api.session(registry, seed=3) as s:
        kd = await s.start(api.context("sim", targets=[api.target()], schemes=[slow]))
        results = []

        async def walk():
            try:
                results.append(await kd.walk_schemes())
            except DamonError as e:
                results.append(e.errno_name)

        async with trio.open_nursery() as n:
            n.start_soon(walk)
            await trio.sleep(0.1)
            n.start_soon(walk)
        await kd.stop()
    assert results[0] == "EBUSY" and not results[1].canceled


async def test_intervals_goal_tunes_a_running_kdamond(registry, autojump_clock):
    from damond.core.spec import IntervalsGoalSpec

    # a hot workload sees far more than 4% of the possible access events: intervals shrink
    workload = {"seed": 1, "ranges": [{"name": "hot", "size": 64 * MiB, "p": 0.9}]}
    goal = IntervalsGoalSpec(access_bp=400, aggrs=3, min_sample_us=1000, max_sample_us=10_000)
    ctx = api.context("sim", attrs=AttrsSpec(sample_us=5000, aggr_us=100_000,
                                             intervals_goal=goal),
                      targets=[api.target(workload=workload)])
    async with api.session(registry, seed=1) as s:
        kd = await s.start(ctx)
        await trio.sleep(3.0)
        tuned = await kd.call(lambda c: (c.attrs.sample_us, c.attrs.aggr_us, c.aggr_samples))
        await kd.stop()
    sample_us, aggr_us, samples = tuned
    assert samples == 20 and aggr_us == sample_us * 20
    assert 1000 <= sample_us < 5000
