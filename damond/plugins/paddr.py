"""The ``paddr`` operation set: the physical address space (``mm/damon/paddr.c``).

One target without a process. Its regions are the user's physical ranges, or, when none are
given, the biggest "System RAM" range of ``/proc/iomem`` (with the kernel's inclusive-end
quirk, as DAMON_RECLAIM picks it). Each sample checks one random page per region through
``/sys/kernel/mm/page_idle/bitmap`` by PFN; there is no other way to see accesses to physical
memory from user space, so on a kernel without idle page tracking ``on`` is refused and says so.

Only LRU pages can be accessed in the kernel's sense (``damon_get_folio()``); huge pages are
checked through their head page. ``stat`` works everywhere; ``pageout`` and ``cold`` act through a
reverse map from physical pages to processes' virtual addresses (``paddr_rmap``), rebuilt at
most once per update interval; the other actions are tried and apply nothing, as in the kernel.

``addr_unit`` (Linux 6.18): a context's addresses are in units of ``addr_unit`` bytes, so a
region ``[start, end)`` covers the physical bytes ``[start * addr_unit, end * addr_unit)``
(``damon_pa_phys_addr()``), the regions' alignment is ``max(PAGE_SIZE / addr_unit, 1)``
(``min_sz_region``, set by ``core.build``), and the bytes reported back (applied, filter
passed) are divided by ``addr_unit`` into core units (``damon_pa_core_addr()``,
``folio_size(folio) / addr_unit`` per folio). Without user regions, the biggest System RAM
range is converted into units the same way.
"""

from __future__ import annotations

import os
import time

import numpy as np
import structlog

from damond.core.regions import Regions, set_regions
from damond.errors import DamonError
from damond.ops.common import pick_sampling_addrs, scheme_scores
from damond.ops.filters import UNSUPPORTED, memcg_inode, pages_passing
from damond.ops.hookspecs import hookimpl
from damond.ops.info import OpsInfo
from damond.ops.page_walk import folios
from damond.platform import iomem, madvise
from damond.platform import page_idle as page_idle_mod
from damond.platform.kpageflags import KPF_LRU, has, is_huge_part, read_cgroups, read_flags
from damond.platform.page_idle import PageIdleBitmap
from damond.platform.pagesize import PAGE_SHIFT, PAGE_SIZE, PMD_PAGES
from damond.plugins.paddr_rmap import ReverseMap

log = structlog.get_logger("damond.paddr")

NAME = "paddr"
#: ``lru_deprio`` (6.0) is approximated by MADV_COLD through the reverse map: both deactivate
#: the pages (``folio_deactivate()``); MADV_COLD also clears their referenced bits.
ADVICE = {"cold": madvise.MADV_COLD, "pageout": madvise.MADV_PAGEOUT,
          "lru_deprio": madvise.MADV_COLD}
#: Actions the kernel's paddr applies but damond's cannot, with the reason (EINVAL at on/commit).
UNAPPLIABLE = {
    "lru_prio": "6.18's paddr marks each folio accessed (folio_mark_accessed()), and user "
                "space has no call that marks another process's pages accessed or activates "
                "them: madvise knows only deactivation (MADV_COLD)",
    "migrate_hot": "migrating physical pages needs the reverse map to hand move_pages(2) "
                   "process ranges per page; not implemented (vaddr migrates)",
    "migrate_cold": "migrating physical pages needs the reverse map to hand move_pages(2) "
                    "process ranges per page; not implemented (vaddr migrates)",
}


class PaddrState:
    def __init__(self, update_us: int) -> None:
        self.bitmap = PageIdleBitmap()
        self.rmap = ReverseMap()
        self.rmap_max_age_s = update_us / 1e6
        self.pfns: list[np.ndarray] = []
        self.lru: list[np.ndarray] = []

    def rmap_fresh(self) -> ReverseMap:
        if self.rmap.built_at is None or time.monotonic() - self.rmap.built_at >= \
                self.rmap_max_age_s:
            cost = self.rmap.build()
            log.info("reverse map rebuilt", seconds=round(cost.seconds, 4), pages=cost.pages,
                     processes=cost.processes, pagemap_scan=cost.used_scan_ioctl)
        return self.rmap

    def close(self) -> None:
        self.bitmap.close()


def _pfns_to_check(addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PFNs to mark/read (huge pages by their head) and which of them are LRU pages."""
    pfns = addrs >> np.uint64(PAGE_SHIFT)
    flags = read_flags(pfns)
    pfns = np.where(is_huge_part(flags), pfns - pfns % np.uint64(PMD_PAGES), pfns)
    return pfns, has(flags, KPF_LRU)


@hookimpl
def damon_ops_info():
    return OpsInfo(name=NAME, summary="the physical address space (needs page_idle)",
                   applies=frozenset({"cold", "pageout", "lru_deprio"}), blocking=True,
                   notes=("pageout and cold act through a PFN-to-process reverse map",
                          "lru_deprio is applied as MADV_COLD through the reverse map",
                          "lru_prio, migrate_hot and migrate_cold are refused (see on's "
                          "error)", "ops filters work with stat only; young is refused"))


@hookimpl
def damon_ops_validate(ctx):
    ok, reason = page_idle_mod.available()
    if not ok:
        raise DamonError("EINVAL", "paddr needs idle page tracking, which this kernel does not "
                         f"offer: {reason}")
    if len(ctx.targets) > 1:
        raise DamonError("EINVAL", "paddr supports only one target")
    for i, s in enumerate(ctx.schemes):
        if s.action in UNAPPLIABLE:
            raise DamonError("EINVAL", f"scheme {i}: paddr {s.action}: {UNAPPLIABLE[s.action]}")
        for f in s.ops_filters:
            if f.type in UNSUPPORTED:
                raise DamonError("EINVAL", f"scheme {i}: {f.type} filter: {UNSUPPORTED[f.type]}")
        if s.ops_filters and s.action != "stat":
            raise DamonError("EINVAL", f"scheme {i}: ops filters work with the stat action only "
                             f"here: {s.action} acts per process range through the reverse map, "
                             "not per page")
        for f in s.ops_filters:
            if f.type == "memcg":
                memcg_inode(f.memcg_path)


@hookimpl
def damon_ops_init(ctx):
    ctx.ops_data = PaddrState(ctx.attrs.update_us)
    for t in ctx.targets:
        if not len(t.regions):
            start, end = iomem.biggest_system_ram()
            unit = ctx.addr_unit
            t.regions = set_regions(Regions(), [(start // unit, end // unit)], ctx.min_region)


@hookimpl
def damon_ops_prepare_access_checks(ctx):
    st: PaddrState = ctx.ops_data
    st.pfns, st.lru = [], []
    for t in ctx.targets:
        addrs = pick_sampling_addrs(t.regions, ctx.rng)
        pfns, lru = _pfns_to_check(addrs * np.uint64(ctx.addr_unit))
        st.pfns.append(pfns)
        st.lru.append(lru)
        _mark(st.bitmap, pfns[lru])


def _mark(bitmap: PageIdleBitmap, pfns: np.ndarray) -> None:
    try:
        bitmap.mark_idle(pfns)
    except DamonError as e:
        if e.errno_name != "ENXIO":
            raise


@hookimpl
def damon_ops_check_accesses(ctx):
    st: PaddrState = ctx.ops_data
    out = []
    for t, pfns, lru in zip(ctx.targets, st.pfns, st.lru, strict=True):
        accessed = np.zeros(len(t.regions), dtype=bool)
        if lru.any():
            accessed[lru] = ~st.bitmap.is_idle(pfns[lru])
        out.append(accessed)
    return out


@hookimpl
def damon_ops_get_scheme_score(ctx, target, regions, scheme):
    return scheme_scores(ctx, regions, scheme)


@hookimpl
def damon_ops_apply_scheme(ctx, actions):
    st: PaddrState = ctx.ops_data
    applied = []
    passed = []
    unit = ctx.addr_unit
    for a in actions:
        advice = ADVICE.get(a.action)
        applied.append(0 if advice is None else
                       _advise_physical(st, a.start * unit, a.end * unit, advice) // unit)
        scheme = ctx.schemes[a.scheme_index]
        passed.append(_stat_filter_passed(scheme, a, unit) if a.action == "stat" else 0)
    return applied, passed


def _stat_filter_passed(scheme, a, addr_unit: int = 1) -> int:
    """``damon_pa_stat()`` (6.14+): without ops filters nothing is counted; else, in core units
    (bytes / ``addr_unit``), the sizes of the LRU folios of [start, end) that pass them
    (``damos_pa_filter_out()``), each folio once (the kernel steps over a folio by its size).
    Pages are judged from ``/proc/kpageflags``; a folio's size and head come from its
    compound head and tail pages."""
    if not scheme.ops_filters:
        return 0
    pfns = np.arange((a.start * addr_unit) >> PAGE_SHIFT, (a.end * addr_unit) >> PAGE_SHIFT,
                     dtype=np.uint64)
    if not len(pfns):
        return 0
    flags = read_flags(pfns)
    lru = has(flags, KPF_LRU)
    heads, nr_pages = folios(pfns, flags)
    folio_sizes = nr_pages * PAGE_SIZE
    cgroups = None
    inodes: dict[str, int] = {}
    memcg_paths = {f.memcg_path for f in scheme.ops_filters if f.type == "memcg"}
    if memcg_paths:
        cgroups = read_cgroups(pfns)
        inodes = {p: memcg_inode(p) for p in memcg_paths}
    ok = pages_passing(scheme.ops_filters, core_allowed=a.core_allowed, flags=flags,
                       folio_sizes=folio_sizes, cgroups=cgroups, memcg_inodes=inodes)
    counted = ok & lru
    first = np.concatenate(([True], heads[1:] != heads[:-1]))  # each folio once
    return int((folio_sizes[counted & first] // addr_unit).sum())


def _advise_physical(st: PaddrState, start: int, end: int, advice: int) -> int:
    """Advise every process mapping a page of [start, end); bytes of pages advised."""
    pids, vaddrs = st.rmap_fresh().lookup(start, end)
    done = 0
    for pid in np.unique(pids).tolist():
        va = np.sort(vaddrs[pids == pid])
        ranges = _coalesce(va)
        try:
            pidfd = madvise.pidfd_open(pid)
        except DamonError:
            continue
        try:
            result = madvise.process_madvise(pidfd, ranges, advice)
        except DamonError:
            continue
        finally:
            os.close(pidfd)
        failed = set(result.failed)
        done += sum(length for k, (_, length) in enumerate(ranges) if k not in failed)
    return done


def _coalesce(vaddrs: np.ndarray) -> list[tuple[int, int]]:
    page = PAGE_SIZE
    if not len(vaddrs):
        return []
    breaks = np.flatnonzero(np.diff(vaddrs) != page) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(vaddrs)]))
    return [(int(vaddrs[s]), int(e - s) * page) for s, e in zip(starts, ends, strict=True)]


@hookimpl
def damon_ops_cleanup(ctx):
    if isinstance(ctx.ops_data, PaddrState):
        ctx.ops_data.close()
    ctx.ops_data = None


@hookimpl
def damon_ops_status(ctx):
    st = ctx.ops_data
    if not isinstance(st, PaddrState) or st.rmap.last_cost is None:
        return {"access_check": "page_idle"}
    c = st.rmap.last_cost
    return {"access_check": "page_idle", "rmap_build_s": c.seconds, "rmap_pages": c.pages,
            "rmap_processes": c.processes}
