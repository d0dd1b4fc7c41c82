"""How much a sample costs the core, for 10, 100 and 1000 regions on the ``sim`` set.

Runs the kdamond iteration (``damond.core.kdamond``) directly, without sleeping, on a virtual
clock, with a pageout scheme under a size quota so that merge, split and the DAMOS pass all
run. The number of regions is pinned by setting ``min_nr_regions == max_nr_regions`` (the size
limit then keeps about that many). Time spent inside the operation set's callbacks is measured
separately: "core" is everything else, i.e. what damond adds on top of any operation set.

Times are the thread's CPU time (not wall time), best of three runs, because these machines
are shared: a descheduled benchmark would otherwise measure its neighbours. Prints one line per
size, then ``core_us_per_sample_1000=<number>`` last.
"""

from __future__ import annotations

import argparse
import time

from damond import api
from damond.core import kdamond as loop
from damond.core.spec import AttrsSpec
from damond.ops.registry import OperationsRegistry
from damond.plugins.sim_workload import MiB
from damond.scheduler import Scheduler


class TimedOps:
    """Forwards to the real handle and accumulates the time spent in the operation set."""

    def __init__(self, handle) -> None:
        self._h = handle
        self.ns = 0

    def __getattr__(self, name):
        fn = getattr(self._h, name)

        def timed(*args, **kwargs):
            t0 = time.thread_time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ns += time.thread_time_ns() - t0

        return timed


def measure(nr_regions: int, samples: int, seed: int = 1) -> tuple[float, float]:
    registry = OperationsRegistry(load_entry_points=False)
    workload = {"seed": seed, "ranges": [
        {"name": "hot", "size": 64 * MiB, "p": 0.8},
        {"name": "warm", "size": 256 * MiB, "p": 0.1},
        {"name": "cold", "size": 1024 * MiB, "p": 0.0}]}
    spec = api.context("sim", attrs=AttrsSpec(min_nr_regions=nr_regions,
                                              max_nr_regions=nr_regions),
                       targets=[api.target(workload=workload)],
                       schemes=[api.scheme("pageout", nr_accesses=(0, 0), age=(5, None),
                                           quota_sz=4 * MiB, quota_reset_ms=1000)])
    ctx = Scheduler(registry, seed=seed).build(spec)
    ops = TimedOps(registry.handle("sim"))
    now = [0]
    ctx.clock_ns = lambda: now[0]
    loop.start(ctx, ops)
    interval_ns = ctx.attrs.sample_us * 1000

    def no_requests(_ctx):
        return None

    total_ns = 0
    ops.ns = 0
    for _ in range(samples):
        t0 = time.thread_time_ns()
        timers = loop.begin_iteration(ctx)
        ops.prepare_access_checks(ctx)
        now[0] += interval_ns
        loop.after_sample(ctx, ops, timers, no_requests, no_requests)
        total_ns += time.thread_time_ns() - t0
    per_sample_total = total_ns / samples / 1000
    per_sample_ops = ops.ns / samples / 1000
    return per_sample_total - per_sample_ops, per_sample_ops, ctx.nr_regions()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000,
                        help="samples per size (200 = one second of monitoring)")
    args = parser.parse_args()
    interval_us = AttrsSpec().sample_us
    core_1000 = None
    print(f"{'regions':>8} {'core us/sample':>15} {'of 5 ms':>8} {'sim ops us/sample':>18} "
          f"{'regions at end':>15}")
    for n in (10, 100, 1000):
        measure(n, min(args.samples, 400))  # warm-up (imports, caches)
        runs = [measure(n, args.samples, seed=seed) for seed in (1, 2, 3)]
        core, ops, final = min(runs)
        print(f"{n:>8} {core:>15.1f} {core / interval_us:>8.2%} {ops:>18.1f} {final:>15}")
        if n == 1000:
            core_1000 = core
    print("goal: <= 100 us of core time per sample at 1000 regions")
    print(f"core_us_per_sample_1000={core_1000:.1f}")


if __name__ == "__main__":
    main()
