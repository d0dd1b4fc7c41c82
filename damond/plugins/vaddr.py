"""The ``vaddr`` operation set: virtual address spaces of processes (``mm/damon/vaddr.c``).

Regions start from the three-regions algorithm over ``/proc/PID/maps`` split into
``min_nr_regions`` pieces (targets with user-given initial regions keep them) and follow the
mappings every update interval with ``set_regions``. Each sample checks one random page per
region through the best access-check backend the kernel allows (``access_check``). Actions go
through ``process_madvise``: ``willneed``, ``cold``, ``pageout`` directly, ``hugepage`` as
``MADV_COLLAPSE`` where the kernel has it (6.1+), and ``nohugepage`` not at all: the kernel only
accepts that advice from the process itself, so such schemes are tried and counted but apply
nothing. Applied bytes are what the system call reports.

A target is its process, held by a pidfd and a ``/proc/PID`` directory fd taken when the
kdamond starts: a pid reused after the process exits is never mistaken for the target.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog

from damond.core.regions import Regions, align_down, align_up, set_regions
from damond.errors import DamonError
from damond.ops import access_check, page_walk
from damond.ops.common import pick_sampling_addrs, scheme_scores
from damond.ops.filters import UNSUPPORTED, memcg_inode
from damond.ops.hookspecs import hookimpl
from damond.ops.info import OpsInfo
from damond.platform import madvise, numa
from damond.platform.maps import parse_maps
from damond.platform.pagesize import PAGE_SIZE
from damond.platform.refs import read_smaps

log = structlog.get_logger("damond.vaddr")

NAME = "vaddr"
ADVICE = {"willneed": madvise.MADV_WILLNEED, "cold": madvise.MADV_COLD,
          "pageout": madvise.MADV_PAGEOUT, "hugepage": madvise.MADV_COLLAPSE}
NOT_REMOTE = "nohugepage"
#: Environment default for the access-check backend (a target's ops_args can override it).
BACKEND_ENV = "DAMOND_ACCESS_CHECK"


# ---------------------------------------------------------------------------------------------
# regions of a virtual address space (vaddr.c's region algorithms; sim uses them too)


def three_regions(vmas: Sequence[tuple[int, int]], min_region: int) -> list[tuple[int, int]]:
    """``__damon_va_three_regions()``: cover the mappings with three regions that leave out the
    two biggest unmapped gaps (normally heap-to-mmap and mmap-to-stack, huge and never
    accessed). ``vmas`` must be sorted. On ties the earlier gap wins (strict comparisons).

    Raises EINVAL when the mappings have fewer than two gaps, as the kernel does.
    """
    first_gap = (0, 0)
    second_gap = (0, 0)
    start = prev_end = None
    for vm_start, vm_end in vmas:
        if prev_end is None:
            start = vm_start
            prev_end = vm_end
            continue
        gap = vm_start - prev_end
        if gap > first_gap[1] - first_gap[0]:
            second_gap = first_gap
            first_gap = (prev_end, vm_start)
        elif gap > second_gap[1] - second_gap[0]:
            second_gap = (prev_end, vm_start)
        prev_end = vm_end
    if first_gap[1] == first_gap[0] or second_gap[1] == second_gap[0]:
        raise DamonError("EINVAL", "the mappings have fewer than two gaps")
    if first_gap[0] > second_gap[0]:
        first_gap, second_gap = second_gap, first_gap
    return [
        (align_up(start, min_region), align_up(first_gap[0], min_region)),
        (align_up(first_gap[1], min_region), align_up(second_gap[0], min_region)),
        (align_up(second_gap[1], min_region), align_up(prev_end, min_region)),
    ]


def evenly_split(start: int, end: int, nr_pieces: int, min_region: int) -> list[tuple[int, int]]:
    """``damon_va_evenly_split_region()`` with the late-2024 fix: exactly ``nr_pieces`` pieces of
    ``ALIGN_DOWN(size / nr_pieces)``, the last one taking the rounding remainder.

    Raises EINVAL for zero pieces or when a piece would be empty.
    """
    if nr_pieces <= 0:
        raise DamonError("EINVAL", "cannot split into zero pieces")
    if nr_pieces == 1:
        return [(start, end)]
    sz_piece = align_down((end - start) // nr_pieces, min_region)
    if sz_piece == 0:
        raise DamonError("EINVAL", "pieces would be smaller than the minimum region size")
    pieces = [(start + i * sz_piece, start + (i + 1) * sz_piece) for i in range(nr_pieces)]
    pieces[-1] = (pieces[-1][0], end)
    return pieces


def init_regions_from_ranges(ranges: Sequence[tuple[int, int]], min_nr_regions: int,
                             min_region: int) -> Regions:
    """``__damon_va_init_regions()``: the initial regions of a vaddr-like target, each of the
    given (three) ranges split evenly so that the total is about ``min_nr_regions``."""
    sz = sum(e - s for s, e in ranges)
    if min_nr_regions:
        sz //= min_nr_regions
    sz = max(sz, min_region)
    pieces: list[tuple[int, int]] = []
    for s, e in ranges:
        try:
            pieces.extend(evenly_split(s, e, (e - s) // sz, min_region))
        except DamonError:
            pieces.append((s, e))  # the kernel ignores the split error and keeps the region
    return Regions.from_ranges(pieces)


# ---------------------------------------------------------------------------------------------
# processes


@dataclass
class ProcessTarget:
    """One monitored process: its identity-pinning fds and its access-check backend."""

    pid: int
    pidfd: int
    procfd: int
    backend: object
    backend_name: str
    backend_why: list[str]
    thp_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    thp_ends: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    @property
    def proc_dir(self) -> str:
        # /proc/self/fd/N resolves to the original process's directory, or fails once it died
        return f"self/fd/{self.procfd}"

    def alive(self) -> bool:
        """Still running (a zombie is not)."""
        return madvise.pidfd_alive(self.pidfd)

    def valid(self) -> bool:
        """Still a target for the kernel: not yet reaped (a zombie is)."""
        return madvise.pidfd_unreaped(self.pidfd)

    def mappings(self) -> list[tuple[int, int]]:
        fd = os.open("maps", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.procfd)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        # [vsyscall] is listed by maps but is the kernel's gate area, not a VMA of the mm:
        # the kernel's VMA walk never sees it, and counting it would make the gap below it
        # (from the stack to the top of the address space) the biggest one
        return [(v.start, v.end) for v in parse_maps(b"".join(chunks))
                if v.path != "[vsyscall]"]

    def refresh_thp_areas(self) -> None:
        """Mappings currently backed by transparent huge pages (read at init and update, not
        per sample): only there does a sampled page need the huge-page treatment."""
        try:
            areas = [(v.start, v.end) for v in read_smaps(self.proc_dir) if v.anon_huge_pages]
        except DamonError:
            areas = []
        self.thp_starts = np.array([a for a, _ in areas], dtype=np.uint64)
        self.thp_ends = np.array([b for _, b in areas], dtype=np.uint64)

    def thp_areas(self) -> tuple[np.ndarray, np.ndarray]:
        return self.thp_starts, self.thp_ends

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close:
            close()
        for fd in (self.pidfd, self.procfd):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_process(pid: int, ops_args: dict, rng: np.random.Generator) -> ProcessTarget:
    forced = ops_args.get("access_check") or os.environ.get(BACKEND_ENV)
    name, why = access_check.choose(forced)
    pidfd = madvise.pidfd_open(pid)
    try:
        procfd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(pidfd)
        raise DamonError("ESRCH", f"/proc/{pid}: {exc.strerror}") from None
    target = ProcessTarget(pid, pidfd, procfd, None, name, why)
    try:
        target.refresh_thp_areas()
        target.backend = access_check.open_backend(name, target.proc_dir, rng,
                                                   target.thp_areas, pid)
    except BaseException:
        target.close()
        raise
    log.info("access check chosen", pid=pid, backend=name, passed_over=why,
             perturbs=access_check.PERTURBS[name])
    return target


def process_of(target) -> ProcessTarget | None:
    """The open process of a target, reopened if an online commit changed its pid."""
    return target.ops_data if isinstance(target.ops_data, ProcessTarget) else None


def sync_targets(ctx) -> None:
    """Open every target's process (at start, and for targets added or changed by a commit).
    A process that is gone leaves its target without a process: it is invalid from then on."""
    for t in ctx.targets:
        data = t.ops_data
        if isinstance(data, ProcessTarget | _Gone) and data.pid == t.pid:
            continue
        if isinstance(data, ProcessTarget):
            data.close()
        try:
            t.ops_data = open_process(t.pid, t.ops_args, ctx.rng)
        except DamonError as e:
            log.warning("target process unavailable", pid=t.pid, error=str(e))
            t.ops_data = _Gone(t.pid)


# ---------------------------------------------------------------------------------------------
# shared by vaddr and fvaddr


def validate_targets(ctx) -> None:
    """``find_get_pid()`` at ``on``: every target's pid must name a live process (EINVAL), and
    an access check must be possible here."""
    for i, t in enumerate(ctx.targets):
        if t.pid is None or t.pid <= 0 or not os.path.exists(f"/proc/{t.pid}"):
            raise DamonError("EINVAL", f"target {i}: no process with pid {t.pid}")
        access_check.choose(t.ops_args.get("access_check") or os.environ.get(BACKEND_ENV))
    validate_ops_filters(ctx)


def validate_ops_filters(ctx) -> None:
    """Linux 6.18's vaddr evaluates ops filters per folio for ``stat`` and the migrate actions
    (``damos_va_filter_out()``) and ignores them for the madvise actions; so does damond, page
    by page through pagemap and kpageflags (``damond.ops.page_walk``). Refused (EINVAL) where
    that cannot be done honestly: a ``young`` filter (``filters.UNSUPPORTED``), a memcg path
    that names no cgroup, or a process without the privileges to see page frame numbers."""
    for i, s in enumerate(ctx.schemes):
        if not s.ops_filters or s.action not in page_walk.FILTERED_ACTIONS:
            continue
        for f in s.ops_filters:
            if f.type in UNSUPPORTED:
                raise DamonError("EINVAL", f"scheme {i}: vaddr {s.action} with a {f.type} "
                                 f"filter: {UNSUPPORTED[f.type]}")
            if f.type == "memcg":
                memcg_inode(f.memcg_path)
        why = page_walk.unavailable()
        if why is not None:
            raise DamonError("EINVAL", f"scheme {i}: vaddr {s.action} with ops filters needs "
                             f"each page's frame: {why}")


def prepare_access_checks(ctx) -> None:
    for t in ctx.targets:
        r = t.regions
        if not len(r):
            continue
        pick_sampling_addrs(r, ctx.rng)
        proc = process_of(t)
        if proc is None:
            continue
        try:
            proc.backend.prepare(r.sampling_addr)
        except DamonError:
            _drop_process(t)


def check_accesses(ctx) -> list[np.ndarray]:
    out = []
    for t in ctx.targets:
        proc = process_of(t)
        n = len(t.regions)
        if proc is None or not n:
            out.append(np.zeros(n, dtype=bool))
            continue
        try:
            out.append(proc.backend.check(t.regions.sampling_addr))
        except DamonError:
            _drop_process(t)
            out.append(np.zeros(n, dtype=bool))
    return out


def _drop_process(target) -> None:
    """The process went away between two samples: the target is invalid from now on."""
    proc = process_of(target)
    if proc is not None:
        proc.close()
        target.ops_data = _Gone(proc.pid)


class _Gone:
    """Marks a target whose process exited (so it is not reopened by pid: no reuse)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


def apply_scheme(ctx, actions) -> tuple[list[int], list[int]]:
    """Batch consecutive actions on the same process with the same advice into one
    ``process_madvise`` call (up to IOV_MAX ranges), keeping the kernel's order. Answers the
    bytes applied and the bytes that passed the ops filters (``stat`` only, as in 6.18)."""
    applied = [0] * len(actions)
    passed = [0] * len(actions)
    stats = page_walk.StatWalk()
    i = 0
    while i < len(actions):
        a = actions[i]
        j = i + 1
        while (j < len(actions) and actions[j].target_index == a.target_index
               and actions[j].action == a.action):
            j += 1
        if a.action == "stat":
            _stat_batch(ctx, actions, i, j, passed, stats)
        else:
            _apply_batch(ctx, actions, i, j, applied)
        i = j
    return applied, passed


def _apply_batch(ctx, actions, i: int, j: int, applied: list[int]) -> None:
    a = actions[i]
    if a.action in ("migrate_hot", "migrate_cold"):
        for k in range(i, j):
            applied[k] = _migrate(ctx, actions[k])
        return
    advice = ADVICE.get(a.action)
    if advice is None:
        return  # stat applies nothing; nohugepage cannot be given to another process
    proc = process_of(ctx.targets[a.target_index])
    if proc is None:
        return
    ranges = []
    for x in actions[i:j]:
        ranges.append((align_up(x.start, PAGE_SIZE), align_up(x.end - x.start, PAGE_SIZE)))
    try:
        result = madvise.process_madvise(proc.pidfd, ranges, advice)
    except DamonError as e:
        log.warning("process_madvise failed", pid=proc.pid, action=a.action, error=str(e))
        return
    failed = set(result.failed)
    for k, (_, length) in enumerate(ranges):
        if k not in failed:
            applied[i + k] = length
    if result.error is not None and result.error.errno_name not in ("ENOMEM",):
        log.info("process_madvise partly failed", pid=proc.pid, action=a.action,
                 error=str(result.error), failed=len(failed))


def migrate_nodes(scheme, addrs: np.ndarray, memory_nodes: list[int]) -> np.ndarray | None:
    """The destination node of each page for ``migrate_hot``/``migrate_cold`` (6.11/6.16):
    ``target_nid``, or with ``dests`` a weighted interleave over them (damond picks a page's
    destination by its page number modulo the weights' sum, where the kernel uses the page's
    interleave index in its VMA). None when the kernel would migrate nothing: no destination
    or one outside the nodes with memory (``damon_migrate_pages()``)."""
    spec = scheme.spec
    if spec.dests:
        ids = np.array([d.id for d in spec.dests])
        weights = np.array([d.weight for d in spec.dests])
        if not weights.sum() or any(int(n) not in memory_nodes for n in ids):
            return None
        slot = (addrs // np.uint64(PAGE_SIZE)) % np.uint64(weights.sum())
        return ids[np.searchsorted(np.cumsum(weights), slot.astype(np.int64), side="right")]
    if spec.target_nid not in memory_nodes:
        return None
    return np.full(len(addrs), spec.target_nid, dtype=np.int32)


def _migrate(ctx, a) -> int:
    """``migrate_hot``/``migrate_cold`` through ``move_pages(2)``: the bytes of the pages of
    [start, end) now on their destination node (pages not present are not counted). With ops
    filters only the pages of LRU folios that pass them are moved (``damos_va_migrate()``)."""
    proc = process_of(ctx.targets[a.target_index])
    if proc is None:
        return 0
    filters = ctx.schemes[a.scheme_index].ops_filters
    if filters:
        try:
            with page_walk.open_pagemap(proc.proc_dir) as pagemap:
                addrs = page_walk.migratable(pagemap, filters, a.core_allowed, a.start, a.end)
        except DamonError as e:
            log.warning("page walk failed", pid=proc.pid, action=a.action, error=str(e))
            return 0
    else:
        addrs = np.arange(align_up(a.start, PAGE_SIZE), a.end, PAGE_SIZE, dtype=np.uint64)
    nodes = migrate_nodes(ctx.schemes[a.scheme_index], addrs, numa.memory_nodes())
    if nodes is None or not len(addrs):
        return 0
    try:
        status = numa.move_pages(proc.pid, addrs, nodes)
    except DamonError as e:
        log.warning("move_pages failed", pid=proc.pid, action=a.action, error=str(e))
        return 0
    return int((status == nodes).sum()) * PAGE_SIZE


def _stat_batch(ctx, actions, i: int, j: int, passed: list[int],
                stats: page_walk.StatWalk) -> None:
    """``damos_va_stat()``: applies nothing; with ops filters, the bytes of the folios of each
    region that pass them (``sz_filter_passed``)."""
    proc = process_of(ctx.targets[actions[i].target_index])
    if proc is None or not any(ctx.schemes[a.scheme_index].ops_filters for a in actions[i:j]):
        return
    try:
        with page_walk.open_pagemap(proc.proc_dir) as pagemap:
            for k in range(i, j):
                a = actions[k]
                passed[k] = stats.passed(pagemap, a.scheme_index,
                                         ctx.schemes[a.scheme_index].ops_filters,
                                         a.core_allowed, a.start, a.end)
    except DamonError as e:
        log.warning("page walk failed", pid=proc.pid, action="stat", error=str(e))


def target_valid(ctx) -> list[bool]:
    out = []
    for t in ctx.targets:
        proc = process_of(t)
        out.append(proc is not None and proc.valid())
    return out


def cleanup(ctx) -> None:
    for t in ctx.targets:
        proc = process_of(t)
        if proc is not None:
            proc.close()
        t.ops_data = None


def status(ctx) -> dict:
    targets = []
    for t in ctx.targets:
        proc = process_of(t)
        if proc is None:
            targets.append({"pid": t.pid, "alive": False})
            continue
        idle = getattr(proc.backend, "idle", None)
        targets.append({"pid": proc.pid, "alive": proc.alive(), "access_check": proc.backend_name,
                        "passed_over": proc.backend_why,
                        "perturbs": access_check.PERTURBS[proc.backend_name],
                        **({"idle_skipped_samples": idle.skipped} if idle else {})})
    return {"targets": targets, "nohugepage": "tried and counted, never applied (the kernel "
            "accepts MADV_NOHUGEPAGE only from the process itself)"}


def info(name: str, summary: str) -> OpsInfo:
    return OpsInfo(
        name=name, summary=summary,
        applies=frozenset({"willneed", "cold", "pageout", "hugepage", "migrate_hot",
                           "migrate_cold"}),
        blocking=True,
        notes=("hugepage is applied as MADV_COLLAPSE (Linux 6.1+)",
               "nohugepage is accepted and counted but cannot be applied to another process",))


# ---------------------------------------------------------------------------------------------
# the vaddr hooks


def _monitored_ranges(proc: ProcessTarget, min_region: int) -> list[tuple[int, int]] | None:
    try:
        return three_regions(proc.mappings(), min_region)
    except (DamonError, OSError):
        return None


@hookimpl
def damon_ops_info():
    return info(NAME, "virtual address spaces of processes (three regions over the mappings)")


@hookimpl
def damon_ops_validate(ctx):
    validate_targets(ctx)


@hookimpl
def damon_ops_init(ctx):
    sync_targets(ctx)
    for t in ctx.targets:
        proc = process_of(t)
        if len(t.regions) or proc is None:
            continue
        ranges = _monitored_ranges(proc, ctx.min_region)
        if ranges is None:
            log.info("no three regions for target; it stays without regions", pid=t.pid)
            continue
        t.regions = init_regions_from_ranges(ranges, ctx.attrs.min_nr_regions, ctx.min_region)


@hookimpl
def damon_ops_update(ctx):
    sync_targets(ctx)
    for t in ctx.targets:
        proc = process_of(t)
        if proc is None:
            continue
        proc.refresh_thp_areas()
        ranges = _monitored_ranges(proc, ctx.min_region)
        if ranges is not None:
            t.regions = set_regions(t.regions, ranges, ctx.min_region)


@hookimpl
def damon_ops_prepare_access_checks(ctx):
    prepare_access_checks(ctx)


@hookimpl
def damon_ops_check_accesses(ctx):
    return check_accesses(ctx)


@hookimpl
def damon_ops_get_scheme_score(ctx, target, regions, scheme):
    return scheme_scores(ctx, regions, scheme)


@hookimpl
def damon_ops_apply_scheme(ctx, actions):
    return apply_scheme(ctx, actions)


@hookimpl
def damon_ops_target_valid(ctx):
    return target_valid(ctx)


@hookimpl
def damon_ops_cleanup(ctx):
    cleanup(ctx)


@hookimpl
def damon_ops_status(ctx):
    return status(ctx)


def sample_aggregation(ctx, nr_samples: int, interval_ns: int, first_deadline_ns: int,
                       stop: bytearray):
    """The batch sampler shared by vaddr and fvaddr (``damond.plugins.vaddr_batch``)."""
    from damond.plugins import vaddr_batch  # imports the optional native sampler

    procs = [process_of(t) for t in ctx.targets]
    return vaddr_batch.sample(ctx, procs, _drop_process, nr_samples, interval_ns,
                              first_deadline_ns, stop)


@hookimpl
def damon_ops_sample_aggregation(ctx, nr_samples, interval_ns, first_deadline_ns, stop):
    return sample_aggregation(ctx, nr_samples, interval_ns, first_deadline_ns, stop)


def quiet_span(ctx) -> bool:
    """Shared by vaddr and fvaddr (``damond.plugins.vaddr_batch.quiet_span``)."""
    from damond.plugins import vaddr_batch

    return vaddr_batch.quiet_span(ctx, [process_of(t) for t in ctx.targets])


def quiet_check(ctx) -> list | None:
    """Shared by vaddr and fvaddr (``damond.plugins.vaddr_batch.quiet_check``)."""
    from damond.plugins import vaddr_batch

    return vaddr_batch.quiet_check(ctx, [process_of(t) for t in ctx.targets])


@hookimpl
def damon_ops_quiet_span(ctx):
    return quiet_span(ctx)


@hookimpl
def damon_ops_quiet_check(ctx):
    return quiet_check(ctx)
