"""How much a sample costs the core, for 10, 100 and 1000 regions on the ``sim`` set.

Runs the kdamond loop (``damond.core.kdamond``, the same steps the daemon's scheduler drives)
with the synchronous driver, without sleeping, on a virtual clock, with a pageout scheme under
a size quota so that merge, split and the DAMOS pass all run. The number of regions is pinned
by setting ``min_nr_regions == max_nr_regions`` (the size limit then keeps about that many).
Time spent inside the operation set's callbacks is measured separately: "core" is everything
else, i.e. what damond adds on top of any operation set.

Times are the thread's CPU time (not wall time), best of three runs, because these machines
are shared: a descheduled benchmark would otherwise measure its neighbours. Prints one line per
size, then ``ops_call_overhead_us=<number>`` (what one call of an operation-set callback costs
through the resolved ``DamonOperations`` record, measured on a set whose callbacks do nothing)
and ``core_us_per_sample_1000=<number>`` last.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

from damond import api
from damond.core import kdamond as loop
from damond.core.context import Context
from damond.core.spec import AttrsSpec
from damond.ops.hookspecs import hookimpl
from damond.ops.info import OpsInfo
from damond.ops.registry import OperationsRegistry
from damond.plugins.sim_workload import MiB
from damond.scheduler import Scheduler


class TimedOps:
    """Forwards to the resolved operations and accumulates the time spent in the set."""

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
    ops = TimedOps(registry.resolve("sim"))
    now = [0]
    ctx.clock_ns = lambda: now[0]
    ctx.ops = ops
    loop.run_steps(loop.kdamond_start(ctx))
    interval_ns = ctx.attrs.sample_us * 1000

    def advance_clock() -> None:
        now[0] += interval_ns

    total_ns = 0
    ops.ns = 0
    for _ in range(samples):
        t0 = time.thread_time_ns()
        loop.run_steps(loop.kdamond_iteration(ctx), on_sample_wait=advance_clock)
        total_ns += time.thread_time_ns() - t0
    per_sample_total = total_ns / samples / 1000
    per_sample_ops = ops.ns / samples / 1000
    return per_sample_total - per_sample_ops, per_sample_ops, ctx.nr_regions()


@hookimpl
def _trivial_info():
    return OpsInfo(name="trivial", summary="callbacks that do nothing (benchmark)")


@hookimpl
def _trivial_prepare_access_checks(ctx):
    return None


@hookimpl
def _trivial_check_accesses(ctx):
    return []


#: An operation set whose per-sample callbacks do nothing: timing them measures the call alone.
TRIVIAL_OPS = SimpleNamespace(damon_ops_info=_trivial_info,
                              damon_ops_prepare_access_checks=_trivial_prepare_access_checks,
                              damon_ops_check_accesses=_trivial_check_accesses)


def ops_call_overhead_us(calls: int = 100_000) -> tuple[float, float]:
    """Microseconds per per-sample callback call through the resolved record, and per direct
    call of the same functions, best of three. Both per-sample callbacks are timed:
    ``prepare_access_checks`` is the set's own function in the record, ``check_accesses`` the
    wrapper supplying the kernel's default for a None answer."""
    registry = OperationsRegistry(load_entry_points=False, builtins=(),
                                  plugins=[("trivial", TRIVIAL_OPS)])
    ops = registry.resolve("trivial")
    ctx = Context(ops_name="trivial")
    prepare, check = _trivial_prepare_access_checks, _trivial_check_accesses

    def through_record() -> int:
        t0 = time.thread_time_ns()
        for _ in range(calls):
            ops.prepare_access_checks(ctx)
            ops.check_accesses(ctx)
        return time.thread_time_ns() - t0

    def direct() -> int:
        t0 = time.thread_time_ns()
        for _ in range(calls):
            prepare(ctx)
            check(ctx)
        return time.thread_time_ns() - t0

    per_call = 2 * calls * 1000
    return (min(through_record() for _ in range(3)) / per_call,
            min(direct() for _ in range(3)) / per_call)


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
    record_us, direct_us = ops_call_overhead_us()
    print(f"operation-set call through the resolved record: {record_us:.3f} us "
          f"(direct call of the same function: {direct_us:.3f} us; goal: below 1 us)")
    print(f"ops_call_overhead_us={record_us:.3f}")
    print(f"core_us_per_sample_1000={core_1000:.1f}")


if __name__ == "__main__":
    main()
