"""How close damond's page_idle sampler gets to the system calls it cannot avoid.

Per region-sample µs of CPU (the whole process's, ``getrusage(RUSAGE_SELF)``: every thread and
the kernel's work in its system calls) for, side by side in one run:

``native``  ``idle_sampler.sample_batch(native=True)``: the C loop without the GIL (median of
            ``--repeat`` runs alternated with the floor's)
``python``  the same call forced to the pure-Python twin
``floor``   ``_idle_sampler.floor``: exactly the system calls the sampler makes for the same
            sampling addresses (preads, pwrites, and the check's io_uring submission when the
            sampler used one), replayed with nothing around them (its own CPU clock,
            ``CLOCK_PROCESS_CPUTIME_ID``, the same count as ``getrusage``)

over a 256 MiB idle target (MADV_NOHUGEPAGE, every page touched once) split into N = 10, 100
and 1000 equal regions (DAMON's min = max = N). Needs page_idle and root (the project's guest
kernel: ``guest-run --mem 2G -- .venv/bin/python bench/floor.py``); elsewhere it says so and
exits 0. The last line is ``sampler_over_floor=<max over N of native/floor>`` (goal <= 1.3).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import textwrap
import time

import numpy as np

from damond.ops.access_check import zero_page_pfn
from damond.platform import idle_sampler
from damond.platform.page_idle import BITMAP_PATH, available

MiB = 1 << 20
CHILD = textwrap.dedent("""
    import ctypes, mmap, sys, time
    size = int(sys.argv[1])
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    for i in range(0, size, mmap.PAGESIZE):
        m[i] = 1
    print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
    time.sleep(3600)
""")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def regions(addr: int, size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    bounds = addr + (np.arange(n + 1, dtype=np.uint64) * np.uint64(size // n))
    return bounds[:-1], bounds[1:]


def run_sampler(target, bfd: int, zero: int, nr: int, interval_ns: int, seed: int,
                native: bool) -> tuple[float, float, int, str]:
    c0, w0 = cpu_s(), time.monotonic()
    r = idle_sampler.sample_batch([target], bitmap_fd=bfd, kpageflags_fd=-1, zero_pfn=zero,
                                  nr_samples=nr, interval_ns=interval_ns,
                                  first_deadline_ns=time.monotonic_ns() + interval_ns,
                                  seed=seed, native=native)
    if r.errors != [0] or r.samples_done != nr:
        raise SystemExit(f"sampler failed: errors={r.errors} done={r.samples_done}")
    return cpu_s() - c0, time.monotonic() - w0, r.overruns, r.check_reads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="target size in MiB (256)")
    ap.add_argument("--region-samples", type=int, default=10_000,
                    help="region-samples per measurement (10000); at least 10 samples")
    ap.add_argument("--interval-us", type=int, default=1000,
                    help="the samplers' sampling interval (1000); CPU is what is compared")
    ap.add_argument("--nr", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeat", type=int, default=3,
                    help="floor and native measured this many times, alternately; medians "
                         "(3: one guest run showed +-30%% between repeats); python once")
    ap.add_argument("--dry-run-bitmap", metavar="FILE",
                    help="a regular file in the bitmap's place, to check that the bench itself "
                         "runs where page_idle is absent (the figures then mean nothing)")
    args = ap.parse_args(argv)
    ok, why = (True, "dry run") if args.dry_run_bitmap else available()
    if not ok:
        print(f"page_idle unavailable here: {why}; nothing to measure")
        return 0
    if idle_sampler.KIND != "native":
        print(f"the native sampler is absent: {idle_sampler.WHY}")
        return 1
    from damond.platform import _idle_sampler

    size = args.size * MiB
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(size)], stdout=subprocess.PIPE,
                             text=True)
    try:
        addr = int(child.stdout.readline())
        with open("/proc/sys/vm/compact_memory", "w") as f:
            f.write("1")  # lru_add_drain_all(): every page on the LRU, able to take the flag
        pfd = os.open(f"/proc/{child.pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        bfd = os.open(args.dry_run_bitmap or BITMAP_PATH, os.O_RDWR | os.O_CLOEXEC | (
            os.O_CREAT if args.dry_run_bitmap else 0), 0o600)
        zero = zero_page_pfn()
        print(f"# target {args.size} MiB, interval {args.interval_us} us, "
              f"{args.region_samples} region-samples per figure, CPU us per region-sample")
        ratios = []
        for n in args.nr:
            starts, ends = regions(addr, size, n)
            target = idle_sampler.SampleTarget(pfd, starts, ends, np.zeros(0, np.uint64),
                                               np.zeros(0, np.uint64))
            nr = max(10, args.region_samples // n)
            seed = 1000 + n
            addrs = np.concatenate([idle_sampler.pick_addrs(starts, ends, seed, k * n)
                                    for k in range(nr)])
            per = n * nr
            floors, natives = [], []
            # untimed warm-up, which also tells how the sampler reads (io_uring or pread)
            nat = run_sampler(target, bfd, zero, nr, args.interval_us * 1000, seed, True)
            for i in range(args.repeat):  # alternated: background noise hits both alike
                for what in ("native", "floor") if i % 2 == 0 else ("floor", "native"):
                    if what == "native":
                        nat = run_sampler(target, bfd, zero, nr, args.interval_us * 1000, seed,
                                          True)
                        natives.append(nat[0] * 1e6 / per)
                        continue
                    # the same calls as the sampler: its check reads in one io_uring submission
                    # when it used io_uring
                    fl_cpu, fl_wall, calls = _idle_sampler.floor(
                        pfd, bfd, zero, addrs, nr, nat[3] == "io_uring")
                    floors.append(fl_cpu / 1e3 / per)
            py = run_sampler(target, bfd, zero, nr, args.interval_us * 1000, seed, False)
            floor_us, nat_us = float(np.median(floors)), float(np.median(natives))
            py_us = py[0] * 1e6 / per
            ratio = nat_us / floor_us
            ratios.append(ratio)
            print(f"N={n} samples={nr} native_us={nat_us:.1f} python_us={py_us:.1f} "
                  f"floor_us={floor_us:.1f} native/floor={ratio:.2f} "
                  f"python/floor={py_us / floor_us:.2f} syscalls_per_region_sample="
                  f"{calls / per:.2f} spread native={min(natives):.1f}-{max(natives):.1f} "
                  f"floor={min(floors):.1f}-{max(floors):.1f} wall_s native={nat[1]:.2f} "
                  f"python={py[1]:.2f} floor={fl_wall / 1e9:.2f} "
                  f"overruns native={nat[2]} python={py[2]} check_reads={nat[3]}")
        os.close(pfd)
        os.close(bfd)
    finally:
        child.kill()
        child.wait()
    print(f"sampler_over_floor={max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
