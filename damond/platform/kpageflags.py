"""``/proc/kpageflags`` (and ``kpagecount``, ``kpagecgroup``): per-PFN page state.

One native-endian u64 per PFN, read here with one ``pread`` per run of consecutive PFNs, on a
file descriptor opened once per process and kept. The files are mode 0400 root. PFNs come from
:mod:`damond.platform.pagemap` (which itself needs CAP_SYS_ADMIN to show them) or from
``/proc/iomem`` ranges for physical-address monitoring.

Flags used by DAMOS filters on paddr: ``anon`` = ANON, ``active`` = ACTIVE, ``unmapped`` = not
MMAP, ``hugepage_size`` from HUGE/THP plus COMPOUND_HEAD/TAIL. IDLE (25) may be stale for PTE
accesses until the page_idle bitmap has been read for that page. Flag numbers are ABI
(include/uapi/linux/kernel-page-flags.h); bit 23, BALLOON, is documented as OFFLINE today.
PFNs that are holes (no struct page) read with NOPAGE set; reads past the max PFN return EOF (0).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from damond.errors import DamonError
from damond.platform import os_error, pread_full, read_u64_at
from damond.platform.pagesize import PMD_PAGES

KPAGEFLAGS_PATH = "/proc/kpageflags"
KPAGECOUNT_PATH = "/proc/kpagecount"
KPAGECGROUP_PATH = "/proc/kpagecgroup"

KPF_LOCKED = 0
KPF_ERROR = 1
KPF_REFERENCED = 2
KPF_UPTODATE = 3
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ACTIVE = 6
KPF_SLAB = 7
KPF_WRITEBACK = 8
KPF_RECLAIM = 9
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_OFFLINE = 23
KPF_BALLOON = 23
KPF_ZERO_PAGE = 24
KPF_IDLE = 25
KPF_PGTABLE = 26

_BIT = {name: np.uint64(1 << value) for name, value in globals().copy().items()
        if name.startswith("KPF_")}
_HUGE_PART = _BIT["KPF_THP"] | _BIT["KPF_COMPOUND_TAIL"]


# Runs of PFNs fewer than this many entries apart are read as one span: the kernel's per-PFN
# work is small next to a syscall (host: break-even near 32; TCG guest: far above).
DEFAULT_MAX_GAP = 16


_fds: dict[str, int] = {}
_fds_lock = threading.Lock()


def _fd(path: str) -> int:
    """The kept read-only fd of ``path`` (``pread`` needs no per-call open or seek)."""
    with _fds_lock:
        if path not in _fds:
            try:
                _fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise DamonError("ENOENT", f"{path} absent: kernel built without "
                                 "CONFIG_PROC_PAGE_MONITOR (or CONFIG_MEMCG for kpagecgroup)",
                                 path) from None
            except OSError as exc:
                raise os_error(exc, f"{path} (mode 0400 root)") from None
        return _fds[path]


def _read(path: str, pfns: np.ndarray, max_gap: int = DEFAULT_MAX_GAP) -> np.ndarray:
    fd = _fd(path)
    try:
        values, _ = read_u64_at(fd, np.asarray(pfns, dtype=np.uint64).reshape(-1), max_gap)
    except OSError as exc:
        raise os_error(exc, path) from None
    return values


def read_flags(pfns: np.ndarray, max_gap: int = DEFAULT_MAX_GAP) -> np.ndarray:
    """Flag words (uint64, input order) for ``pfns``; 0 for PFNs past the max PFN.
    One ``pread`` per run of PFNs (runs up to ``max_gap`` apart merged)."""
    return _read(KPAGEFLAGS_PATH, pfns, max_gap)


def read_counts(pfns: np.ndarray) -> np.ndarray:
    """How many times each page is mapped (``/proc/kpagecount``)."""
    return _read(KPAGECOUNT_PATH, pfns)


def read_cgroups(pfns: np.ndarray) -> np.ndarray:
    """Inode number of each page's memory cgroup directory (``/proc/kpagecgroup``, 0 = none);
    compare with ``os.stat(cgroup_dir).st_ino`` for DAMOS memcg filters."""
    return _read(KPAGECGROUP_PATH, pfns)


def has(flags: np.ndarray, bit: int) -> np.ndarray:
    """Vectorised ``flags & (1 << bit) != 0``."""
    return (np.asarray(flags, dtype=np.uint64) & np.uint64(1 << bit)) != 0


def is_thp(flags: np.ndarray) -> np.ndarray:
    """Part (head or tail) of a transparent huge page or any large anon/LRU folio (mTHP too):
    the kernel sets THP on every page of such folios, and on the huge zero page."""
    return has(flags, KPF_THP)


def is_huge_part(flags: np.ndarray) -> np.ndarray:
    """Part of a transparent huge page, or a tail of any compound page: page_idle keeps the idle
    flag of such a page on its head, so checks of it go to the head page's PFN."""
    return (np.asarray(flags, dtype=np.uint64) & _HUGE_PART) != 0


def is_hugetlb(flags: np.ndarray) -> np.ndarray:
    """Part of a hugetlbfs page (HUGE), which DAMON cannot split or page out."""
    return has(flags, KPF_HUGE)


def folio_size_hint(pfn: int, max_pages: int = PMD_PAGES) -> tuple[int, int]:
    """``(head_pfn, nr_pages)`` of the folio holding ``pfn``; ``(pfn, 1)`` for a small page.

    Large folios are naturally aligned in physical memory, so a folio of at most ``max_pages``
    (default: a PMD-sized THP) lies inside the ``max_pages``-aligned block around
    ``pfn``: its head is the last COMPOUND_HEAD at or below ``pfn`` and it ends at the first later
    page that is not a COMPOUND_TAIL. Costs one ``pread`` of ``max_pages`` entries. A tail page
    whose head is outside the block (a 1 GiB hugetlb page) is reported as ``(block, max_pages)``.
    """
    base = pfn - pfn % max_pages
    flags = _read_block(base, max_pages)
    at = pfn - base
    compound = _BIT["KPF_COMPOUND_HEAD"] | _BIT["KPF_COMPOUND_TAIL"]
    if at >= flags.size or not flags[at] & compound:
        return pfn, 1
    heads = np.flatnonzero(flags[: at + 1] & _BIT["KPF_COMPOUND_HEAD"])
    if heads.size == 0:
        return base, max_pages
    head = int(heads[-1])
    not_tail = np.flatnonzero((flags[head + 1 :] & _BIT["KPF_COMPOUND_TAIL"]) == 0)
    size = 1 + (int(not_tail[0]) if not_tail.size else flags.size - head - 1)
    return base + head, size


def _read_block(first: int, count: int) -> np.ndarray:
    out = np.zeros(count, dtype=np.uint64)
    try:
        n = pread_full(_fd(KPAGEFLAGS_PATH), memoryview(out).cast("B"), first * 8)
    except OSError as exc:
        raise os_error(exc, KPAGEFLAGS_PATH) from None
    return out[: n // 8]


def flag_names(flags: int) -> list[str]:
    """Readable names of the bits set in one flag word (for debugging and reports)."""
    return [name[4:] for name, bit in _BIT.items()
            if name != "KPF_BALLOON" and int(flags) & int(bit)]
