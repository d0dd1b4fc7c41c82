"""A batch of samples run by Python in a worker thread: the fallback batch sampler.

The scheduler runs an operation set's ``sample_aggregation`` in a worker thread, so that a
whole aggregation interval of samples costs the event loop one wake-up instead of one per
sample, and a slow access check (``smaps`` walks every page of the target: tens of
milliseconds for a few GiB) no longer stalls clients and other kdamonds. Where a set has no
native sampler, this loop runs its ordinary per-sample access checks on the same absolute
schedule as the scheduler's own sampling sleep: sample k's check is due at
``first_deadline_ns + k * interval_ns`` (``CLOCK_MONOTONIC``), but never sooner than one interval
after its ``prepare()`` began: the kernel's kdamond sleeps a whole sampling interval between
preparing and checking, and a shorter window would miss accesses (when a check and the next
prepare take most of an interval, the window shrank towards nothing). A deadline already past
when the sleep would begin is an overrun.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from damond.core.operations import SampledBatch

#: Longest single sleep of a coalesced span: how soon ``stop`` is noticed during one.
MAX_SLEEP_NS = 200_000_000


def run_batch(prepare: Callable[[], None], check: Callable[[], Sequence[np.ndarray]],
              nr_regions: Sequence[int], *, nr_samples: int, interval_ns: int,
              first_deadline_ns: int, stop: bytearray, kind: str,
              quiet: Callable[[], bool] | None = None) -> SampledBatch:
    """Run ``nr_samples`` samples: ``prepare()`` (pick addresses, clear accessed state), sleep
    to the sample's deadline, ``check()`` (one boolean array per target, ``nr_regions[i]``
    long). Ends early, after a whole sample, once ``stop[0]`` is set. The time spent inside
    ``prepare`` and ``check`` is reported as ``check_ns`` (what a perturbing check costs the
    target as well).

    ``quiet()``, when given, answers (at the start, and after each check) whether every
    target is known not to have run since its bits were cleared
    (``damond.ops.access_check.IdleSkip``). Then the samples up to the batch's last are
    coalesced: no wake-up, no clearing, nothing found accessed in them, and the last sample's
    check covers the whole span (an access made anywhere in it is counted once, in that last
    sample). A target waking up in the middle of an aggregation is therefore counted from the
    next one on with per-sample precision; a quiet one costs one wake-up per batch instead of
    one per sample.
    """
    rows = [np.zeros((nr_samples, n), dtype=bool) for n in nr_regions]
    lateness = np.zeros(nr_samples, dtype=np.int64)
    overruns = check_ns = done = coalesced = 0
    clock = time.monotonic_ns
    deadline = first_deadline_ns
    k = 0
    spanned = False  # this sample continues a coalesced span: the bits were not cleared again
    if quiet is not None and quiet():
        # still quiet since the last batch's check: the span starts at once
        coalesced = nr_samples - 1
        deadline += coalesced * interval_ns
        k = done = coalesced
        spanned = True
    while k < nr_samples and not stop[0]:
        t0 = clock()
        if not spanned:
            prepare()
        now = clock()
        check_ns += now - t0
        if deadline < now:
            overruns += 1
        if not spanned:
            # the window: what prepare() cleared is checked no sooner than one interval later,
            # as the kernel's kdamond sleeps a whole interval between prepare and check
            deadline = max(deadline, t0 + interval_ns)
        if deadline > now and not _sleep_until(deadline, stop):
            break
        woke = clock()
        lateness[k] = woke - deadline
        found = check()
        check_ns += clock() - woke
        for row, hits in zip(rows, found, strict=True):
            row[k] = hits
        k += 1
        done = k
        spanned = False
        if quiet is not None and k < nr_samples - 1 and quiet():
            skip = nr_samples - 1 - k
            coalesced += skip
            deadline += skip * interval_ns
            k = done = nr_samples - 1  # rows and lateness of the span stay 0
            spanned = True
        deadline += interval_ns
    return SampledBatch(accessed=[r[:done] for r in rows], lateness_ns=lateness[:done],
                        overruns=overruns, check_ns=check_ns, kind=kind, coalesced=coalesced)


def _sleep_until(deadline_ns: int, stop: bytearray) -> bool:
    """Sleep to ``deadline_ns`` (``CLOCK_MONOTONIC``) in steps of at most ``MAX_SLEEP_NS``;
    False when ``stop`` was set meanwhile."""
    while True:
        left = deadline_ns - time.monotonic_ns()
        if left <= 0:
            return True
        time.sleep(min(left, MAX_SLEEP_NS) / 1e9)
        if stop[0]:
            return False
