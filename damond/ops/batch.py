"""A batch of samples run by Python in a worker thread: the fallback batch sampler.

The scheduler runs an operation set's ``sample_aggregation`` in a worker thread, so that a
whole aggregation interval of samples costs the event loop one wake-up instead of one per
sample, and a slow access check (``smaps`` walks every page of the target: tens of
milliseconds for a few GiB) no longer stalls clients and other kdamonds. Where a set has no
native sampler, this loop runs its ordinary per-sample access checks on the same absolute
schedule as the scheduler's own sampling sleep: sample k's check is due at
``first_deadline_ns + k * interval_ns`` (``CLOCK_MONOTONIC``); a deadline already past when the
sleep would begin is an overrun, and the schedule restarts from then, as in the scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from damond.core.operations import SampledBatch


def run_batch(prepare: Callable[[], None], check: Callable[[], Sequence[np.ndarray]],
              nr_regions: Sequence[int], *, nr_samples: int, interval_ns: int,
              first_deadline_ns: int, stop: bytearray, kind: str) -> SampledBatch:
    """Run ``nr_samples`` samples: ``prepare()`` (pick addresses, clear accessed state), sleep
    to the sample's deadline, ``check()`` (one boolean array per target, ``nr_regions[i]``
    long). Ends early, after a whole sample, once ``stop[0]`` is set. The time spent inside
    ``prepare`` and ``check`` is reported as ``check_ns`` (what a perturbing check costs the
    target as well)."""
    rows = [np.zeros((nr_samples, n), dtype=bool) for n in nr_regions]
    lateness = np.zeros(nr_samples, dtype=np.int64)
    overruns = check_ns = done = 0
    clock = time.monotonic_ns
    deadline = first_deadline_ns
    for k in range(nr_samples):
        if stop[0]:
            break
        t0 = clock()
        prepare()
        now = clock()
        check_ns += now - t0
        if deadline < now:
            overruns += 1
            deadline = now + interval_ns
        if deadline > now:
            time.sleep((deadline - now) / 1e9)
        woke = clock()
        lateness[k] = woke - deadline
        found = check()
        check_ns += clock() - woke
        for row, hits in zip(rows, found, strict=True):
            row[k] = hits
        done += 1
        deadline += interval_ns
    return SampledBatch(accessed=[r[:done] for r in rows], lateness_ns=lateness[:done],
                        overruns=overruns, check_ns=check_ns, kind=kind)
