"""Deliberately simple, scalar ports of the kernel's DAMON/DAMOS algorithms, for differential
tests of damond's vectorised implementations.

Written from ``mm/damon/core.c`` of Linux v6.16 (torvalds/linux @004ded6b) as described in
damon-semantics.md §2 and §4.2-4.3, without looking at how damond does it: regions are plain
objects in Python lists (the kernel's linked lists), loops visit one region at a time in the
kernel's order, and splits insert a new object right after the split one. Only damond's data
classes and score functions may be used here; nothing from damond's algorithms.

``min_region`` plays the role of ``DAMON_MIN_REGION`` everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

ULONG_MAX = (1 << 64) - 1
#: PAGE_SIZE used for the time-quota throughput default (``PAGE_SIZE * 1024`` bytes per ms).
PAGE_SIZE = 4096


def align_down(x: int, a: int) -> int:
    return x // a * a


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


# ---------------------------------------------------------------------------------------------
# regions


@dataclass(eq=False)
class KRegion:
    """``struct damon_region`` (minus ``sampling_addr``)."""

    start: int
    end: int
    nr_accesses: int = 0
    nr_accesses_bp: int = 0
    last_nr_accesses: int = 0
    age: int = 0

    def sz(self) -> int:
        return self.end - self.start

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (self.start, self.end, self.nr_accesses, self.nr_accesses_bp,
                self.last_nr_accesses, self.age)

    def copy(self) -> KRegion:
        return KRegion(*self.as_tuple())


def regions_from_tuples(rows) -> list[KRegion]:
    return [KRegion(*row) for row in rows]


def split_region_at(regions: list[KRegion], r: KRegion, sz_r: int) -> KRegion:
    """``damon_split_region_at()``: ``r`` keeps ``[start, start + sz_r)``; a new region with
    the rest and a copy of every counter goes right after it. Returns the new region."""
    new = KRegion(r.start + sz_r, r.end)
    r.end = new.start
    new.age = r.age
    new.last_nr_accesses = r.last_nr_accesses
    new.nr_accesses_bp = r.nr_accesses_bp
    new.nr_accesses = r.nr_accesses
    regions.insert(_index(regions, r) + 1, new)
    return new


def _index(regions: list[KRegion], r: KRegion) -> int:
    for i, x in enumerate(regions):
        if x is r:
            return i
    raise ValueError("region not in the list")


def _next(regions: list[KRegion], r: KRegion) -> KRegion | None:
    i = _index(regions, r)
    return regions[i + 1] if i + 1 < len(regions) else None


# ---------------------------------------------------------------------------------------------
# merge (§2.1)


def merge_two_regions(regions: list[KRegion], left: KRegion, right: KRegion) -> None:
    sz_l = left.sz()
    sz_r = right.sz()
    left.nr_accesses = (left.nr_accesses * sz_l + right.nr_accesses * sz_r) // (sz_l + sz_r)
    left.nr_accesses_bp = left.nr_accesses * 10000
    left.age = (left.age * sz_l + right.age * sz_r) // (sz_l + sz_r)
    left.end = right.end
    del regions[_index(regions, right)]


def merge_regions_of(regions: list[KRegion], thres: int, sz_limit: int) -> None:
    """``damon_merge_regions_of()``, in place, one region at a time."""
    prev = None
    for r in list(regions):  # "safe" iteration: the list of the regions at the start
        if abs(r.nr_accesses - r.last_nr_accesses) > thres:
            r.age = 0
        else:
            r.age += 1
        if (prev is not None and prev.end == r.start
                and abs(prev.nr_accesses - r.nr_accesses) <= thres
                and prev.sz() + r.sz() <= sz_limit):
            merge_two_regions(regions, prev, r)
        else:
            prev = r


def kdamond_merge_regions(targets: list[list[KRegion]], threshold: int, sz_limit: int,
                          max_nr_regions: int, max_thres: int) -> None:
    """``kdamond_merge_regions()`` of v6.10+, in place (unsigned int threshold)."""
    while True:
        nr_regions = 0
        for t in targets:
            merge_regions_of(t, threshold, sz_limit)
            nr_regions += len(t)
        threshold = max(1, (threshold * 2) & 0xFFFF_FFFF)
        if not (nr_regions > max_nr_regions and threshold // 2 < max_thres):
            return


# ---------------------------------------------------------------------------------------------
# damon_set_regions (v6.1+ with hole filling)


def _intersect(r: KRegion, start: int, end: int) -> bool:
    return not (r.end <= start or end <= r.start)


def set_regions(regions: list[KRegion], ranges: list[tuple[int, int]],
                min_region: int) -> list[KRegion]:
    """``damon_set_regions()`` on a copy of ``regions``; returns the new list.

    The kernel walks its linked list with a cursor ``r`` that keeps its position from one
    range to the next (``damon_for_each_region_from``); here the cursor is an index, with
    ``len(regions)`` standing for the list head.
    """
    regions = [r.copy() for r in regions]
    # remove regions which are not in the new ranges
    for r in list(regions):
        if not any(_intersect(r, s, e) for s, e in ranges):
            del regions[_index(regions, r)]

    cur = 0
    for rs, re_ in ranges:
        first = last = None
        while cur < len(regions):
            r = regions[cur]
            if _intersect(r, rs, re_):
                if first is None:
                    first = r
                last = r
            if r.start >= re_:
                break
            cur += 1
        if first is None:
            # damon_insert_region(newr, damon_prev_region(r), r, t): right before the cursor
            regions.insert(cur, KRegion(align_down(rs, min_region), align_up(re_, min_region)))
            cur += 1  # the cursor still points at the same region
        else:
            first.start = align_down(rs, min_region)
            last.end = align_up(re_, min_region)
            # damon_fill_regions_holes(first, last, t)
            r = first
            while r is not last:
                nxt = _next(regions, r)
                if r.end != nxt.start:
                    regions.insert(_index(regions, r) + 1, KRegion(r.end, nxt.start))
                    cur += 1  # an insertion before the cursor
                r = nxt
    return regions


# ---------------------------------------------------------------------------------------------
# DAMOS (§4.2-4.3), without filters, quota goals and walks


@dataclass
class KPattern:
    min_sz: int = 0
    max_sz: int = 0
    min_nr_accesses: int = 0
    max_nr_accesses: int = 0
    min_age: int = 0
    max_age: int = 0


@dataclass
class KQuota:
    """``struct damos_quota`` with its private fields. ``charged_from`` is in ms; None is the
    never-set value (``charged_from = 0`` at start, which always opens a window)."""

    ms: int = 0
    sz: int = 0
    reset_interval: int = 0
    weight_sz: int = 0
    weight_nr_accesses: int = 0
    weight_age: int = 0
    esz: int = 0
    total_charged_sz: int = 0
    total_charged_ns: int = 0
    charged_sz: int = 0
    charged_from: int | None = None
    charge_target_from: int | None = None  # target index (the kernel keeps a pointer)
    charge_addr_from: int = 0
    min_score: int = 0


@dataclass
class KStat:
    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    qt_exceeds: int = 0

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.nr_tried, self.sz_tried, self.nr_applied, self.sz_applied,
                self.qt_exceeds)


@dataclass(eq=False)  # schemes are told apart by identity, as the kernel's pointers are
class KScheme:
    action: str
    pattern: KPattern
    quota: KQuota
    apply_interval_us: int = 0
    activated: bool = True
    next_apply_sis: int = 0
    stat: KStat = field(default_factory=KStat)


@dataclass
class KCtx:
    """What the apply pass reads of ``struct damon_ctx``.

    ``get_scheme_score(ctx, target_index, region, scheme)`` and
    ``apply_scheme(ctx, target_index, region, scheme)`` stand for the operation set's
    callbacks; ``applied`` records every ``apply_scheme`` call as
    ``(target_index, start, end, scheme_index)``.
    """

    targets: list[list[KRegion]]
    schemes: list[KScheme]
    min_region: int
    sample_interval: int
    aggr_interval: int
    passed_sample_intervals: int
    get_scheme_score: Callable[[KCtx, int, KRegion, KScheme], int] | None
    apply_scheme: Callable[[KCtx, int, KRegion, KScheme], int]
    applied: list[tuple[int, int, int, int]] = field(default_factory=list)


def valid_target_pattern(r: KRegion, s: KScheme) -> bool:
    """``__damos_valid_target()`` (v6.7+: compares ``nr_accesses_bp / 10000``)."""
    p = s.pattern
    nr_accesses = r.nr_accesses_bp // 10000
    sz = r.sz()
    return (p.min_sz <= sz and sz <= p.max_sz
            and p.min_nr_accesses <= nr_accesses and nr_accesses <= p.max_nr_accesses
            and p.min_age <= r.age and r.age <= p.max_age)


def damos_valid_target(c: KCtx, ti: int, r: KRegion, s: KScheme) -> bool:
    ret = valid_target_pattern(r, s)
    if not ret or not s.quota.esz or c.get_scheme_score is None:
        return ret
    return c.get_scheme_score(c, ti, r, s) >= s.quota.min_score


def damos_skip_charged_region(c: KCtx, ti: int, r: KRegion, s: KScheme
                              ) -> tuple[bool, KRegion]:
    """Returns (skip, region to go on with)."""
    quota = s.quota
    regions = c.targets[ti]
    if quota.charge_target_from is not None:
        if ti != quota.charge_target_from:
            return True, r
        if r is regions[-1]:
            quota.charge_target_from = None
            quota.charge_addr_from = 0
            return True, r
        if quota.charge_addr_from and r.end <= quota.charge_addr_from:
            return True, r
        if quota.charge_addr_from and r.start < quota.charge_addr_from:
            sz_to_skip = align_down(quota.charge_addr_from - r.start, c.min_region)
            if not sz_to_skip:
                if r.sz() <= c.min_region:
                    return True, r
                sz_to_skip = c.min_region
            r = split_region_at(regions, r, sz_to_skip)
        quota.charge_target_from = None
        quota.charge_addr_from = 0
    return False, r


def damos_apply_scheme(c: KCtx, ti: int, r: KRegion, s: KScheme) -> None:
    quota = s.quota
    sz = r.sz()
    sz_applied = 0
    regions = c.targets[ti]
    # c.ops.apply_scheme always exists here
    if quota.esz and quota.charged_sz + sz > quota.esz:
        sz = align_down(quota.esz - quota.charged_sz, c.min_region)
        if not sz:
            s.stat.nr_tried += 1  # goto update_stat
            s.stat.sz_tried += sz
            return
        split_region_at(regions, r, sz)
    # no core filters
    c.applied.append((ti, r.start, r.end, c.schemes.index(s)))
    sz_applied = c.apply_scheme(c, ti, r, s)
    quota.total_charged_ns += 0  # the fake clock does not advance while applying
    quota.charged_sz += sz
    if quota.esz and quota.charged_sz >= quota.esz:
        quota.charge_target_from = ti
        quota.charge_addr_from = r.end + 1
    if s.action != "stat":
        r.age = 0
    s.stat.nr_tried += 1
    s.stat.sz_tried += sz
    if sz_applied:
        s.stat.nr_applied += 1
    s.stat.sz_applied += sz_applied


def damon_do_apply_schemes(c: KCtx, ti: int, r: KRegion) -> None:
    for s in c.schemes:
        quota = s.quota
        if c.passed_sample_intervals < s.next_apply_sis:
            continue
        if not s.activated:
            continue
        if quota.esz and quota.charged_sz >= quota.esz:
            continue
        skip, r = damos_skip_charged_region(c, ti, r, s)
        if skip:
            continue
        if not damos_valid_target(c, ti, r, s):
            continue
        damos_apply_scheme(c, ti, r, s)


def damos_set_effective_quota(quota: KQuota) -> None:
    if not quota.ms:
        quota.esz = quota.sz
        return
    esz = ULONG_MAX
    if quota.total_charged_ns:
        throughput = quota.total_charged_sz * 1000000 // quota.total_charged_ns
    else:
        throughput = PAGE_SIZE * 1024
    esz = min((throughput * quota.ms) & ULONG_MAX, esz)
    if quota.sz and quota.sz < esz:
        esz = quota.sz
    quota.esz = esz


def damos_adjust_quota(c: KCtx, s: KScheme, now_ms: int) -> None:
    quota = s.quota
    if not quota.ms and not quota.sz:
        return
    if quota.charged_from is None or now_ms >= quota.charged_from + quota.reset_interval:
        if quota.esz and quota.charged_sz >= quota.esz:
            s.stat.qt_exceeds += 1
        quota.total_charged_sz += quota.charged_sz
        quota.charged_from = now_ms
        quota.charged_sz = 0
        damos_set_effective_quota(quota)
    if c.get_scheme_score is None:
        return
    histogram = [0] * 100
    max_score = 0
    for ti, t in enumerate(c.targets):
        for r in t:
            if not valid_target_pattern(r, s):
                continue
            score = c.get_scheme_score(c, ti, r, s)
            histogram[score] += r.sz()
            if score > max_score:
                max_score = score
    cumulated_sz = 0
    score = max_score
    while True:
        cumulated_sz += histogram[score]
        if cumulated_sz >= quota.esz or not score:
            break
        score -= 1
    quota.min_score = score


def kdamond_apply_schemes(c: KCtx, now_ms: int) -> bool:
    """One ``kdamond_apply_schemes()`` call. Returns False when no scheme was due and active
    (then nothing at all happened, not even the next apply time update)."""
    sample_interval = c.sample_interval or 1
    has_schemes_to_apply = False
    for s in c.schemes:
        if c.passed_sample_intervals < s.next_apply_sis:
            continue
        if not s.activated:
            continue
        has_schemes_to_apply = True
        damos_adjust_quota(c, s, now_ms)
    if not has_schemes_to_apply:
        return False
    for ti, t in enumerate(c.targets):
        # damon_for_each_region_safe: the next region is fixed before the body runs
        r = t[0] if t else None
        while r is not None:
            nxt = _next(t, r)
            damon_do_apply_schemes(c, ti, r)
            r = nxt
    for s in c.schemes:
        if c.passed_sample_intervals < s.next_apply_sis:
            continue
        s.next_apply_sis = c.passed_sample_intervals + (
            s.apply_interval_us or c.aggr_interval) // sample_interval
    return True


def wmark_wait_us(metric: int | None, high: int, mid: int, low: int, interval: int,
                  activated: bool) -> tuple[int, bool]:
    """``damos_wmark_wait_us()``: (wait, new activated state); ``metric`` None = no metric."""
    if metric is None:
        return 0, activated
    if metric > high or low > metric:
        return interval, False
    if high >= metric >= mid and not activated:
        return interval, False
    return 0, True
