"""DAMOS quotas: charge windows, the effective size quota and score-based prioritisation.

Follows ``damos_adjust_quota()``, ``damos_set_effective_quota()`` and
``damon_feed_loop_next_input()`` of Linux v6.16, without quota goals (v6.8+), which damond's
5.18/5.19 interface does not expose.
"""

from __future__ import annotations

import numpy as np

from damond.core.context import Scheme
from damond.core.operations import MAX_SCORE
from damond.core.spec import ULONG_MAX

#: Throughput assumed for a time quota before any apply was measured: the kernel's
#: ``PAGE_SIZE * 1024`` bytes per millisecond with the 4 KiB pages of its reference (4 MiB/ms).
#: Only a first guess, replaced by the measured throughput after the first apply.
DEFAULT_THROUGHPUT_PER_MS = 4 << 20


def feed_loop_next_input(last_input: int, score: int) -> int:
    """``damon_feed_loop_next_input()``: the next input expected to reach the goal score 10000,
    assuming input and score are proportional; never below 10000."""
    goal = 10_000
    min_input = 10_000
    if score == goal:
        return last_input
    if score >= goal * 2:
        return min_input
    diff = abs(score - goal)
    if last_input < ULONG_MAX // diff:
        compensation = last_input * diff // goal
    else:
        compensation = last_input // goal * diff
    if score > goal:
        return max(last_input - compensation, min_input)
    if last_input < ULONG_MAX - compensation:
        return last_input + compensation
    return ULONG_MAX


def effective_size_quota(ms: int, sz: int, total_charged_sz: int, total_charged_ns: int) -> int:
    """``damos_set_effective_quota()`` without goals: the size quota, or what the time quota
    allows at the throughput measured so far, whichever is smaller (0 means unlimited)."""
    if not ms:
        return sz
    if total_charged_ns:
        throughput = total_charged_sz * 1_000_000 // total_charged_ns
    else:
        throughput = DEFAULT_THROUGHPUT_PER_MS
    esz = min(throughput * ms, ULONG_MAX)
    if sz and sz < esz:
        esz = sz
    return esz


def open_window_if_due(scheme: Scheme, now_ms: int) -> bool:
    """Start a new charge window when the reset interval has passed (the first call always
    opens one). Counts ``qt_exceeds`` when the closing window used its whole quota.

    Returns True when a window opened.
    """
    q = scheme.quota
    spec = scheme.spec.quota
    if q.charged_from_ms is not None and now_ms < q.charged_from_ms + spec.reset_interval_ms:
        return False
    if q.esz and q.charged_sz >= q.esz:
        scheme.stats.qt_exceeds += 1
    q.total_charged_sz += q.charged_sz
    q.charged_from_ms = now_ms
    q.charged_sz = 0
    q.esz = effective_size_quota(spec.ms, spec.sz, q.total_charged_sz, q.total_charged_ns)
    return True


def min_score_for(scores_and_sizes: list[tuple[np.ndarray, np.ndarray]], esz: int) -> int:
    """The lowest score to act on so that the highest-scored regions fill the quota first.

    Walks the size histogram of scores from the highest down until ``esz`` bytes are covered
    (or score 0 is reached), like the tail of ``damos_adjust_quota()``.
    """
    histogram = np.zeros(MAX_SCORE + 1, dtype=np.uint64)
    max_score = 0
    for scores, sizes in scores_and_sizes:
        if scores.size == 0:
            continue
        np.add.at(histogram, scores.astype(np.int64), sizes.astype(np.uint64))
        max_score = max(max_score, int(scores.max()))
    cumulated = 0
    score = max_score
    while True:
        cumulated += int(histogram[score])
        if cumulated >= esz or score == 0:
            return score
        score -= 1

