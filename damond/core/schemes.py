"""DAMOS: matching regions to schemes and applying actions within quotas and watermarks.

Follows ``kdamond_apply_schemes()``, ``damon_do_apply_schemes()``, ``damos_apply_scheme()``,
``damos_skip_charged_region()``, ``damos_filter_match()``/``damos_core_filter_out()``, the
DAMOS walk (``damos_walk()``, ``damos_walk_call_walk()``, ``damos_walk_complete()``,
``damos_walk_cancel()``: what the sysfs tried regions are made of) and ``damos_wmark_wait_us()``
of Linux 6.18 (the v6.7+ per-scheme apply interval, ``nr_accesses_bp``-based matching, v6.15+
core/ops filter split). Ops filters are evaluated by the operation set while it applies.

One apply pass decides, in the kernel's order (regions outer, schemes inner), which region
pieces each scheme acts on, charging quotas and splitting regions at quota edges as it goes;
the operation set then applies the whole ordered list in one call, so it can batch system
calls. Charging does not depend on what the operation set reports as applied (the kernel
charges the tried size too), so deciding first and applying after gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from damond.core.context import Context, Scheme, Target
from damond.core.operations import OpsHandle, SchemeAction
from damond.core.quota import min_score_for, open_window_if_due
from damond.core.regions import Regions, align_down
from damond.core.spec import FilterSpec
from damond.errors import DamonError

# ---------------------------------------------------------------------------------------------
# DAMOS walk: the regions each scheme tried during one apply pass


@dataclass
class TriedRegion:
    """One region a scheme tried (``damos_sysfs_populate_region_dir()``): its range, access
    frequency (``nr_accesses_bp / 10000``) and age when the action was applied to it, and the
    bytes of it that passed the operation set's filters."""

    start: int
    end: int
    nr_accesses: int
    age: int
    sz_filter_passed: int = 0


@dataclass(eq=False)
class WalkControl:
    """A pending ``damos_walk()`` request (6.14+; the 6.2 ``update_schemes_tried_regions``
    before it). Installed on a context (``Context.walk_control``), it collects, for every
    scheme, the regions the scheme tries during its next apply pass after the request; once
    every scheme has completed one pass it is done. It is canceled when no pass can come: no
    schemes, every scheme deactivated by watermarks, or the kdamond stopping.

    ``on_done`` is called once, when the request is done or canceled (the scheduler sets an
    event there). ``total_bytes_only`` keeps the byte totals and not the regions
    (``update_schemes_tried_bytes``).
    """

    total_bytes_only: bool = False
    on_done: Callable[[], None] | None = None
    regions: dict[int, list[TriedRegion]] = field(default_factory=dict)
    total_bytes: dict[int, int] = field(default_factory=dict)
    done: bool = False
    canceled: bool = False
    #: (action index, scheme index, tried region) of the pass under way
    _pending: list[tuple[int, int, TriedRegion]] = field(default_factory=list)

    def _finish(self, *, canceled: bool) -> None:
        self.canceled = canceled
        self.done = True
        if self.on_done is not None:
            self.on_done()


def walk_request(ctx: Context, control: WalkControl) -> None:
    """Install ``control`` (``damos_walk()``; run it inside the kdamond, e.g. through
    ``Kdamond.call``). EBUSY while another walk is pending, as the kernel answers."""
    if ctx.walk_control is not None:
        raise DamonError("EBUSY", "another DAMOS walk (tried regions update) is pending")
    ctx.walk_control = control


def walk_cancel(ctx: Context) -> None:
    """``damos_walk_cancel()``: the pending walk cannot complete; wake its requester."""
    control = ctx.walk_control
    if control is None:
        return
    ctx.walk_control = None
    control._pending.clear()
    control._finish(canceled=True)


def _walk_record(ctx: Context, s: Scheme, si: int, walk: _TargetWalk, cur: int,
                 action_index: int) -> None:
    """``damos_walk_call_walk()``: remember the region about to be applied (before the age
    reset, as the kernel's walk callback sees it)."""
    control = ctx.walk_control
    if control is None or s.walk_completed:
        return
    control._pending.append((action_index, si, TriedRegion(
        walk.st[cur], walk.en[cur], walk.bp[cur] // 10000, walk.age[cur])))


def _walk_finish_pass(ctx: Context, sz_passed: list[int]) -> None:
    """Store the pass's tried regions with their filter-passed bytes."""
    control = ctx.walk_control
    if control is None:
        return
    for ai, si, tried in control._pending:
        tried.sz_filter_passed = sz_passed[ai] if ai < len(sz_passed) else 0
        control.total_bytes[si] = control.total_bytes.get(si, 0) + tried.end - tried.start
        if not control.total_bytes_only:
            control.regions.setdefault(si, []).append(tried)
    control._pending.clear()


def _walk_complete(ctx: Context, s: Scheme) -> None:
    """``damos_walk_complete()``: ``s`` finished a pass; when every scheme has, the walk is
    done."""
    control = ctx.walk_control
    if control is None:
        return
    s.walk_completed = True
    if not all(x.walk_completed for x in ctx.schemes):
        return
    for x in ctx.schemes:
        x.walk_completed = False
    ctx.walk_control = None
    control._finish(canceled=False)


# ---------------------------------------------------------------------------------------------
# core filters


def _filter_match(ctx: Context, walk: _TargetWalk, cur: int, ti: int, f: FilterSpec) -> bool:
    """``damos_filter_match()`` for the core types. An ``addr`` filter splits a region that
    straddles its edge (aligned down to ``min_region``) so that the region at ``cur`` lies
    wholly inside or outside; the right piece waits for the next pass, as in the kernel."""
    if f.type == "target":
        matched = ti == f.target_idx
    elif f.type == "addr":
        start = align_down(f.addr_start, ctx.min_region)
        end = align_down(f.addr_end, ctx.min_region)
        rs, re_ = walk.st[cur], walk.en[cur]
        if start <= rs and re_ <= end:
            matched = True
        elif re_ <= start or end <= rs:
            matched = False
        elif rs < start:
            walk.split(cur, start - rs)
            matched = False
        else:
            walk.split(cur, end - rs)
            matched = True
    else:
        return False
    return matched == f.matching


def core_filter_out(ctx: Context, walk: _TargetWalk, cur: int, ti: int,
                    s: Scheme) -> bool | None:
    """``damos_core_filter_out()``: the first core filter that matches decides (rejected
    unless it allows); memory no filter matched follows the default (6.15+: rejected when
    the last core filter allows and no ops filter follows). Returns True (filtered out),
    False, or None when an allowing filter matched (``core_filters_allowed``: the operation
    set then skips its own filters)."""
    for f in s.core_filters:
        if _filter_match(ctx, walk, cur, ti, f):
            return None if f.allow else True
    return s.core_filters_default_reject

# ---------------------------------------------------------------------------------------------
# watermarks


def wmark_wait_us(scheme: Scheme, metric_value: int | None) -> int:
    """``damos_wmark_wait_us()``: 0 when the scheme is active, else how long to wait before the
    next check. Hysteresis: above ``high`` or below ``low`` deactivates; an inactive scheme only
    activates once the metric drops below ``mid``; an active one stays active down to ``low``.
    ``metric_value`` None means the metric is ``none`` (or unknown): always active."""
    w = scheme.spec.wmarks
    if metric_value is None:
        return 0
    if metric_value > w.high or w.low > metric_value:
        scheme.wmark_activated = False
        return w.interval_us
    if w.high >= metric_value >= w.mid and not scheme.wmark_activated:
        return w.interval_us
    scheme.wmark_activated = True
    return 0


def wait_activation_us(ctx: Context, read_metric) -> int:
    """One round of ``kdamond_wait_activation()``: the shortest wait among the schemes, 0 when
    at least one is active or there are no schemes (then the kdamond monitors)."""
    min_wait = None
    for s in ctx.schemes:
        metric = s.spec.wmarks.metric
        value = None if metric == "none" else read_metric(metric)
        wait = wmark_wait_us(s, value)
        if min_wait is None or wait < min_wait:
            min_wait = wait
    return min_wait or 0


# ---------------------------------------------------------------------------------------------
# access pattern


def pattern_mask(scheme: Scheme, regions: Regions) -> np.ndarray:
    """``__damos_valid_target()`` for all regions at once (closed ranges; v6.7+ compares
    ``nr_accesses_bp / 10000``)."""
    p = scheme.spec.pattern
    sz = regions.sizes()
    nr = regions.nr_accesses_bp // 10000
    return ((sz >= np.uint64(p.min_sz)) & (sz <= np.uint64(p.max_sz))
            & (nr >= p.min_nr_accesses) & (nr <= p.max_nr_accesses)
            & (regions.age >= p.min_age) & (regions.age <= p.max_age))


def _pattern_ok(scheme: Scheme, sz: int, bp: int, age: int) -> bool:
    p = scheme.spec.pattern
    nr = bp // 10000
    return (p.min_sz <= sz <= p.max_sz and p.min_nr_accesses <= nr <= p.max_nr_accesses
            and p.min_age <= age <= p.max_age)


# ---------------------------------------------------------------------------------------------
# quota adjustment


def adjust_quota(ctx: Context, scheme: Scheme, ops: OpsHandle, now_ms: int) -> None:
    """``damos_adjust_quota()``: open a new charge window when due, then set ``min_score`` from
    the size histogram of scores of every region matching the pattern."""
    if not scheme.quota_enabled():
        return
    goal_metric = getattr(ops, "goal_metric", None)
    if goal_metric is None:
        open_window_if_due(scheme, now_ms)
    else:
        open_window_if_due(scheme, now_ms, lambda g: goal_metric(ctx, g))
    per_target = []
    for t in ctx.targets:
        mask = pattern_mask(scheme, t.regions)
        if not mask.any():
            continue
        sub = t.regions.select(mask)
        scores = ops.get_scheme_score(ctx, t, sub, scheme)
        if scores is None:
            return  # the operation set has no scorer: no prioritisation
        per_target.append((np.asarray(scores, dtype=np.int64), sub.sizes()))
    scheme.quota.min_score = min_score_for(per_target, scheme.quota.esz)


# ---------------------------------------------------------------------------------------------
# the apply pass


class _TargetWalk:
    """Mutable per-target region lists for one apply pass (splits insert pieces)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.st, self.en, self.nr, self.bp, self.last, self.age = target.regions.to_lists()
        self.modified = False
        self.age_reset: set[int] = set()  # positions whose age this pass reset

    def split(self, i: int, sz_left: int) -> None:
        cut = self.st[i] + sz_left
        self.st.insert(i + 1, cut)
        self.en.insert(i + 1, self.en[i])
        self.en[i] = cut
        for arr in (self.nr, self.bp, self.last, self.age):
            arr.insert(i + 1, arr[i])
        # only the region being walked (at i) can have had its age reset; a skip-split moves
        # the walk to its right piece, which carries that reset age
        if i in self.age_reset:
            self.age_reset.add(i + 1)
        self.modified = True

    def store(self) -> None:
        if self.modified:
            self.target.regions = Regions.from_lists(self.st, self.en, self.nr, self.bp,
                                                     self.last, self.age)


def _skip_charged(walk: _TargetWalk, i: int, scheme: Scheme, min_region: int) -> int | None:
    """``damos_skip_charged_region()``: after a window ended mid-way, resume where charging
    stopped instead of acting on the same leading regions again. Returns the position to act
    on (moved past a split-off leading piece), or None to skip this region for the scheme."""
    q = scheme.quota
    if q.charge_target_from is None:
        return i
    if walk.target is not q.charge_target_from:
        return None
    if i == len(walk.st) - 1:
        q.charge_target_from = None
        q.charge_addr_from = 0
        return None
    addr = q.charge_addr_from
    if addr and walk.en[i] <= addr:
        return None
    if addr and walk.st[i] < addr:
        sz_to_skip = align_down(addr - walk.st[i], min_region)
        if not sz_to_skip:
            if walk.en[i] - walk.st[i] <= min_region:
                return None
            sz_to_skip = min_region
        walk.split(i, sz_to_skip)
        i += 1
    q.charge_target_from = None
    q.charge_addr_from = 0
    return i


class _Scores:
    """Scores of a target's regions for quota-limited schemes, computed once per pass and
    recomputed only for regions whose age the pass reset."""

    def __init__(self, ctx: Context, ops: OpsHandle, walk: _TargetWalk, cand: list[int],
                 due: list[tuple[int, Scheme]]) -> None:
        self.ctx, self.ops, self.walk = ctx, ops, walk
        self.by_scheme: dict[int, dict[int, int] | None] = {}
        for si, s in due:
            if not s.quota.esz:
                continue
            sub = _sub_regions(walk, cand)
            scores = ops.get_scheme_score(ctx, walk.target, sub, s)
            self.by_scheme[si] = (None if scores is None
                                  else dict(zip(cand, np.asarray(scores).tolist(), strict=True)))

    def score(self, si: int, scheme: Scheme, orig: int, pos: int) -> int | None:
        table = self.by_scheme.get(si)
        if table is None:
            return None
        if pos in self.walk.age_reset or orig not in table:
            sub = _sub_regions(self.walk, [pos])
            return int(np.asarray(self.ops.get_scheme_score(self.ctx, self.walk.target, sub,
                                                            scheme))[0])
        return table[orig]


def _sub_regions(walk: _TargetWalk, positions: list[int]) -> Regions:
    return Regions.from_lists([walk.st[p] for p in positions], [walk.en[p] for p in positions],
                              [walk.nr[p] for p in positions], [walk.bp[p] for p in positions],
                              [walk.last[p] for p in positions], [walk.age[p] for p in positions])


def _candidates(target: Target, due: list[tuple[int, Scheme]], full_walk: bool) -> list[int]:
    """The regions the walk must visit: every region while charge-continuation markers are
    set (skipping and splitting depend on position, not on the pattern), else the regions
    matching some due scheme's pattern at the start of the pass. That is enough: the first
    scheme to act on a region saw it unchanged, so it matched then, and only acting changes a
    region (age reset, quota-edge split) for the later schemes."""
    n = len(target.regions)
    if full_walk:
        return list(range(n))
    mask = np.zeros(n, dtype=bool)
    for _, s in due:
        mask |= pattern_mask(s, target.regions)
    return np.flatnonzero(mask).tolist()


def plan_scheme_actions(ctx: Context, ops: OpsHandle, now_ms: int) -> list[SchemeAction] | None:
    """Run the decision half of one apply pass. Returns None when no scheme was due and active
    (nothing happened), else the ordered actions (possibly empty).

    Updates everything the kernel updates while walking: quota charges and continuation
    markers, region splits at quota edges, ``age`` resets for non-``stat`` actions, and the
    ``nr_tried``/``sz_tried`` counters. ``finish_scheme_actions`` completes the pass.
    """
    passed = ctx.passed_sample_intervals
    due = [(si, s) for si, s in enumerate(ctx.schemes)
           if passed >= s.next_apply_sis and s.wmark_activated]
    if not due:
        return None
    if ctx.walk_control is not None:
        ctx.walk_control._pending.clear()
    for _, s in due:
        adjust_quota(ctx, s, ops, now_ms)
    actions: list[SchemeAction] = []
    for ti, t in enumerate(ctx.targets):
        # a scheme whose quota is used up skips every remaining region of the pass
        due = [(si, s) for si, s in due if not _exhausted(s)]
        if not due:
            break
        full_walk = any(s.quota.charge_target_from is not None for _, s in due)
        cand = _candidates(t, due, full_walk)
        if not cand:
            continue
        walk = _TargetWalk(t)
        scores = _Scores(ctx, ops, walk, cand, due)
        shift = 0  # pieces inserted before the region being walked
        for orig in cand:
            cur = orig + shift
            before = len(walk.st)
            for si, s in due:
                cur = _scheme_on_region(ctx, walk, cur, orig, ti, si, s, scores, actions)
            shift += len(walk.st) - before
            if any(_exhausted(s) for _, s in due):
                due = [(si, s) for si, s in due if not _exhausted(s)]
                if not due:
                    break
        walk.store()
    return actions


def _exhausted(s: Scheme) -> bool:
    q = s.quota
    return bool(q.esz) and q.charged_sz >= q.esz


def _scheme_on_region(ctx: Context, walk: _TargetWalk, cur: int, orig: int, ti: int, si: int,
                      s: Scheme, scores: _Scores, actions: list[SchemeAction]) -> int:
    """``damon_do_apply_schemes()``'s body for one scheme and the region at ``cur``; returns
    the position of the region later schemes see (a skip-split moves it right)."""
    q = s.quota
    if _exhausted(s):
        return cur
    moved = _skip_charged(walk, cur, s, ctx.min_region)
    if moved is None:
        return cur
    cur = moved
    sz = walk.en[cur] - walk.st[cur]
    if not _pattern_ok(s, sz, walk.bp[cur], walk.age[cur]):
        return cur
    if q.esz:
        score = scores.score(si, s, orig, cur)
        if score is not None and score < q.min_score:
            return cur
    if q.esz and q.charged_sz + sz > q.esz:
        sz = align_down(q.esz - q.charged_sz, ctx.min_region)
        if not sz:
            s.stats.nr_tried += 1  # the kernel counts a try of 0 bytes (Appendix B #2)
            return cur
        walk.split(cur, sz)
    # the kernel charges and counts 'sz' as it was before a core filter's split
    out = core_filter_out(ctx, walk, cur, ti, s) if s.core_filters else False
    if out:
        return cur
    actions.append(SchemeAction(ti, walk.st[cur], walk.en[cur], si, s.action,
                                core_allowed=out is None))
    _walk_record(ctx, s, si, walk, cur, len(actions) - 1)
    q.charged_sz += sz
    if q.esz and q.charged_sz >= q.esz:
        q.charge_target_from = walk.target
        q.charge_addr_from = walk.en[cur] + 1
    if s.action != "stat":
        walk.age[cur] = 0
        walk.age_reset.add(cur)
        walk.modified = True
    s.stats.nr_tried += 1
    s.stats.sz_tried += sz
    return cur


def finish_scheme_actions(ctx: Context, actions: list[SchemeAction], applied: list[int],
                          elapsed_ns: int, sz_filter_passed: list[int] | None = None) -> None:
    """Complete the pass: count applied bytes and the bytes that passed the ops filters
    (``sz_ops_filter_passed``, 6.14), hand the tried regions to a pending walk, charge the
    apply time to the time quotas (in proportion to the bytes each scheme tried) and schedule
    each due scheme's next pass."""
    passed = sz_filter_passed if sz_filter_passed is not None else [0] * len(actions)
    _walk_finish_pass(ctx, passed)
    tried_by_scheme: dict[int, int] = {}
    for a, sz_applied, sz_passed in zip(actions, applied, passed, strict=True):
        s = ctx.schemes[a.scheme_index]
        s.stats.sz_ops_filter_passed += sz_passed
        if sz_applied:
            s.stats.nr_applied += 1
            s.stats.sz_applied += sz_applied
        tried_by_scheme[a.scheme_index] = tried_by_scheme.get(a.scheme_index, 0) + a.end - a.start
    total = sum(tried_by_scheme.values())
    if total and elapsed_ns:
        for si, sz in tried_by_scheme.items():
            ctx.schemes[si].quota.total_charged_ns += elapsed_ns * sz // total
    schedule_next_apply(ctx)


def schedule_next_apply(ctx: Context) -> None:
    """Every scheme whose apply interval passed gets its next one, active or not."""
    passed = ctx.passed_sample_intervals
    sample = ctx.attrs.sample_us or 1
    for s in ctx.schemes:
        if passed < s.next_apply_sis:
            continue
        _walk_complete(ctx, s)
        s.next_apply_sis = passed + (s.spec.apply_interval_us or ctx.attrs.aggr_us) // sample

