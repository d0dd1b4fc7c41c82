"""``/proc/PID/pagemap``: one 64-bit entry per virtual page of a process.

Entry layout (Documentation/admin-guide/mm/pagemap.rst):

* bits 0-54: the page frame number when present; when swapped, bits 0-4 are the swap type and
  bits 5-54 the swap offset.
* bit 55 soft-dirty (3.11, ``CONFIG_MEM_SOFT_DIRTY``); bit 56 exclusively mapped (4.2; "certainly
  exclusive": may be clear for exclusive pages of large folios); bit 57 uffd-wp (5.13); bit 58
  guard region (6.15); bit 61 file page or shared anon (3.5); bit 62 swapped; bit 63 present.

Privileges: opening another process's pagemap needs PTRACE_MODE_READ (EACCES otherwise,
reported as EPERM). **PFNs read as 0 without CAP_SYS_ADMIN** (since 4.2; 4.0-4.1 refused the
open with EPERM instead), so page_idle and kpageflags lookups need root; the flag bits are
visible to anyone allowed to open the file.

Reads must be 8-byte aligned. Unmapped addresses read as 0 (no present/swapped bit); addresses
past the task's address-space limit, and every address once the process has exited, read as EOF.
The fd stays bound to the mm it was opened on: after the process exits (even if its pid is
reused) reads return EOF, which :meth:`Pagemap.read` turns into ESRCH.
"""

from __future__ import annotations

import os

import numpy as np

from damond.errors import DamonError
from damond.platform import FdOwner, os_error, read_u64_at
from damond.platform.pagesize import PAGE_SHIFT, PAGE_SIZE

PM_PFN_BITS = 55
PM_PFN_MASK = np.uint64((1 << PM_PFN_BITS) - 1)
PM_SWAP_TYPE_MASK = np.uint64(0x1F)
PM_SWAP_OFFSET_SHIFT = np.uint64(5)
PM_SOFT_DIRTY = np.uint64(1 << 55)
PM_MMAP_EXCLUSIVE = np.uint64(1 << 56)
PM_UFFD_WP = np.uint64(1 << 57)
PM_GUARD_REGION = np.uint64(1 << 58)
PM_FILE = np.uint64(1 << 61)
PM_SWAP = np.uint64(1 << 62)
PM_PRESENT = np.uint64(1 << 63)

# Gap (in pages) below which two runs are read with one pread: measured on the 6.18 host, a
# pread costs as much as the kernel walking ~100 extra PTEs; inside the TCG guest ~1000.
DEFAULT_MAX_GAP = 64


class Pagemap(FdOwner):
    """An open ``/proc/PID/pagemap`` of one process; reuse it across samples.

    Use as a context manager or call :meth:`close`. Reads from several threads at once are fine
    (``pread`` has no shared file position); :meth:`close` must not race them.
    """

    def __init__(self, pid: int | str = "self") -> None:
        self.pid = pid
        self.path = f"/proc/{pid}/pagemap"
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise os_error(exc, self.path, gone=True) from None

    def read(self, vaddrs: np.ndarray, max_gap: int = DEFAULT_MAX_GAP) -> np.ndarray:
        """Raw entries (uint64) for the pages containing ``vaddrs``, in input order.

        Duplicate and neighbouring pages are coalesced: one ``pread`` per run of consecutive
        pages, where runs less than ``max_gap`` pages apart count as one (the kernel's walk
        over a few unwanted PTEs is cheaper than another syscall). Unmapped pages and pages
        beyond the address space read as 0. Raises ESRCH when the process has exited.
        """
        pages = np.asarray(vaddrs, dtype=np.uint64) >> np.uint64(PAGE_SHIFT)
        return self._read_pages(pages, max_gap)

    def read_range(self, start: int, end: int) -> np.ndarray:
        """Entries for every page of ``[start, end)`` with a single ``pread``."""
        first, last = start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        if last <= first:
            return np.zeros(0, dtype=np.uint64)
        out = np.zeros(last - first, dtype=np.uint64)
        try:
            n = os.preadv(self._fd, [memoryview(out).cast("B")], first * 8)
        except OSError as exc:
            raise os_error(exc, self.path, gone=True) from None
        if n < out.nbytes:
            self._check_alive()
        return out

    def _read_pages(self, pages: np.ndarray, max_gap: int) -> np.ndarray:
        try:
            values, got = read_u64_at(self._fd, pages, max_gap)
        except OSError as exc:
            raise os_error(exc, self.path, gone=True) from None
        if not got.all():
            self._check_alive()
        return values

    def _check_alive(self) -> None:
        """A short read is either "past the address-space limit" or "the mm is gone".

        Page 0 is always below the limit, so EOF there means the process has exited.
        """
        try:
            n = len(os.pread(self._fd, 8, 0))
        except OSError as exc:
            raise os_error(exc, self.path, gone=True) from None
        if n == 0:
            raise DamonError("ESRCH", f"{self.path}: the process has exited", self.path)



def _u64(entries: np.ndarray) -> np.ndarray:
    return np.asarray(entries, dtype=np.uint64)


def is_present(entries: np.ndarray) -> np.ndarray:
    """Bit 63: the page is in RAM."""
    return (_u64(entries) & PM_PRESENT) != 0


def is_swapped(entries: np.ndarray) -> np.ndarray:
    """Bit 62: the page is in swap (zram included)."""
    return (_u64(entries) & PM_SWAP) != 0


def is_soft_dirty(entries: np.ndarray) -> np.ndarray:
    """Bit 55: written since the last ``clear_refs`` 4 (never set without CONFIG_MEM_SOFT_DIRTY)."""
    return (_u64(entries) & PM_SOFT_DIRTY) != 0


def is_exclusive(entries: np.ndarray) -> np.ndarray:
    """Bit 56: mapped only by this process (may be clear for exclusive parts of large folios)."""
    return (_u64(entries) & PM_MMAP_EXCLUSIVE) != 0


def is_file_or_shared(entries: np.ndarray) -> np.ndarray:
    """Bit 61: a page-cache page or shared anonymous memory."""
    return (_u64(entries) & PM_FILE) != 0


def is_uffd_wp(entries: np.ndarray) -> np.ndarray:
    """Bit 57: userfaultfd write-protected."""
    return (_u64(entries) & PM_UFFD_WP) != 0


def is_guard(entries: np.ndarray) -> np.ndarray:
    """Bit 58: a guard region installed with MADV_GUARD_INSTALL (6.15+)."""
    return (_u64(entries) & PM_GUARD_REGION) != 0


def pfn(entries: np.ndarray) -> np.ndarray:
    """Page frame numbers of present pages; 0 where absent, swapped, or without CAP_SYS_ADMIN."""
    e = _u64(entries)
    return np.where((e & (PM_PRESENT | PM_SWAP)) == PM_PRESENT, e & PM_PFN_MASK, np.uint64(0))


def swap_type(entries: np.ndarray) -> np.ndarray:
    """Swap device index of swapped pages (0 elsewhere; check :func:`is_swapped`)."""
    e = _u64(entries)
    return np.where((e & PM_SWAP) != 0, e & PM_SWAP_TYPE_MASK, np.uint64(0))


def swap_offset(entries: np.ndarray) -> np.ndarray:
    """Slot within the swap device of swapped pages (0 elsewhere)."""
    e = _u64(entries)
    off = (e & PM_PFN_MASK) >> PM_SWAP_OFFSET_SHIFT
    return np.where((e & PM_SWAP) != 0, off, np.uint64(0))
