"""damond side by side with the kernel's own DAMON ``vaddr``, on the same workloads and the same
attributes, one after the other (both clear the same Accessed bits, so never at once).

Run it inside the guest kernel (it needs the kernel's DAMON vaddr sysfs interface, tracefs and
page_idle), e.g. from the repository root::

    ../shared/guest-kernel/guest-run --mem 2G -- .venv/bin/python bench/versus_kernel.py

Both sides use the same attributes: the kernel's defaults (5 ms sampling, 100 ms aggregation,
10-1000 regions; ``--sample-us`` changes the sampling interval, keeping 20 samples per
aggregation). damond runs in this process through the in-process API: its own user-space
sensing (``page_idle``), no CPU budget, and the sampler ``--sampler`` names (``auto``: the
batch sampler, native where the C extension loaded; ``per-sample``: every sample on the event
loop, as before batch sampling). ``--compare-per-sample`` runs damond both ways in one run.

Measured, for each side:
* boundary error: a workload whose one mapping is hot in its first part and cold in the rest;
  where accesses stop, versus where the hot part really ends, as a share of the mapping;
* working-set estimate error: two buffers accessed alternately (the kernel selftest's shape);
  the 50th-percentile working set (regions >= 25% accessed, age >= 2) versus the buffer size;
* CPU time per second of monitoring: damond's whole process versus the kernel's kdamond thread.

Prints one line per measure with both values and their ratio, ending with
``aggregations_ratio=<damond's aggregations / the kernel's in the same time>`` (below 1:
damond fell behind) and ``cpu_ratio_vs_kernel=<number>``.

Under the guest's default single-threaded emulation both vCPUs share one host thread, so the
CPU a monitor uses slows the workload too (halved under damond, measured): see
docs/sampler.md, "Why the guest falls behind". ``GUEST_ACCEL=tcg,thread=multi guest-run ...``
gives each vCPU its own host thread; the guest kernel's README warns that it can crash.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import trio

from damond import api
from damond.core.spec import AttrsSpec
from damond.tools.report import analysis

SYSFS = "/sys/kernel/mm/damon/admin/kdamonds"
TRACEFS = "/sys/kernel/tracing"
MiB = 1 << 20


def start_workload(*args: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "damond.tools.workload", *args],
                            stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    time.sleep(0.5)  # like damo: let the mappings settle before monitoring starts
    return proc, info


def _w(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _r(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def kernel_run(pid: int, attrs: AttrsSpec, seconds: float) -> tuple[list, float]:
    """Monitor ``pid`` with the kernel's DAMON for ``seconds``; (snapshots, CPU seconds)."""
    if not os.path.isdir(f"{TRACEFS}/events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=False)
    _w(f"{SYSFS}/nr_kdamonds", "1")
    _w(f"{SYSFS}/0/contexts/nr_contexts", "1")
    c = f"{SYSFS}/0/contexts/0"
    _w(f"{c}/operations", "vaddr")
    _w(f"{c}/monitoring_attrs/intervals/sample_us", str(attrs.sample_us))
    _w(f"{c}/monitoring_attrs/intervals/aggr_us", str(attrs.aggr_us))
    _w(f"{c}/monitoring_attrs/intervals/update_us", str(attrs.update_us))
    _w(f"{c}/monitoring_attrs/nr_regions/min", str(attrs.min_nr_regions))
    _w(f"{c}/monitoring_attrs/nr_regions/max", str(attrs.max_nr_regions))
    _w(f"{c}/targets/nr_targets", "1")
    _w(f"{c}/targets/0/pid_target", str(pid))
    _w(f"{TRACEFS}/trace", "")
    _w(f"{TRACEFS}/buffer_size_kb", "65536")
    _w(f"{TRACEFS}/events/damon/damon_aggregated/enable", "1")
    _w(f"{SYSFS}/0/state", "on")
    kpid = int(_r(f"{SYSFS}/0/pid"))
    cpu0 = _thread_cpu(kpid)
    time.sleep(seconds)
    cpu = _thread_cpu(kpid) - cpu0
    _w(f"{TRACEFS}/events/damon/damon_aggregated/enable", "0")
    _w(f"{SYSFS}/0/state", "off")
    with open(f"{TRACEFS}/trace") as f:
        snaps = analysis.snapshots_from_trace(f)
    _w(f"{TRACEFS}/trace", "")
    return snaps, cpu


def _thread_cpu(pid: int) -> float:
    fields = _r(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def damond_run(pid: int, attrs: AttrsSpec, seconds: float,
               sampler: str = "auto") -> tuple[list, float]:
    """Monitor ``pid`` with damond (in this process) for ``seconds``; (snapshots, CPU s)."""
    snaps: list = []

    def keep(ev) -> None:
        t = ev.targets[0]
        snaps.append((t.start, t.end, t.nr_accesses, t.age))

    out = {}

    async def main() -> None:
        async with api.session(sampler=sampler) as s:
            kd = await s.start(api.context("vaddr", attrs=attrs,
                                           targets=[api.target(pid=pid,
                                                               access_check="page_idle")]))
            kd.subscribe(keep)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            await trio.sleep(seconds)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            out["cpu"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            out["overruns"] = kd.stats.overruns
            out["sampler"] = kd.status()["sampler"]["detail"]
            await kd.stop()

    trio.run(main)
    print(f"damond ({sampler}): sampler {out['sampler']}, overruns {out['overruns']}",
          flush=True)
    return snaps, out["cpu"]


def boundary_error(snaps: list, lo: int, boundary: int, hi: int) -> float:
    tail = snaps[len(snaps) // 2:] or snaps
    errors = [abs(analysis.hot_boundary(s, e, n, lo, hi) - boundary) / (hi - lo)
              for s, e, n, _ in tail]
    return analysis.percentile(errors, 50)


def wss_error(snaps: list, size: int, max_nr: int) -> float:
    tail = snaps[4:] or snaps
    values = [analysis.wss(s, e, n, a, max_nr) for s, e, n, a in tail]
    return abs(analysis.percentile(values, 50) - size) / size


def measure(side: str, attrs: AttrsSpec, seconds: float, args) -> dict:
    def run(pid, attrs, seconds):
        if side == "kernel":
            return kernel_run(pid, attrs, seconds)
        return damond_run(pid, attrs, seconds, side.removeprefix("damond-"))

    proc, info = start_workload("onemap", "--hot", args.hot, "--cold", args.cold)
    try:
        snaps, cpu = run(proc.pid, attrs, seconds)
    finally:
        proc.kill()
        proc.wait()
    (lo, boundary), (_, hi) = info["ranges"]["hot"], info["ranges"]["cold"]
    result = {"boundary": boundary_error(snaps, lo, boundary, hi), "cpu": cpu / seconds,
              "snapshots": len(snaps)}
    proc, info = start_workload("alternate", "--nr", "2", "--size", args.wss_size,
                                "--ms", str(args.alternate_ms))
    try:
        snaps, _ = run(proc.pid, attrs, args.wss_seconds)
    finally:
        proc.kill()
        proc.wait()
    size = info["ranges"]["buf0"][1] - info["ranges"]["buf0"][0]
    result["wss"] = wss_error(snaps, size, attrs.aggr_us // attrs.sample_us)
    return result


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf") if a else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--hot", default="16M")
    ap.add_argument("--cold", default="112M")
    ap.add_argument("--wss-size", default="10M")
    ap.add_argument("--alternate-ms", type=int, default=10_000,
                    help="how long each buffer is accessed in turn")
    ap.add_argument("--wss-seconds", type=float, default=30.0)
    ap.add_argument("--sample-us", type=int, default=5_000,
                    help="sampling interval for both sides (default: the kernel's 5 ms); "
                         "aggregation is 20 samples")
    ap.add_argument("--min-nr-regions", type=int, default=10)
    ap.add_argument("--max-nr-regions", type=int, default=1000)
    ap.add_argument("--sampler", choices=["auto", "per-sample"], default="auto")
    ap.add_argument("--compare-per-sample", action="store_true",
                    help="also run damond with --sampler per-sample (before batch sampling)")
    args = ap.parse_args()
    if not os.path.isdir(SYSFS) or not os.path.exists("/sys/kernel/mm/page_idle/bitmap"):
        print("versus_kernel: needs the kernel's DAMON sysfs interface and page_idle "
              "(run it inside the guest kernel)", file=sys.stderr)
        sys.exit(2)
    attrs = AttrsSpec(sample_us=args.sample_us, aggr_us=20 * args.sample_us,
                      update_us=max(1_000_000, 200 * args.sample_us),
                      min_nr_regions=args.min_nr_regions, max_nr_regions=args.max_nr_regions)
    kernel = measure("kernel", attrs, args.seconds, args)
    sides = [f"damond-{args.sampler}"]
    if args.compare_per_sample and args.sampler != "per-sample":
        sides.insert(0, "damond-per-sample")
    results = {side: measure(side, attrs, args.seconds, args) for side in sides}
    print(f"attributes: sample {attrs.sample_us} us, aggregation {attrs.aggr_us} us, "
          f"regions {attrs.min_nr_regions}-{attrs.max_nr_regions}, {args.seconds:g} s per run; "
          f"kernel snapshots={kernel['snapshots']}")
    for side, damond in results.items():
        print(f"[{side}] snapshots={damond['snapshots']}")
        for key, label in (("boundary", "hot_boundary_error"),
                           ("wss", "wss_estimate_error_p50"), ("cpu", "cpu_s_per_s")):
            print(f"[{side}] {label}: damond={damond[key]:.4f} kernel={kernel[key]:.4f} "
                  f"ratio={_ratio(damond[key], kernel[key]):.2f}")
        if side != sides[-1]:
            print(f"[{side}] aggregations_ratio="
                  f"{_ratio(damond['snapshots'], kernel['snapshots']):.3f} "
                  f"cpu_ratio_vs_kernel={_ratio(damond['cpu'], kernel['cpu']):.2f}")
    damond = results[sides[-1]]
    print(f"aggregations_ratio={_ratio(damond['snapshots'], kernel['snapshots']):.3f}")
    print(f"cpu_ratio_vs_kernel={_ratio(damond['cpu'], kernel['cpu']):.2f}")


if __name__ == "__main__":
    main()
