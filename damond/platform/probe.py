"""What this kernel and this process can actually use, found out for real.

Each facility is exercised on this process's own memory where that is safe (a page of our own
is mapped, touched and inspected), because the presence of a file does not prove the feature
works: a kernel without CONFIG_MEM_SOFT_DIRTY still accepts ``clear_refs`` 4 and simply never sets
pagemap bit 55, and pagemap shows PFNs only with CAP_SYS_ADMIN. The result is cached for the
life of the process (``probe(refresh=True)`` re-runs it) and rendered by :func:`probe_text` for
the ``features`` command.

Side effects, all on this process only: ``clear_refs`` 4 (soft-dirty) and 5 (peak RSS) are
written to ``/proc/self/clear_refs``, one page gets MADV_COLD through ``process_madvise`` and
one 2 MiB area gets MADV_COLLAPSE. Nothing system-wide is changed (zram is only looked at).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from damond.errors import DamonError
from damond.platform import iomem, madvise, meminfo, page_idle, pagemap, refs
from damond.platform.kpageflags import KPF_ANON, read_flags
from damond.platform.pagesize import PAGE_SIZE, PMD_PAGES

THP_DIR = "/sys/kernel/mm/transparent_hugepage"
CAP_SYS_NICE = 23
CAP_SYS_ADMIN = 21


@dataclass(frozen=True, slots=True)
class Facility:
    """One kernel facility: whether damond can use it here and, in either case, why."""

    name: str
    available: bool
    reason: str
    since: str
    privilege: str
    perturbs: str | None = None


_lock = threading.Lock()
_cache: dict[str, Facility] | None = None


def probe(refresh: bool = False) -> dict[str, Facility]:
    """Detect every facility (cached after the first call); keys are facility names."""
    global _cache
    with _lock:
        if _cache is None or refresh:
            _cache = _probe_all()
        return dict(_cache)


def probe_text(refresh: bool = False) -> str:
    """A readable table of :func:`probe` for the ``features`` command."""
    facilities = probe(refresh).values()
    width = max(len(f.name) for f in facilities)
    lines = [f"{'facility':<{width}}  ok   {'since':<8}  privilege / reason"]
    for f in facilities:
        lines.append(f"{f.name:<{width}}  {'yes' if f.available else 'no ':<3}  {f.since:<8}  "
                     f"{f.privilege}")
        lines.append(f"{'':<{width}}       {'':<8}  -> {f.reason}")
        if f.perturbs:
            lines.append(f"{'':<{width}}       {'':<8}  !! perturbs: {f.perturbs}")
    return "\n".join(lines)


def has_capability(cap: int) -> bool:
    """Whether this process's effective capability set holds ``cap`` (``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


class _OwnPages:
    """Anonymous private pages of this process, touched, with their address."""

    def __init__(self, npages: int, align: int = PAGE_SIZE) -> None:
        self.map = mmap.mmap(-1, npages * PAGE_SIZE + align,
                             flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.offset = -base % align
        self.addr = base + self.offset
        self.npages = npages
        for i in range(npages):
            self.map[self.offset + i * PAGE_SIZE] = 1

    def entries(self) -> np.ndarray:
        addrs = self.addr + PAGE_SIZE * np.arange(self.npages, dtype=np.uint64)
        with pagemap.Pagemap("self") as pm:
            return pm.read(addrs)

    def close(self) -> None:
        self.map.close()


def _guard(name: str, since: str, privilege: str, perturbs: str | None = None):
    """Decorate a probe returning ``(available, reason)`` into one returning a Facility,
    turning any failure into "unavailable" with the error as the reason."""

    def wrap(fn: Callable[[], tuple[bool, str]]) -> Callable[[], Facility]:
        def run() -> Facility:
            try:
                ok, reason = fn()
            except DamonError as exc:
                ok, reason = False, str(exc)
            except OSError as exc:
                ok, reason = False, f"{errno.errorcode.get(exc.errno or 0, 'EIO')}: {exc}"
            return Facility(name, ok, reason, since, privilege, perturbs)

        run.__name__ = fn.__name__
        return run

    return wrap


@_guard("page_idle", "4.3", "root (bitmap is mode 0600)")
def _page_idle() -> tuple[bool, str]:
    return page_idle.available()


@_guard("pagemap", "2.6.25", "ptrace-read access to the target")
def _pagemap() -> tuple[bool, str]:
    pages = _OwnPages(1)
    try:
        entry = pages.entries()
    finally:
        pages.close()
    if not pagemap.is_present(entry)[0]:
        return False, "/proc/self/pagemap readable but a touched page is not reported present"
    return True, "/proc/PID/pagemap readable; present bit seen on a touched page"


@_guard("pagemap_pfn", "4.2", "CAP_SYS_ADMIN (PFNs read as 0 without it)")
def _pagemap_pfn() -> tuple[bool, str]:
    pages = _OwnPages(1)
    try:
        entry = pages.entries()
    finally:
        pages.close()
    if pagemap.pfn(entry)[0] == 0:
        return False, "pagemap PFNs read as 0: this process lacks CAP_SYS_ADMIN"
    return True, "pagemap shows PFNs (CAP_SYS_ADMIN held)"


@_guard("soft_dirty", "3.11", "owner of the target (clear_refs) + ptrace-read (pagemap)",
        "clear_refs 4 write-protects every PTE: one minor fault per page on its next write")
def _soft_dirty() -> tuple[bool, str]:
    pages = _OwnPages(2)
    try:
        refs.clear_refs("self", refs.CLEAR_REFS_SOFT_DIRTY)
        before = pagemap.is_soft_dirty(pages.entries())
        pages.map[pages.offset] = 2  # write page 0
        _ = pages.map[pages.offset + PAGE_SIZE]  # read page 1
        after = pagemap.is_soft_dirty(pages.entries())
    finally:
        pages.close()
    if before.any():
        return False, "clear_refs 4 did not clear pagemap bit 55 (soft-dirty unreliable here)"
    if not after[0]:
        return False, ("kernel built without CONFIG_MEM_SOFT_DIRTY (or the architecture lacks it):"
                       " clear_refs 4 is accepted but a written page never gets pagemap bit 55")
    if after[1]:
        return False, "a page that was only read got soft-dirty: write tracking unreliable"
    return True, "clear_refs 4 clears and a write sets pagemap bit 55 (reads do not)"


@_guard("clear_refs", "2.6.22", "owner of the target (file mode 0200)",
        "clearing Accessed/referenced bits hides recent use from reclaim (hot pages may be "
        "evicted)")
def _clear_refs() -> tuple[bool, str]:
    refs.clear_refs("self", refs.CLEAR_REFS_MM_HIWATER_RSS)
    return True, "/proc/PID/clear_refs writable (values 1-5 accepted)"


@_guard("smaps", "2.6.14", "ptrace-read access to the target",
        "each read walks every page table of the target (latency on large processes)")
def _smaps() -> tuple[bool, str]:
    entries = refs.read_smaps("self")
    if not entries:
        return False, "/proc/self/smaps is empty"
    try:
        rollup = refs.read_smaps_rollup("self")
    except DamonError as exc:
        return True, f"/proc/PID/smaps readable; smaps_rollup unusable ({exc.why})"
    if "Referenced" not in rollup:
        return True, "/proc/PID/smaps readable; smaps_rollup lacks Referenced"
    return True, "/proc/PID/smaps and smaps_rollup (4.14+) readable with Referenced"


@_guard("kpageflags", "2.6.25", "root (file mode 0400); PFNs from pagemap need CAP_SYS_ADMIN")
def _kpageflags() -> tuple[bool, str]:
    pages = _OwnPages(1)
    try:
        pfn = int(pagemap.pfn(pages.entries())[0])
        flags = int(read_flags(np.array([pfn], dtype=np.uint64))[0])  # while still mapped
    finally:
        pages.close()
    if pfn and not flags >> KPF_ANON & 1:
        return False, f"/proc/kpageflags lacks ANON for our own anonymous page (pfn {pfn:#x})"
    return True, "/proc/kpageflags readable" + ("" if pfn else " (but PFNs are hidden)")


@_guard("pidfd_open", "5.3", "none")
def _pidfd_open() -> tuple[bool, str]:
    fd = madvise.pidfd_open(os.getpid())
    try:
        alive = madvise.pidfd_alive(fd)
    finally:
        os.close(fd)
    if not alive:
        return False, "pidfd of this very process polls as exited"
    return True, "pidfd_open(2) works; exit is detected by polling the pidfd"


@_guard("process_madvise", "5.10", "CAP_SYS_NICE + ptrace-read on the target (5.12+)")
def _process_madvise() -> tuple[bool, str]:
    pages = _OwnPages(1)
    fd = madvise.pidfd_open(os.getpid())
    try:
        res = madvise.process_madvise(fd, [(pages.addr, PAGE_SIZE)], madvise.MADV_COLD)
    finally:
        os.close(fd)
        pages.close()
    if res.error is not None:
        return False, f"process_madvise(COLD) on own page failed: {res.error}"
    if not has_capability(CAP_SYS_NICE):
        return False, ("process_madvise works on this process, but without CAP_SYS_NICE advice "
                       "to other processes fails with EPERM")
    return True, (f"process_madvise(COLD) advised {res.advised} bytes of own memory; "
                  "CAP_SYS_NICE held; remote advice: WILLNEED, COLD, PAGEOUT, COLLAPSE")


@_guard("madv_collapse", "6.1", "as process_madvise for other processes")
def _madv_collapse() -> tuple[bool, str]:
    pages = _OwnPages(PMD_PAGES, align=PMD_PAGES * PAGE_SIZE)
    try:
        pages.map.madvise(madvise.MADV_COLLAPSE, pages.offset, PMD_PAGES * PAGE_SIZE)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        if name == "EINVAL":
            return False, ("MADV_COLLAPSE rejected with EINVAL: kernel older than 6.1 or "
                           "CONFIG_TRANSPARENT_HUGEPAGE off")
        return True, f"MADV_COLLAPSE known to the kernel (this attempt: {name})"
    finally:
        pages.close()
    return True, "MADV_COLLAPSE collapsed a 2 MiB area of own memory"


@_guard("iomem", "-", "CAP_SYS_ADMIN (others see zeroed addresses)")
def _iomem() -> tuple[bool, str]:
    ranges = iomem.system_ram_ranges()
    if not ranges:
        return False, "/proc/iomem lists no System RAM"
    total = sum(e - s for s, e in ranges)
    return True, f"{len(ranges)} System RAM ranges, {total >> 20} MiB"


@_guard("meminfo", "-", "none")
def _meminfo() -> tuple[bool, str]:
    rate = meminfo.free_mem_rate()
    return True, f"/proc/meminfo readable; free_mem_rate {rate}/1000"


@_guard("thp", "2.6.38", "none to read; root to change the mode")
def _thp() -> tuple[bool, str]:
    path = f"{THP_DIR}/enabled"
    if not os.path.exists(path):
        return False, f"{path} absent: kernel built without CONFIG_TRANSPARENT_HUGEPAGE"
    mode = _bracketed(path)
    defrag = _bracketed(f"{THP_DIR}/defrag")
    if mode == "never":
        return False, "transparent_hugepage/enabled is [never]"
    return True, f"enabled=[{mode}] defrag=[{defrag}]"


@_guard("zram", "3.14", "root (sysfs writes, swapon)")
def _zram() -> tuple[bool, str]:
    hot_add = os.path.exists("/sys/class/zram-control/hot_add")
    devices = [n for n in os.listdir("/sys/block") if n.startswith("zram")]
    if not hot_add and not devices:
        return False, "no zram devices: kernel without CONFIG_ZRAM (or module not loaded)"
    mkswap = shutil.which("mkswap") or shutil.which("mkswap", path="/usr/sbin:/sbin")
    if mkswap is None:
        return False, "zram present but the mkswap binary (util-linux) is missing"
    if os.geteuid() != 0:
        return False, "zram present but setting it up needs root"
    how = "hot_add" if hot_add else f"existing {', '.join(sorted(devices))}"
    return True, f"zram swap can be set up ({how}; mkswap at {mkswap})"


def _bracketed(path: str) -> str:
    with open(path) as f:
        text = f.read()
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else text.strip()


_PROBES = (_page_idle, _pagemap, _pagemap_pfn, _soft_dirty, _clear_refs, _smaps, _kpageflags,
           _pidfd_open, _process_madvise, _madv_collapse, _iomem, _meminfo, _thp, _zram)


def _probe_all() -> dict[str, Facility]:
    facilities = [p() for p in _PROBES]
    return {f.name: f for f in facilities}
