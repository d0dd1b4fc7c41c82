"""``damond demo``: record a real workload with damond and print what DAMON saw.

The main job of the quickstart: it starts a small program with a hot and a cold memory mapping
(``damond.tools.workload hotcold``), records it with ``damond record`` (the ``vaddr`` operation set,
its own kdamond, damo's record format) and prints ``damond report access``, ``wss`` and a
terminal ``heatmap`` of the record. ``--sim`` instead previews, on the ``sim`` operation set
and a virtual clock, what a proactive-reclaim scheme would do to a simulated process.
"""

from __future__ import annotations

import os
import sys
import tempfile

import trio
import trio.testing

from damond import api
from damond.core.events import AggregationEvent
from damond.plugins.sim_workload import MiB, default_workload
from damond.tools import record, report
from damond.tools.report.analysis import mean_access_over


def run_demo(seconds: float = 10.0, seed: int = 1, sim: bool = False,
             output: str | None = None) -> int:
    """Record the hot/cold workload and print three reports of it (``sim``: preview a reclaim
    scheme instead); the exit status of the first step that failed, else 0."""
    if sim:
        return run_sim_preview(seconds, seed)
    path = output or os.path.join(tempfile.mkdtemp(prefix="damond-demo-"), "damon.data")
    print(f"damond demo: recording 'python -m damond.tools.workload hotcold' (a 16 MiB mapping it "
          f"keeps writing, a 64 MiB one it never touches again) for {seconds:g} s -> {path}",
          flush=True)
    rc = record.main(["-o", path, "--timeout", str(seconds), "--flush-interval", "2", "--",
                      sys.executable, "-m", "damond.tools.workload", "hotcold", "--hot", "16M",
                      "--cold", "64M", "--seconds", str(seconds + 5), "--describe", "text"])
    if rc != 0:
        return rc
    for title, argv in (
            ("the last snapshot (damond report access)", ["access", "--input", path]),
            ("working set size (damond report wss)", ["wss", "--input", path]),
            ("where and when memory was accessed (damond report heatmap)",
             ["heatmap", "--input", path, "--resol", "12", "64"])):
        print(f"\n== {title}", flush=True)
        rc = report.main(argv)
        if rc != 0:
            return rc
    print(f"\nThe record is in damo's format: 'damo report heatmap --input {path}' reads it too.")
    return 0


def _mean_access(event: AggregationEvent, lo: int, hi: int) -> float:
    t = event.targets[0]
    return mean_access_over(t.start, t.end, t.nr_accesses, lo, hi)


def run_sim_preview(seconds: float = 10.0, seed: int = 1) -> int:
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
    print(f"damond demo --sim: {seconds:g} s of a simulated process on the 'sim' operation "
          f"set, {len(events)} aggregations, {last.targets[0].nr_regions} regions at the end")
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
