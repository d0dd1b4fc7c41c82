"""A physical-to-virtual reverse map, so that physical-address schemes can act on memory.

The kernel's paddr operations reclaim a physical page directly. User space can only advise
virtual ranges of processes (``process_madvise``), so damond finds, for each physical page, a
process and a virtual address mapping it: it scans every process's present pages (``/proc/PID/
maps`` plus ``/proc/PID/pagemap`` PFNs, using the ``PAGEMAP_SCAN`` ioctl of Linux 6.7+ to find
present pages without reading the pagemap of unpopulated virtual space). The map is rebuilt at
most once per update interval; pages it cannot place (kernel memory, page cache not mapped by
any process, pages that moved since) are tried but not applied.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import time
from dataclasses import dataclass

import numpy as np

from damond.errors import DamonError
from damond.platform import pagemap as pm
from damond.platform.maps import parse_maps
from damond.platform.pagesize import PAGE_SHIFT, PAGE_SIZE

#: _IOWR('f', 16, struct pm_scan_arg) (96 bytes), include/uapi/linux/fs.h, Linux 6.7+
PAGEMAP_SCAN = 0xC0606610
PAGE_IS_PRESENT = 1 << 3
_MAX_RUNS = 4096
_FALLBACK_CHUNK_PAGES = 1 << 16


class _PmScanArg(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


class _PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64),
                ("categories", ctypes.c_uint64)]


@dataclass
class BuildCost:
    seconds: float
    processes: int
    pages: int
    used_scan_ioctl: bool


class ReverseMap:
    """Sorted PFNs with one (pid, virtual address) each."""

    def __init__(self) -> None:
        self.pfns = np.zeros(0, dtype=np.uint64)
        self.pids = np.zeros(0, dtype=np.int64)
        self.vaddrs = np.zeros(0, dtype=np.uint64)
        self.built_at: float | None = None
        self.last_cost: BuildCost | None = None
        self._scan_ok: bool | None = None

    def build(self) -> BuildCost:
        t0 = time.perf_counter()
        pfn_parts, pid_parts, va_parts = [], [], []
        nproc = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            found = self._scan_process(int(name))
            if found is None:
                continue
            nproc += 1
            pfns, vaddrs = found
            pfn_parts.append(pfns)
            va_parts.append(vaddrs)
            pid_parts.append(np.full(len(pfns), int(name), dtype=np.int64))
        if pfn_parts:
            pfns = np.concatenate(pfn_parts)
            order = np.argsort(pfns, kind="stable")
            self.pfns = pfns[order]
            self.pids = np.concatenate(pid_parts)[order]
            self.vaddrs = np.concatenate(va_parts)[order]
        self.built_at = time.monotonic()
        self.last_cost = BuildCost(time.perf_counter() - t0, nproc, int(len(self.pfns)),
                                   bool(self._scan_ok))
        return self.last_cost

    def lookup(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(pids, page-aligned virtual addresses) of the mapped pages in [start, end)."""
        lo = np.searchsorted(self.pfns, np.uint64(start >> PAGE_SHIFT), side="left")
        hi = np.searchsorted(self.pfns, np.uint64((end + PAGE_SIZE - 1) >> PAGE_SHIFT),
                             side="left")
        if hi <= lo:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        pfns = self.pfns[lo:hi]
        first = np.concatenate(([True], pfns[1:] != pfns[:-1]))  # one mapping per page
        return self.pids[lo:hi][first], self.vaddrs[lo:hi][first]

    def _scan_process(self, pid: int) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                vmas = parse_maps(f.read())
            if not vmas:
                return None  # kernel threads have no address space
            with pm.Pagemap(pid) as pmap:
                pfn_parts, va_parts = [], []
                for v in vmas:
                    if v.path == "[vsyscall]":
                        continue
                    for s, e in self._present_runs(pmap, v.start, v.end):
                        entries = pmap.read_range(s, e)
                        present = pm.is_present(entries)
                        pfns = pm.pfn(entries)[present]
                        keep = pfns != 0
                        va = (np.uint64(s) + np.uint64(PAGE_SIZE)
                              * np.arange(len(entries), dtype=np.uint64))[present][keep]
                        pfn_parts.append(pfns[keep])
                        va_parts.append(va)
        except (OSError, DamonError):  # processes come and go while we scan
            return None
        if not pfn_parts:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
        return np.concatenate(pfn_parts), np.concatenate(va_parts)

    def _present_runs(self, pmap: pm.Pagemap, start: int, end: int):
        if self._scan_ok is not False:
            try:
                runs = list(_scan_present(pmap.fileno(), start, end))
                self._scan_ok = True
                return runs
            except OSError:
                self._scan_ok = False
        return [(s, min(s + _FALLBACK_CHUNK_PAGES * PAGE_SIZE, end))
                for s in range(start, end, _FALLBACK_CHUNK_PAGES * PAGE_SIZE)]


def _scan_present(fd: int, start: int, end: int):
    """Runs of present pages in [start, end) via the PAGEMAP_SCAN ioctl."""
    vec = (_PageRegion * _MAX_RUNS)()
    while start < end:
        arg = _PmScanArg(size=ctypes.sizeof(_PmScanArg), flags=0, start=start, end=end,
                         walk_end=0, vec=ctypes.addressof(vec), vec_len=_MAX_RUNS, max_pages=0,
                         category_inverted=0, category_mask=PAGE_IS_PRESENT,
                         category_anyof_mask=0, return_mask=PAGE_IS_PRESENT)
        n = fcntl.ioctl(fd, PAGEMAP_SCAN, arg)
        for i in range(n):
            yield vec[i].start, vec[i].end
        if arg.walk_end <= start or arg.walk_end >= end:
            return
        start = arg.walk_end
