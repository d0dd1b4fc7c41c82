"""DAMOS quotas: charge windows, the effective size quota and score-based prioritisation.

Follows ``damos_adjust_quota()``, ``damos_set_effective_quota()``, ``damos_quota_score()``
and ``damon_feed_loop_next_input()`` of Linux 6.18, quota goals (v6.8+) included. The core
reads no file: goal metrics other than ``user_input`` come from a reader the caller hands in
(the operation set's ``goal_metric``, which falls back to ``damond.ops.common``'s system
reader).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from damond.core.context import QuotaGoal, Scheme
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


#: Reads one goal's metric (anything but ``user_input``): the value the kernel's
#: ``damos_set_quota_goal_current_value()`` would compute; for ``some_mem_psi_us`` the system's
#: cumulative "some" memory stall time in microseconds. None means unknown (scored as 0).
GoalReader = Callable[[QuotaGoal], "int | None"]


def _no_reader(goal: QuotaGoal) -> None:
    return None


def set_goal_current_value(goal: QuotaGoal, read: GoalReader) -> None:
    """``damos_set_quota_goal_current_value()``: ``user_input`` keeps the user's value; PSI
    scores the stall time since the previous measurement; the others are read as they are."""
    if goal.metric == "user_input":
        return
    value = read(goal) or 0
    if goal.metric == "some_mem_psi_us":
        goal.current_value = max(value - goal.last_psi_total, 0)
        goal.last_psi_total = value
    else:
        goal.current_value = value


def quota_score(goals: list[QuotaGoal], read: GoalReader) -> int:
    """``damos_quota_score()``: measure every goal and return the highest
    ``current * 10000 / target`` (the least aggressive choice)."""
    highest = 0
    for g in goals:
        set_goal_current_value(g, read)
        highest = max(highest, g.current_value * 10_000 // g.spec.target_value)
    return highest


def set_effective_quota(scheme: Scheme, read: GoalReader = _no_reader) -> None:
    """``damos_set_effective_quota()`` (6.18): without a time quota and goals, the size quota;
    else the smallest of what the goals' feedback loop asks (``esz_bp / 10000``), what the time
    quota allows at the measured throughput and the size quota (0 in ``sz`` means none)."""
    q = scheme.quota
    spec = scheme.spec.quota
    if not spec.ms and not q.goals:
        q.esz = spec.sz
        return
    esz = ULONG_MAX
    if q.goals:
        score = quota_score(q.goals, read)
        q.esz_bp = feed_loop_next_input(max(q.esz_bp, 10_000), score)
        esz = q.esz_bp // 10_000
    if spec.ms:
        esz = min(effective_size_quota(spec.ms, 0, q.total_charged_sz, q.total_charged_ns), esz)
    if spec.sz and spec.sz < esz:
        esz = spec.sz
    q.esz = esz


def open_window_if_due(scheme: Scheme, now_ms: int, read: GoalReader = _no_reader) -> bool:
    """The charge-window part of ``damos_adjust_quota()`` (6.18): the very first call opens the
    first window and sets the effective quota; then, when the reset interval has passed (at
    once with a 0 interval, so the first pass computes the quota twice, as the kernel does), a
    new window starts: ``qt_exceeds`` counts a closing window that used its whole quota, the
    charge moves to the total and the effective quota is recomputed.

    Returns True when a window opened.
    """
    q = scheme.quota
    spec = scheme.spec.quota
    opened = False
    if q.charged_from_ms is None:
        q.charged_from_ms = now_ms
        set_effective_quota(scheme, read)
        opened = True
    if now_ms < q.charged_from_ms + spec.reset_interval_ms:
        return opened
    if q.esz and q.charged_sz >= q.esz:
        scheme.stats.qt_exceeds += 1
    q.total_charged_sz += q.charged_sz
    q.charged_from_ms = now_ms
    q.charged_sz = 0
    set_effective_quota(scheme, read)
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

