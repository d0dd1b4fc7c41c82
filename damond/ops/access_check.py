"""Access-check backends: how the virtual-address operation sets learn whether a sampled page
was accessed, with whatever the running kernel lets user space see.

The kernel's DAMON clears and tests a page table's Accessed bit from inside the kernel. User
space has three ways to get at the same information (user-space-facilities.md):

``page_idle``  exact, reads and writes, per sampled page: the page's PFN from ``pagemap`` is
               marked idle in ``/sys/kernel/mm/page_idle/bitmap`` (the kernel clears its young
               bits through the rmap, like ``damon_ptep_mkold()``) and read back after the
               sampling interval; still idle means not accessed. Needs
               CONFIG_IDLE_PAGE_TRACKING, root and pagemap PFNs (CAP_SYS_ADMIN).
``soft_dirty`` writes only, per page: ``clear_refs`` 4 clears the whole process's soft-dirty
               bits, pagemap bit 55 shows pages written since. Misses reads. Changes kernel
               state: the process takes a write-protect fault on its first write to each page
               after every clear. Needs CONFIG_MEM_SOFT_DIRTY.
``smaps``      reads and writes, per mapping only: ``clear_refs`` 1 clears the process's
               Accessed bits and PG_referenced, ``smaps`` then reports per mapping how many
               bytes were referenced since. A sampled page counts as accessed with the
               probability (referenced bytes / mapping size), so regions inside one mapping
               cannot be told apart, but separate mappings can. Changes kernel state: clearing
               referenced bits perturbs page reclaim's view of what is hot. Works everywhere.

A backend works per target (one process) and per sample: ``prepare`` right after the sampling
addresses are chosen, ``check`` after the sampling interval, both on all regions at once.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import numpy as np

from damond.errors import DamonError
from damond.platform import pagemap as pm
from damond.platform import refs
from damond.platform.kpageflags import KPAGEFLAGS_PATH, is_huge_part, read_flags
from damond.platform.page_idle import PageIdleBitmap
from damond.platform.pagesize import PAGE_SHIFT, PAGE_SIZE, PMD_PAGES
from damond.platform.probe import probe
from damond.platform.proc_cpu import process_cpu_ns

#: Best first: the order in which ``auto`` tries the backends.
BACKENDS = ("page_idle", "soft_dirty", "smaps")

PERTURBS = {
    "page_idle": "sets the idle flag of sampled pages (shared with other page_idle users)",
    "soft_dirty": "write-protects every page of the target at each sample (write faults)",
    "smaps": "clears the target's referenced bits at each sample (perturbs page reclaim)",
}


def availability() -> dict[str, tuple[bool, str]]:
    """Whether each backend can work here, and why (not)."""
    f = probe()
    out: dict[str, tuple[bool, str]] = {}
    pfns = f["pagemap_pfn"] if "pagemap_pfn" in f else f["pagemap"]
    if not f["page_idle"].available:
        out["page_idle"] = (False, f["page_idle"].reason)
    elif not pfns.available:
        out["page_idle"] = (False, f"pagemap does not show PFNs: {pfns.reason}")
    else:
        out["page_idle"] = (True, "idle page tracking and pagemap PFNs are available")
    sd = f["soft_dirty"]
    out["soft_dirty"] = (sd.available, sd.reason)
    cr = f.get("clear_refs") or f.get("smaps")
    out["smaps"] = (cr.available, cr.reason) if cr else (True, "clear_refs and smaps")
    return out


def choose(forced: str | None = None) -> tuple[str, list[str]]:
    """The best available backend (or the forced one), plus why better ones were passed over.

    A forced backend that cannot work here is refused with EINVAL and the reason.
    """
    avail = availability()
    if forced and forced != "auto":
        if forced not in BACKENDS:
            raise DamonError("EINVAL", f"unknown access check {forced!r} "
                             f"(choose from auto, {', '.join(BACKENDS)})")
        ok, reason = avail[forced]
        if not ok:
            raise DamonError("EINVAL", f"access check {forced!r} is unavailable: {reason}")
        return forced, [f"{forced} forced by the user"]
    skipped = []
    for name in BACKENDS:
        ok, reason = avail[name]
        if ok:
            return name, skipped
        skipped.append(f"{name} unavailable: {reason}")
    raise DamonError("EINVAL", "no access check works here: " + "; ".join(skipped))


#: Up to this many regions a sample's page_idle work is one pread/pwrite per page in a plain
#: loop: fewer interpreter steps than batching when few pages share a word, which is what
#: matters where the interpreter is slow (the emulated guest runs it ~50x slower).
LEAN_MAX = 128
_PFN_MASK = (1 << 55) - 1
_ORDER = sys.byteorder
_NOT_TRACKABLE = -2  # a present page page_idle cannot track (the zero page)


def zero_page_pfn() -> int:
    """The PFN of the shared zero page, which maps untouched anonymous memory that was only
    read. It is not on an LRU list, so page_idle cannot track it (its bit never sets) and the
    kernel's DAMON never counts it as accessed (``damon_get_folio()`` returns no folio): damond
    must not read its never-set idle bit as "accessed" either."""
    global _ZERO_PFN
    if _ZERO_PFN is None:
        m = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            _ = m[0]  # a read fault maps the zero page
            addr = np.array([ctypes.addressof(ctypes.c_char.from_buffer(m))], dtype=np.uint64)
            with pm.Pagemap("self") as own:
                entry = own.read(addr)
            _ZERO_PFN = int(pm.pfn(entry)[0]) if pm.is_present(entry)[0] else -1
        finally:
            m.close()
    return _ZERO_PFN


_ZERO_PFN: int | None = None


class PageIdleCheck:
    name = "page_idle"

    def __init__(self, proc_dir: str, thp_ranges) -> None:
        self.pagemap = pm.Pagemap(proc_dir)
        self.bitmap = PageIdleBitmap()
        self._zero_pfn = zero_page_pfn()
        self._thp_ranges = thp_ranges  # callable -> sorted (start, end) arrays of THP areas
        self._pfns = np.zeros(0, dtype=np.uint64)
        self._present = np.zeros(0, dtype=bool)
        self._folio_pages = np.zeros(0, dtype=np.uint64)
        self._lean: list[int] | None = None
        self._untrackable = np.zeros(0, dtype=bool)
        self._kpageflags_fd: int | None = None

    def prepare(self, addrs: np.ndarray) -> None:
        self._lean = None
        if len(addrs) <= LEAN_MAX and not len(self._thp_ranges()[0]):
            self._lean = self._lean_prepare(addrs.tolist())
            return
        entries = self.pagemap.read(addrs)
        present = pm.is_present(entries)
        pfns = pm.pfn(entries)
        untrackable = present & (pfns == np.uint64(max(self._zero_pfn, 0)))
        present &= ~untrackable
        folio_pages = np.ones(len(addrs), dtype=np.uint64)
        maybe_thp = present & self._in_thp_areas(addrs)
        if maybe_thp.any():
            # page_idle keeps the flag on a huge page's head only: mark and read the head,
            # and let regions sampled inside the same huge page share one check (as vaddr's
            # damon_va_young() reports the folio size)
            huge = is_huge_part(read_flags(pfns[maybe_thp]))
            idx = np.flatnonzero(maybe_thp)[huge]
            offset = (addrs[idx] >> np.uint64(PAGE_SHIFT)) % np.uint64(PMD_PAGES)
            pfns[idx] -= offset
            folio_pages[idx] = PMD_PAGES
        self._pfns, self._present, self._folio_pages = pfns, present, folio_pages
        self._untrackable = untrackable
        if present.any():
            self.bitmap.mark_idle(pfns[present])

    def _lean_prepare(self, addrs: list[int]) -> list[int]:
        """PFNs (-1 when not present) of the sampled pages, each marked idle."""
        pread, pwrite, fd, bfd = os.pread, os.pwrite, self.pagemap.fileno(), self.bitmap.fileno()
        zero, shift = self._zero_pfn, PAGE_SHIFT
        pfns = []
        short = False
        for a in addrs:
            raw = pread(fd, 8, (a >> shift) << 3)
            if len(raw) < 8:
                short = True
                pfns.append(-1)
                continue
            e = int.from_bytes(raw, _ORDER)
            if e >> 63:
                pfn = e & _PFN_MASK
                if pfn == zero:
                    pfns.append(_NOT_TRACKABLE)
                    continue
                pfns.append(pfn)
                pwrite(bfd, (1 << (pfn & 63)).to_bytes(8, _ORDER), (pfn >> 6) << 3)
            else:
                pfns.append(-1)
        if short:
            self.pagemap.read(np.zeros(1, dtype=np.uint64))  # raises ESRCH if the mm is gone
        return pfns

    def _lean_check(self, addrs: list[int], pfns: list[int]) -> np.ndarray:
        pread, fd, bfd = os.pread, self.pagemap.fileno(), self.bitmap.fileno()
        shift = PAGE_SHIFT
        out = []
        for a, pfn in zip(addrs, pfns, strict=True):
            if pfn == _NOT_TRACKABLE:
                out.append(False)
            elif pfn < 0:  # not mapped at prepare: accessed if it was faulted in since
                raw = pread(fd, 8, (a >> shift) << 3)
                out.append(len(raw) == 8 and int.from_bytes(raw, _ORDER) >> 63 == 1)
            else:
                raw = pread(bfd, 8, (pfn >> 6) << 3)
                out.append(len(raw) == 8 and not (int.from_bytes(raw, _ORDER) >> (pfn & 63)) & 1)
        return np.array(out, dtype=bool)

    def check(self, addrs: np.ndarray) -> np.ndarray:
        if self._lean is not None:
            return self._lean_check(addrs.tolist(), self._lean)
        accessed = np.zeros(len(addrs), dtype=bool)
        present = self._present
        if present.any():
            accessed[present] = ~self.bitmap.is_idle(self._pfns[present])
        if (~present & ~self._untrackable).any():
            # not mapped at prepare: accessed if it was faulted in during the interval
            missing = np.flatnonzero(~present & ~self._untrackable)
            accessed[missing] = pm.is_present(self.pagemap.read(addrs[missing]))
        return _share_within_folios(addrs, accessed, self._folio_pages)

    def _in_thp_areas(self, addrs: np.ndarray) -> np.ndarray:
        starts, ends = self._thp_ranges()
        if not len(starts):
            return np.zeros(len(addrs), dtype=bool)
        i = np.searchsorted(starts, addrs, side="right") - 1
        ok = i >= 0
        i = np.maximum(i, 0)
        return ok & (addrs < ends[i])

    def kpageflags_fd(self) -> int:
        """``/proc/kpageflags`` open for the native sampler's huge-page lookups (-1 when it
        cannot be opened: pages in THP areas are then checked at the sampled page itself).
        Opened once rather than per batch: under emulation the open and close were a quarter
        of a batch's Python set-up."""
        if self._kpageflags_fd is None:
            try:
                self._kpageflags_fd = os.open(KPAGEFLAGS_PATH, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._kpageflags_fd = -1
        return self._kpageflags_fd

    def close(self) -> None:
        self.pagemap.close()
        self.bitmap.close()
        if self._kpageflags_fd is not None and self._kpageflags_fd >= 0:
            os.close(self._kpageflags_fd)
        self._kpageflags_fd = None


def _share_within_folios(addrs: np.ndarray, accessed: np.ndarray,
                         folio_pages: np.ndarray) -> np.ndarray:
    """The kernel's same-folio cache: a region whose sampled page lies in the same huge page
    as the previous region's reuses that check (the huge page is counted once)."""
    if not (folio_pages > 1).any():
        return accessed
    out = accessed.copy()
    size = folio_pages * np.uint64(PAGE_SIZE)
    last_base, last_size, last_result = None, None, False
    for i, (a, s) in enumerate(zip(addrs.tolist(), size.tolist(), strict=True)):
        if last_size is not None and a - a % last_size == last_base:
            out[i] = last_result
            continue
        last_base, last_size, last_result = a - a % s, s, bool(out[i])
    return out


class IdleSkip:
    """Skips the whole-process checks while the process does not run.

    ``smaps`` and ``soft_dirty`` clear bits of the whole process and walk all its page tables
    at every sample, whatever the process did. But a process whose threads used no CPU time
    during a sampling interval (``damond.platform.proc_cpu``) set no Accessed or soft-dirty
    bit through its page tables: nothing was accessed, and the bits cleared before are still
    clear, so neither the check nor the next clearing is needed. An idle process then costs
    one system call per sample instead of a page-table walk, and is not perturbed at all.

    Missed, knowingly: accesses made by *other* processes through this one's page tables
    (``process_vm_readv``, ptrace, ``/proc/PID/mem``) while it sleeps, and, for ``smaps``,
    ``PG_referenced`` set by other processes' reads of shared file pages.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._cpu0: int | None = None  # the process's CPU time read before the last clearing
        self._clear = False  # the bits are known clear: nothing ran since the last clearing
        self.skipped = 0

    def need_clear(self) -> bool:
        """Before a sample: True when the bits must be cleared (then call ``cleared``)."""
        if self.pid is None:
            return True
        now = process_cpu_ns(self.pid)
        if self._clear and now is not None and now == self._cpu0:
            return False
        self._cpu0 = now
        return True

    @property
    def quiet(self) -> bool:
        """The last check found that the process had not run since its bits were cleared."""
        return self._clear

    def still_quiet(self) -> bool:
        """Whether the process is still known not to have run since its bits were cleared:
        ``ran()`` would answer False. Changes nothing (one system call), so a caller can ask
        every target before it commits to a quiet answer (see ``note_quiet``)."""
        if not self._clear or self.pid is None:
            return False
        now = process_cpu_ns(self.pid)
        return now is not None and now == self._cpu0

    def note_quiet(self) -> None:
        """Account a check answered by ``still_quiet()``: what ``ran()`` does when it answers
        False (the bits stay known clear)."""
        self.skipped += 1

    def ran(self) -> bool:
        """After the sampling interval: whether the process used any CPU time since the bits
        were cleared (if not, the check answers "nothing accessed" without looking)."""
        if self.pid is None or self._cpu0 is None:
            return True
        now = process_cpu_ns(self.pid)
        self._clear = now is not None and now == self._cpu0
        if self._clear:
            self.skipped += 1
        return not self._clear


class SoftDirtyCheck:
    name = "soft_dirty"

    def __init__(self, proc_dir: str, pid: int | None = None) -> None:
        self.proc_dir = proc_dir
        self.pagemap = pm.Pagemap(proc_dir)
        self.idle = IdleSkip(pid)

    def prepare(self, addrs: np.ndarray) -> None:
        if self.idle.need_clear():
            refs.clear_refs(self.proc_dir, 4)

    def check(self, addrs: np.ndarray) -> np.ndarray:
        if not self.idle.ran():
            return np.zeros(len(addrs), dtype=bool)
        entries = self.pagemap.read(addrs)
        return pm.is_soft_dirty(entries) & (pm.is_present(entries) | pm.is_swapped(entries))

    def close(self) -> None:
        self.pagemap.close()


class SmapsCheck:
    """The fallback check: ``clear_refs`` 1, then each VMA's share of referenced bytes from
    ``smaps``. smaps tells nothing finer than a VMA, so every sampled page of one VMA gets
    the same answer, and the share becomes a count by error diffusion: a VMA whose pages were
    half referenced is found accessed in every other sample, exactly. (Independent random
    draws per page made equally used regions differ by chance; the kernel's merge, which
    joins regions whose counts are close, then kept them apart up to ``max_nr_regions``, and
    the ages of the regions kept resetting: noise shown as detail.)"""

    name = "smaps"

    def __init__(self, proc_dir: str, rng: np.random.Generator, pid: int | None = None) -> None:
        self.proc_dir = proc_dir
        self.rng = rng
        self.idle = IdleSkip(pid)
        #: per VMA start: the share of a sample carried over (starts random, so that VMAs
        #: with equal shares do not all fire in the same samples)
        self._carry: dict[int, float] = {}

    def prepare(self, addrs: np.ndarray) -> None:
        if self.idle.need_clear():
            refs.clear_refs(self.proc_dir, 1)

    def check(self, addrs: np.ndarray) -> np.ndarray:
        if not self.idle.ran():
            return np.zeros(len(addrs), dtype=bool)
        vmas = refs.read_smaps(self.proc_dir)
        if not vmas:
            return np.zeros(len(addrs), dtype=bool)
        starts = np.array([v.start for v in vmas], dtype=np.uint64)
        ends = np.array([v.end for v in vmas], dtype=np.uint64)
        fired = self._diffuse(vmas)
        i = np.searchsorted(starts, addrs, side="right") - 1
        inside = i >= 0
        i = np.maximum(i, 0)
        inside &= addrs < ends[i]
        return inside & fired[i]

    def _diffuse(self, vmas) -> np.ndarray:
        """Whether each VMA counts as accessed in this sample."""
        carry, old = {}, self._carry
        fired = np.zeros(len(vmas), dtype=bool)
        for k, v in enumerate(vmas):
            c = old.get(v.start)
            if c is None:
                c = float(self.rng.random())
            c += v.referenced / v.size if v.size else 0.0
            if c >= 1.0:
                fired[k] = True
                c -= 1.0
            carry[v.start] = c
        self._carry = carry  # VMAs gone since the last sample are forgotten
        return fired

    def close(self) -> None:
        pass


def open_backend(name: str, proc_dir: str, rng: np.random.Generator, thp_ranges,
                 pid: int | None = None):
    """The backend ``name`` for the process at ``proc_dir``; ``pid`` lets the whole-process
    checks skip samples in which the process did not run (``IdleSkip``)."""
    if name == "page_idle":
        return PageIdleCheck(proc_dir, thp_ranges)
    if name == "soft_dirty":
        return SoftDirtyCheck(proc_dir, pid)
    return SmapsCheck(proc_dir, rng, pid)
