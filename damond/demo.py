"""``damond demo``: what DAMON sees of a simulated workload, and what a scheme would do to it.

Runs the ``sim`` operation set on a virtual clock (as fast as the CPU allows) with a hot, a
warm and a cold range and a proactive-reclaim scheme (pageout of regions idle for 2 s, at most
8 MiB per 100 ms), then prints the access pattern DAMON found and the scheme's effect.
"""

from __future__ import annotations

import trio
import trio.testing

from damond import api
from damond.core.events import AggregationEvent
from damond.plugins.sim_workload import MiB, default_workload


def _mean_access(event: AggregationEvent, lo: int, hi: int) -> float:
    t = event.targets[0]
    weight = total = 0
    for s, e, n in zip(t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(), strict=True):
        overlap = max(0, min(e, hi) - max(s, lo))
        weight += overlap
        total += overlap * n
    return total / weight if weight else 0.0


def run_demo(seconds: float = 10.0, seed: int = 1) -> int:
    workload = default_workload(seed)
    ctx = api.context("sim", targets=[api.target(workload=workload.to_dict())], schemes=[
        api.scheme("pageout", nr_accesses=(0, 0), age=(20, None), quota_sz=8 * MiB,
                   quota_reset_ms=100)])
    result = {}

    async def main() -> None:
        async with api.session(seed=seed) as s:
            kd = await s.start(ctx)
            events: list[AggregationEvent] = []
            kd.subscribe(events.append)
            await trio.sleep(seconds)
            result["events"] = events
            result["stats"] = await kd.call(lambda c: c.schemes[0].stats)
            result["sim"] = kd.ops.status(kd.ctx)["targets"][0]
            await kd.stop()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    events = result["events"]
    last = events[-1]
    print(f"damond demo: {seconds:g} s of a simulated process on the 'sim' operation set, "
          f"{len(events)} aggregations, {last.targets[0].nr_regions} regions at the end")
    print(f"{'range':<6} {'size':>9} {'access prob':>12} {'nr_accesses (of 20)':>20}")
    for r in workload.ranges:
        print(f"{r.name:<6} {(r.end - r.start) // MiB:>7}Mi {r.p:>12.2f} "
              f"{_mean_access(last, r.start, r.end):>20.1f}")
    st, sim = result["stats"], result["sim"]
    print(f"scheme 'pageout idle >= 2 s, 8 MiB/100 ms': tried {st.nr_tried} regions "
          f"({st.sz_tried // MiB} MiB), applied {st.sz_applied // MiB} MiB, "
          f"quota exceeded {st.qt_exceeds} times")
    print(f"resident memory: {sim['mapped'] // MiB} MiB mapped, {sim['resident'] // MiB} MiB "
          f"resident, {sim['refaults']} refaults")
    return 0
