"""vaddr's page walk for DAMOS ops filters: what ``damos_va_stat()`` and ``damos_va_migrate()``
see of a region, from ``/proc/PID/pagemap`` and ``/proc/kpageflags`` (Linux 6.18,
``mm/damon/vaddr.c``).

The kernel walks the page tables of [start, end) and, for each present PTE/PMD with a folio,
asks ``damos_va_filter_out()``. User space sees the same through pagemap (present bit, PFN)
and then, per PFN, ``/proc/kpageflags`` (anon, active, mapped, compound head/tail ->
the folio and its size) and ``/proc/kpagecgroup`` (memcg). What has no folio is skipped, as
the kernel skips it: not-present and swapped entries (``!pte_present()``), the shared zero
page (``vm_normal_folio()`` answers NULL for it), PFNs without a struct page, and hugetlb
pages (the kernel's walk has no ``hugetlb_entry``, so it never visits them).

Privileges: pagemap shows PFNs only to CAP_SYS_ADMIN and the kpage* files are root-only:
:func:`unavailable` says so before a scheme that needs the walk is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from damond.core.spec import FilterSpec
from damond.errors import DamonError
from damond.ops.filters import memcg_inode, pages_passing
from damond.platform import pagemap as pm
from damond.platform.kpageflags import (
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_HUGE,
    KPF_LRU,
    KPF_NOPAGE,
    KPF_ZERO_PAGE,
    has,
    read_cgroups,
    read_flags,
)
from damond.platform.pagesize import PAGE_SHIFT, PAGE_SIZE, PMD_PAGES

#: Virtual pages read from pagemap per ``pread`` (bounds memory for huge sparse regions).
CHUNK_PAGES = 1 << 16
CAP_SYS_ADMIN = 21
#: The actions whose pages 6.18's vaddr passes through ``damos_va_filter_out()``; the madvise
#: actions ignore ops filters.
FILTERED_ACTIONS = ("stat", "migrate_hot", "migrate_cold")


@dataclass
class Pages:
    """The pages of one chunk of a region that have a folio, in address order."""

    addrs: np.ndarray  # virtual address of each page (uint64)
    pfns: np.ndarray
    flags: np.ndarray  # /proc/kpageflags words
    heads: np.ndarray  # PFN of the folio's head page
    folio_sizes: np.ndarray  # bytes of the folio (folio_size())

    @property
    def lru(self) -> np.ndarray:
        return has(self.flags, KPF_LRU)


def unavailable() -> str | None:
    """Why this process cannot walk another's pages through PFNs, or None when it can."""
    try:
        with open("/proc/self/status") as f:
            cap = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        cap = 0
    if not cap >> CAP_SYS_ADMIN & 1:
        return "pagemap shows page frame numbers only to CAP_SYS_ADMIN, which damond lacks"
    try:
        read_flags(np.zeros(1, dtype=np.uint64))
    except DamonError as e:
        return f"/proc/kpageflags unreadable: {e.why}"
    return None


def folios(pfns: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(head PFN, pages) of the folio of each PFN. Large folios are naturally aligned and at
    most PMD-sized here (hugetlb is skipped before), so each lies in its PMD-aligned block of
    PFNs: one kpageflags read per block holding a compound page finds its head (the last
    COMPOUND_HEAD at or below) and its end (the first later page that is no COMPOUND_TAIL)."""
    heads = pfns.copy()
    sizes = np.ones(len(pfns), dtype=np.int64)
    compound = has(flags, KPF_COMPOUND_HEAD) | has(flags, KPF_COMPOUND_TAIL)
    if not compound.any():
        return heads, sizes
    block_pages = np.uint64(PMD_PAGES)
    blocks, inverse = np.unique(pfns[compound] // block_pages, return_inverse=True)
    idx = np.arange(PMD_PAGES)
    all_pfns = (blocks[:, None] * block_pages + idx.astype(np.uint64)).reshape(-1)
    bf = read_flags(all_pfns).reshape(len(blocks), PMD_PAGES)
    is_head = (bf & np.uint64(1 << KPF_COMPOUND_HEAD)) != 0
    is_tail = (bf & np.uint64(1 << KPF_COMPOUND_TAIL)) != 0
    head_at = np.maximum.accumulate(np.where(is_head, idx, -1), axis=1)
    # first index >= i that is not a tail (PMD_PAGES when the block ends in tails)
    not_tail = np.where(is_tail, PMD_PAGES, idx)
    next_not_tail = np.minimum.accumulate(not_tail[:, ::-1], axis=1)[:, ::-1]
    next_not_tail = np.concatenate(
        (next_not_tail, np.full((len(blocks), 1), PMD_PAGES)), axis=1)
    at = (pfns[compound] % block_pages).astype(np.int64)
    h = head_at[inverse, at]
    ok = h >= 0  # a tail whose head lies outside the block: treat the block as the folio
    h_safe = np.where(ok, h, 0)
    end = next_not_tail[inverse, h_safe + 1]
    base = blocks[inverse] * block_pages
    heads[compound] = np.where(ok, base + h_safe.astype(np.uint64), base)
    sizes[compound] = np.where(ok, end - h_safe, PMD_PAGES)
    return heads, sizes


def walk(pagemap: pm.Pagemap, start: int, end: int) -> Iterator[Pages]:
    """The pages of [start, end) that have a folio, chunk by chunk."""
    first = start >> PAGE_SHIFT
    last = (end + PAGE_SIZE - 1) >> PAGE_SHIFT
    for lo in range(first, last, CHUNK_PAGES):
        hi = min(lo + CHUNK_PAGES, last)
        entries = pagemap.read_range(lo << PAGE_SHIFT, hi << PAGE_SHIFT)
        pfns = pm.pfn(entries)
        at = np.flatnonzero(pfns)
        if not len(at):
            continue
        pfns = pfns[at]
        flags = read_flags(pfns)
        keep = ~(has(flags, KPF_NOPAGE) | has(flags, KPF_ZERO_PAGE) | has(flags, KPF_HUGE))
        at, pfns, flags = at[keep], pfns[keep], flags[keep]
        if not len(at):
            continue
        heads, nr = folios(pfns, flags)
        addrs = (np.uint64(lo) + at.astype(np.uint64)) << np.uint64(PAGE_SHIFT)
        yield Pages(addrs, pfns, flags, heads, nr * PAGE_SIZE)


def passing(filters: list[FilterSpec], core_allowed: bool, pages: Pages) -> np.ndarray:
    """``!damos_va_filter_out()`` per page (the filters judge the page's folio)."""
    memcg_paths = {f.memcg_path for f in filters if f.type == "memcg"}
    cgroups = read_cgroups(pages.pfns) if memcg_paths and not core_allowed else None
    inodes = {p: memcg_inode(p) for p in memcg_paths} if cgroups is not None else {}
    return pages_passing(filters, core_allowed=core_allowed, flags=pages.flags,
                         folio_sizes=pages.folio_sizes, cgroups=cgroups, memcg_inodes=inodes)


class StatWalk:
    """``damos_va_stat()`` over the regions of one apply pass: the bytes of the folios that pass
    the ops filters, each folio counted once with its whole size (the kernel skips the rest of
    a folio's pages and a folio equal to ``s->last_applied``, which carries from one region to
    the next)."""

    def __init__(self) -> None:
        self.last_head: dict[int, int] = {}  # scheme index -> head PFN of the last folio

    def passed(self, pagemap: pm.Pagemap, scheme_index: int, filters: list[FilterSpec],
               core_allowed: bool, start: int, end: int) -> int:
        if not filters:
            return 0  # damos_ops_has_filter(): nothing is walked or counted
        total = 0
        last = self.last_head.get(scheme_index, -1)
        for pages in walk(pagemap, start, end):
            heads = pages.heads.astype(np.int64)
            prev = np.concatenate(([last], heads[:-1]))
            new = heads != prev
            ok = passing(filters, core_allowed, pages)
            total += int(pages.folio_sizes[new & ok].sum())
            last = int(heads[-1])
        self.last_head[scheme_index] = last
        return total


def migratable(pagemap: pm.Pagemap, filters: list[FilterSpec], core_allowed: bool,
               start: int, end: int) -> np.ndarray:
    """Addresses of [start, end) ``damos_va_migrate()`` would isolate: pages of LRU folios
    (``damon_get_folio()``) that pass the ops filters."""
    out = []
    for pages in walk(pagemap, start, end):
        ok = pages.lru & passing(filters, core_allowed, pages)
        out.append(pages.addrs[ok])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def open_pagemap(proc_dir: str) -> pm.Pagemap:
    """The pagemap of a process given as a ``/proc`` directory below ``/proc`` (vaddr's pinned
    ``self/fd/N``, so a reused pid is never read)."""
    if not os.path.isdir(f"/proc/{proc_dir}"):
        raise DamonError("ESRCH", f"/proc/{proc_dir}: the process has exited")
    return pm.Pagemap(proc_dir)
