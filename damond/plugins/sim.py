"""The ``sim`` operation set: DAMON over a simulated address space.

Each target is a simulated process whose memory follows a declarative workload
(``damond.plugins.sim_workload``). Sampling draws, for each region's sampled page, whether the
workload touched it in the interval; actions change the simulation the way they would change a
real process (``pageout`` makes memory non-resident, and an access brings a page back: a
refault). So every part of damond can be tried on any machine, tests are deterministic, and a
user can preview a scheme's effect (``status`` shows resident memory, paged-out bytes and
refaults) before pointing it at real memory.

Targets without regions get vaddr's initial regions (three-regions over the workload's
ranges, split into ``min_nr_regions`` pieces). ``free_mem_rate`` watermarks read the simulated
machine's memory. The workload's randomness comes from its seed, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np

from damond.core.regions import set_regions
from damond.errors import DamonError
from damond.ops.common import pick_sampling_addrs, scheme_scores
from damond.ops.hookspecs import hookimpl
from damond.ops.info import OpsInfo
from damond.plugins.sim_workload import SimWorkload, default_workload
from damond.plugins.vaddr import init_regions_from_ranges, three_regions

NAME = "sim"


class IntervalSet:
    """Sorted, disjoint half-open intervals (the simulated process's non-resident memory)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, s: int, e: int) -> None:
        if s >= e:
            return
        keep_s, keep_e = [], []
        for a, b in zip(self.starts, self.ends, strict=True):
            if b < s or a > e:
                keep_s.append(a)
                keep_e.append(b)
            else:
                s, e = min(s, a), max(e, b)
        keep_s.append(s)
        keep_e.append(e)
        order = sorted(range(len(keep_s)), key=keep_s.__getitem__)
        self.starts = [keep_s[i] for i in order]
        self.ends = [keep_e[i] for i in order]
        self._arrays = None

    def remove(self, s: int, e: int) -> None:
        new_s, new_e = [], []
        for a, b in zip(self.starts, self.ends, strict=True):
            if b <= s or a >= e:
                new_s.append(a)
                new_e.append(b)
                continue
            if a < s:
                new_s.append(a)
                new_e.append(s)
            if b > e:
                new_s.append(e)
                new_e.append(b)
        self.starts, self.ends = new_s, new_e
        self._arrays = None

    def overlap(self, s: int, e: int) -> int:
        return sum(max(0, min(b, e) - max(a, s)) for a, b in zip(self.starts, self.ends,
                                                                  strict=True))

    def contains(self, points: np.ndarray) -> np.ndarray:
        if not self.starts:
            return np.zeros(points.shape, dtype=bool)
        if self._arrays is None:
            self._arrays = (np.array(self.starts, dtype=np.uint64),
                            np.array(self.ends, dtype=np.uint64))
        starts, ends = self._arrays
        idx = np.searchsorted(starts, points, side="right") - 1
        inside = idx >= 0
        idx = np.maximum(idx, 0)
        return inside & (points < ends[idx])

    def total(self) -> int:
        return sum(b - a for a, b in zip(self.starts, self.ends, strict=True))


class SimSpace:
    """One simulated process: its workload, residency and counters."""

    def __init__(self, workload: SimWorkload, target_index: int) -> None:
        self.workload = workload
        self.starts = np.array([r.start for r in workload.ranges], dtype=np.uint64)
        self.ends = np.array([r.end for r in workload.ranges], dtype=np.uint64)
        self.rng = np.random.default_rng([workload.seed, target_index])
        self.nonresident = IntervalSet()
        self.hugepage = IntervalSet()
        self.refaults = 0
        self.paged_out = 0
        self.swapped_in = 0
        self._probs_t: float | None = None
        self._probs = np.zeros(len(workload.ranges))

    def probabilities(self, t_s: float) -> np.ndarray:
        if self._probs_t != t_s:
            self._probs = np.array(self.workload.probabilities_at(t_s), dtype=np.float64)
            self._probs_t = t_s
        return self._probs

    def mapped_bytes(self) -> int:
        return int((self.ends - self.starts).sum())

    def resident_bytes(self) -> int:
        return self.mapped_bytes() - self.nonresident.total()

    def sample(self, addrs: np.ndarray, t_s: float, page: int) -> np.ndarray:
        """Whether the workload touched each address's page within one sampling interval;
        touched non-resident pages are faulted back in."""
        idx = np.searchsorted(self.starts, addrs, side="right") - 1
        mapped = idx >= 0
        idx = np.maximum(idx, 0)
        mapped &= addrs < self.ends[idx]
        probs = self.probabilities(t_s)[idx]
        accessed = mapped & (self.rng.random(addrs.shape[0]) < probs)
        if self.nonresident.starts and accessed.any():
            faulted = accessed & self.nonresident.contains(addrs)
            for a in addrs[faulted].tolist():
                base = a - a % page
                self.nonresident.remove(base, base + page)
                self.refaults += 1
        return accessed

    def alive(self, t_s: float) -> bool:
        return self.workload.lifetime_s is None or t_s < self.workload.lifetime_s

    def apply(self, action: str, start: int, end: int) -> int:
        """Apply one action to [start, end); return the bytes it affected."""
        mapped = self._mapped_overlap(start, end)
        if action == "pageout":
            resident = mapped - self._nonresident_mapped(start, end)
            for s, e in self._mapped_pieces(start, end):
                self.nonresident.add(s, e)
            self.paged_out += resident
            return resident
        if action == "willneed":
            swapped = self._nonresident_mapped(start, end)
            self.nonresident.remove(start, end)
            self.swapped_in += swapped
            return mapped
        if action == "hugepage":
            self.hugepage.add(start, end)
            return mapped
        if action == "nohugepage":
            self.hugepage.remove(start, end)
            return mapped
        if action == "cold":
            return mapped
        return 0  # stat

    def _mapped_pieces(self, s: int, e: int) -> list[tuple[int, int]]:
        return [(max(a, s), min(b, e)) for a, b in zip(self.starts.tolist(), self.ends.tolist(),
                                                       strict=True) if a < e and s < b]

    def _mapped_overlap(self, s: int, e: int) -> int:
        return sum(b - a for a, b in self._mapped_pieces(s, e))

    def _nonresident_mapped(self, s: int, e: int) -> int:
        return sum(self.nonresident.overlap(a, b) for a, b in self._mapped_pieces(s, e))


class SimContext:
    """Per-context state: the simulated machine shared by the context's targets."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.spaces: list[SimSpace] = []

    def now_s(self, ctx) -> float:
        return (ctx.clock_ns() - self.start_ns) / 1e9


def workload_of(target, index: int) -> SimWorkload:
    raw = target.ops_args.get("workload")
    if raw is None:
        return default_workload(seed=int(target.ops_args.get("seed", index)))
    if isinstance(raw, SimWorkload):
        return raw
    return SimWorkload.from_dict(raw)


def _space(ctx, i: int) -> SimSpace:
    return ctx.ops_data.spaces[i]


def _sync_spaces(ctx) -> None:
    """Targets may be added or replaced by an online commit: keep one space per target."""
    sim: SimContext = ctx.ops_data
    while len(sim.spaces) < len(ctx.targets):
        i = len(sim.spaces)
        sim.spaces.append(SimSpace(workload_of(ctx.targets[i], i), i))
    del sim.spaces[len(ctx.targets):]


def _monitored_ranges(ctx, i: int) -> list[tuple[int, int]]:
    """vaddr's three regions over the workload's mappings; a workload with fewer than three
    mappings (where the kernel's vaddr would give up) is monitored as it is."""
    mapped = _space(ctx, i).workload.mapped_ranges()
    try:
        return three_regions(mapped, ctx.min_region)
    except DamonError:
        return mapped


@hookimpl
def damon_ops_info():
    return OpsInfo(
        name=NAME,
        summary="simulated address spaces driven by declarative workloads (any machine)",
        applies=frozenset({"willneed", "cold", "pageout", "hugepage", "nohugepage"}),
        notes=("pid_target is ignored; a target's workload comes from its ops_args "
               "(the default is a hot, a warm and a cold range)",))


@hookimpl
def damon_ops_validate(ctx):
    for i, t in enumerate(ctx.targets):
        try:
            workload_of(t, i)
        except DamonError as e:
            raise DamonError(e.errno_name, f"target {i}: {e.why}") from None
        except (TypeError, ValueError, KeyError) as e:
            raise DamonError("EINVAL", f"target {i}: invalid sim workload: {e}") from None


@hookimpl
def damon_ops_init(ctx):
    ctx.ops_data = SimContext(ctx.clock_ns())
    _sync_spaces(ctx)
    for i, t in enumerate(ctx.targets):
        if not len(t.regions):
            t.regions = init_regions_from_ranges(_monitored_ranges(ctx, i),
                                                 ctx.attrs.min_nr_regions, ctx.min_region)


@hookimpl
def damon_ops_update(ctx):
    _sync_spaces(ctx)
    for i, t in enumerate(ctx.targets):
        t.regions = set_regions(t.regions, _monitored_ranges(ctx, i), ctx.min_region)


@hookimpl
def damon_ops_prepare_access_checks(ctx):
    _sync_spaces(ctx)
    for i, t in enumerate(ctx.targets):
        if len(t.regions):
            # the simulated process's own generator: a run depends on the workload's seed only
            pick_sampling_addrs(t.regions, _space(ctx, i).rng)


@hookimpl
def damon_ops_check_accesses(ctx):
    sim: SimContext = ctx.ops_data
    t_s = sim.now_s(ctx)
    out = []
    for i, t in enumerate(ctx.targets):
        space = _space(ctx, i)
        if not len(t.regions) or not space.alive(t_s):
            out.append(np.zeros(len(t.regions), dtype=bool))
            continue
        out.append(space.sample(t.regions.sampling_addr, t_s, ctx.min_region))
    return out


@hookimpl
def damon_ops_get_scheme_score(ctx, target, regions, scheme):
    return scheme_scores(ctx, regions, scheme)


@hookimpl
def damon_ops_apply_scheme(ctx, actions):
    t_s = ctx.ops_data.now_s(ctx)
    applied = []
    for a in actions:
        space = _space(ctx, a.target_index)
        applied.append(space.apply(a.action, a.start, a.end) if space.alive(t_s) else 0)
    return applied


@hookimpl
def damon_ops_target_valid(ctx):
    if ctx.ops_data is None:
        return None
    t_s = ctx.ops_data.now_s(ctx)
    return [_space(ctx, i).alive(t_s) for i in range(len(ctx.targets))]


@hookimpl
def damon_ops_wmark_metric(ctx, metric):
    if metric != "free_mem_rate" or ctx.ops_data is None:
        return None
    sim: SimContext = ctx.ops_data
    t_s = sim.now_s(ctx)
    spaces = sim.spaces
    if not spaces:
        return None
    total = spaces[0].workload.mem_total
    used = spaces[0].workload.other_used_at(t_s) + sum(s.resident_bytes() for s in spaces)
    return max(0, total - used) * 1000 // total


@hookimpl
def damon_ops_status(ctx):
    if ctx.ops_data is None:
        return {}
    return {"targets": [
        {"mapped": s.mapped_bytes(), "resident": s.resident_bytes(),
         "paged_out": s.paged_out, "refaults": s.refaults, "swapped_in": s.swapped_in}
        for s in ctx.ops_data.spaces]}


@hookimpl
def damon_ops_cleanup(ctx):
    ctx.ops_data = None

