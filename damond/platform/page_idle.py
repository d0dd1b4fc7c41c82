"""``/sys/kernel/mm/page_idle/bitmap``: idle page tracking (4.3+, ``CONFIG_IDLE_PAGE_TRACKING``).

The file is an array of native-endian u64 words; PFN ``i`` is bit ``i % 64`` of word ``i // 64``.
Semantics (mm/page_idle.c, admin-guide/mm/idle_page_tracking.rst):

* I/O must start on an 8-byte boundary and be a multiple of 8 bytes, else EINVAL. sysfs hands
  over at most one page (512 words) per call, so long runs take several calls.
* Writing ORs: each 1 bit clears the Accessed bits of every PTE mapping that page (an rmap walk,
  keeping the information for reclaim in PG_young) and sets its Idle flag; 0 bits do nothing, so
  Idle cannot be cleared by writing. Writing at or beyond the max PFN fails with ENXIO.
* Reading re-checks, for every page whose Idle flag is set, whether a PTE became young and clears
  Idle if so; the cost is one rmap walk per set bit. Reading beyond the max PFN returns EOF.
* Only user pages on the LRU (mapped anon/file, page cache) take the flag; other PFNs are
  silently ignored and read back 0. A freshly faulted page takes it only after it has reached
  the LRU lists (per-CPU batches drained). Large folios carry one flag for the whole folio, so
  touching one 4 KiB page of a THP clears the idle bit of all of its 512 pages.

Accesses can be missed: x86 does not flush the TLB when the kernel clears Accessed bits (here
or via ``clear_refs``), so a page reached through a translation still cached in the TLB does not
get its Accessed bit set again until that entry is evicted (context switches, TLB pressure).
The kernel's own DAMON has the same blind spot; over realistic sampling intervals it is small,
but a test that touches a page right after marking it must first make the target flush its TLB.

The file is mode 0600 root. So: root only, and only on kernels built with the option (Debian's
stock kernels and the development hosts lack it; the project's guest kernel has it).
"""

from __future__ import annotations

import errno
import os
import sys

import numpy as np

from damond.errors import DamonError
from damond.platform import SMALL_BATCH, FdOwner, os_error, pread_full, read_u64_at, runs_of

BITMAP_PATH = "/sys/kernel/mm/page_idle/bitmap"
_SIX = np.uint64(6)
_LOW6 = np.uint64(63)
_ONE = np.uint64(1)


def available(path: str = BITMAP_PATH) -> tuple[bool, str]:
    """Whether the bitmap can be used by this process, and why (not)."""
    if not os.path.exists(path):
        return False, f"{path} absent: kernel built without CONFIG_IDLE_PAGE_TRACKING"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        err = os_error(exc, path)
        return False, f"{err.why} (the file is mode 0600 root; run as root)"
    try:
        n = len(os.pread(fd, 8, 0))
    except OSError as exc:
        return False, os_error(exc, path).why
    finally:
        os.close(fd)
    if n != 8:
        return False, f"{path}: reading word 0 returned {n} bytes"
    return True, f"{path} readable and writable"


class PageIdleBitmap(FdOwner):
    """An open page_idle bitmap; keep one per daemon and reuse it for every sample."""

    def __init__(self, path: str = BITMAP_PATH) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DamonError(
                "ENOENT", f"{path} absent: kernel built without CONFIG_IDLE_PAGE_TRACKING", path
            ) from None
        except OSError as exc:
            raise os_error(exc, path) from None

    def mark_idle(self, pfns: np.ndarray, max_gap: int = 0) -> None:
        """Set the Idle flag of every page in ``pfns`` (and clear its PTE Accessed bits).

        Bits falling in the same word are ORed together and consecutive words go out in one
        ``pwrite``. With ``max_gap > 0``, runs at most that many words apart are written as one,
        the gap filled with zero words (a no-op for the kernel: only 1 bits act), which saves
        syscalls where they are expensive (under emulation). Raises ENXIO when a PFN is at or
        beyond the machine's max PFN.
        """
        flat = np.asarray(pfns, dtype=np.uint64).reshape(-1)
        if flat.size <= SMALL_BATCH:
            self._mark_idle_small(flat.tolist(), max_gap)
            return
        words, bits = _words_and_bits(flat)
        if words.size == 0:
            return
        breaks = np.flatnonzero(np.diff(words) > np.uint64(max_gap + 1)) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [words.size]))
        if max_gap:
            first = words[starts]
            lengths = (words[ends - 1] - first + np.uint64(1)).astype(np.intp)
            bases = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            span = np.zeros(int(lengths.sum()), dtype=np.uint64)
            run = np.repeat(np.arange(starts.size), ends - starts)
            span[bases[run] + (words - first[run]).astype(np.intp)] = bits
            for b, n, f in zip(bases.tolist(), lengths.tolist(), first.tolist(), strict=True):
                self._write_run(f, span[b : b + n])
            return
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            self._write_run(int(words[s]), bits[s:e])

    def _mark_idle_small(self, pfns: list[int], max_gap: int) -> None:
        """mark_idle for a few PFNs, in plain Python (see ``SMALL_BATCH``)."""
        words: dict[int, int] = {}
        for p in pfns:
            words[p >> 6] = words.get(p >> 6, 0) | (1 << (p & 63))
        if not words:
            return
        order = sys.byteorder
        for first, last in runs_of(sorted(words), max_gap):
            data = b"".join(words.get(w, 0).to_bytes(8, order) for w in range(first, last + 1))
            self._write_bytes(first, data)

    def is_idle(self, pfns: np.ndarray, max_gap: int = 0) -> np.ndarray:
        """Bool per PFN (input order): True when the page is still idle (not accessed since
        marked). Reading is what makes the kernel notice accesses, so call it once per sample.
        PFNs beyond the max PFN, and pages that cannot be tracked, read as False.

        ``max_gap`` merges runs of words at most that many words apart into one read; unlike
        for writes this is not free: the kernel checks all 64 pages of every word read and
        re-walks the rmap of each one that is Idle, so keep it small.
        """
        p = np.asarray(pfns, dtype=np.uint64).reshape(-1)
        try:
            values, _ = read_u64_at(self._fd, p >> _SIX, max_gap)
        except OSError as exc:
            raise os_error(exc, self.path) from None
        return ((values >> (p & _LOW6)) & _ONE).astype(bool)

    def read_words(self, first_word: int, count: int) -> np.ndarray:
        """Raw bitmap words ``[first_word, first_word + count)`` (wss-v2 style bulk scan for
        paddr); words beyond the max PFN come back as 0."""
        out = np.zeros(count, dtype=np.uint64)
        try:
            pread_full(self._fd, memoryview(out).cast("B"), first_word * 8)
        except OSError as exc:
            raise os_error(exc, self.path) from None
        return out

    def write_words(self, first_word: int, words: np.ndarray) -> None:
        """OR raw ``words`` into the bitmap starting at ``first_word`` (bulk mark idle)."""
        self._write_run(first_word, np.ascontiguousarray(words, dtype=np.uint64))

    def _write_run(self, first_word: int, words: np.ndarray) -> None:
        self._write_bytes(first_word, memoryview(words).cast("B"))

    def _write_bytes(self, first_word: int, buf) -> None:
        done = 0
        while done < len(buf):
            try:
                n = os.pwrite(self._fd, buf[done:], first_word * 8 + done)
            except OSError as exc:
                raise self._write_error(exc, first_word * 8 + done) from None
            if n <= 0:
                raise DamonError("EIO", f"{self.path}: write returned {n}", self.path)
            done += n

    def _write_error(self, exc: OSError, offset: int) -> DamonError:
        if exc.errno == errno.ENXIO:
            return DamonError(
                "ENXIO", f"{self.path}: PFN {offset * 8:#x} is beyond the max PFN", self.path
            )
        return os_error(exc, self.path)



def _words_and_bits(pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique word indices and, per word, the OR of the bits of the PFNs in it."""
    if pfns.size == 0:
        empty = np.zeros(0, dtype=np.uint64)
        return empty, empty
    words = pfns >> _SIX
    bits = _ONE << (pfns & _LOW6)
    order = np.argsort(words, kind="stable")
    words, bits = words[order], bits[order]
    first = np.concatenate(([0], np.flatnonzero(np.diff(words)) + 1))
    return words[first], np.bitwise_or.reduceat(bits, first)

