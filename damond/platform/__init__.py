"""Thin, batched wrappers over the kernel facilities damond monitors and acts through.

Everything here is a plain blocking function or class (no trio): the sampling loop decides
which thread runs it. Every failure surfaces as :class:`damond.errors.DamonError` carrying the
errno name the kernel gave (or would give) and a one-line reason.

Modules:

``pagesize``
    This machine's page size (and the pages of a PMD-mapped huge page): the one place it is
    read.
``maps``
    ``/proc/PID/maps`` parsed into :class:`~damond.platform.maps.Vma` records.
``pagemap``
    ``/proc/PID/pagemap``: raw 64-bit entries for many virtual pages with one ``pread`` per
    contiguous run, plus vectorised decoders (PFN, present, swapped, soft-dirty, ...).
``page_idle``
    ``/sys/kernel/mm/page_idle/bitmap`` (``CONFIG_IDLE_PAGE_TRACKING``, 4.3+): mark PFNs idle
    and read them back, one syscall per run of consecutive bitmap words.
``kpageflags``
    ``/proc/kpageflags`` (and ``kpagecount``/``kpagecgroup``): per-PFN page flags, THP hints.
``refs``
    ``/proc/PID/clear_refs`` and ``/proc/PID/smaps`` / ``smaps_rollup``: the wss.pl-style
    Referenced fallback that works on any kernel.
``madvise``
    ``pidfd_open(2)``, a pid-reuse-safe liveness check, and ``process_madvise(2)`` batched by
    ``IOV_MAX`` with exact byte accounting.
``meminfo``
    ``/proc/meminfo`` in bytes and the kernel's free-memory rate (per thousand) for watermarks.
``iomem``
    ``/proc/iomem`` "System RAM" ranges and the kernel's biggest-System-RAM choice for paddr.
``probe``
    Detects, once and for real, which of the above this kernel and this process can use.
``zram``
    A context manager that brings up (and removes) a zram swap device for tests and demos.

Functions and classes that take a ``pid`` build ``/proc/{pid}/...`` paths, so besides a number
they accept ``"self"`` and ``"self/fd/N"`` where N is an open ``/proc/PID`` directory fd: such
paths always resolve to the original process (or fail with ESRCH once it is gone), never to a
new process that reused the pid.

This ``__init__`` also holds the two helpers every module shares: translating ``OSError`` into
``DamonError`` and the batched reader of "one u64 per index" kernel files.
"""

from __future__ import annotations

import errno
import os
import sys

import numpy as np

from damond.errors import DamonError

__all__ = ["os_error", "pread_full", "read_u64_at", "u64_runs", "unique_inverse"]


class FdOwner:
    """Owns one open file descriptor (``self._fd``): closed by ``close()``, at the end of a
    ``with`` block, or when the object is collected, whichever comes first."""

    _fd: int = -1

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def os_error(exc: OSError, what: str, *, gone: bool = False) -> DamonError:
    """Turn an ``OSError`` into a ``DamonError`` that names ``what`` failed.

    With ``gone=True`` (paths under ``/proc/PID``) a missing file means the process no longer
    exists, so ENOENT becomes ESRCH. EACCES becomes EPERM: both mean "not privileged enough"
    for a /proc or sysfs file, and the project reports privilege problems as EPERM.
    """
    code = exc.errno or errno.EIO
    name = errno.errorcode.get(code, "EIO")
    if gone and name == "ENOENT":
        return DamonError("ESRCH", f"{what}: process does not exist (any more)", what)
    if name == "EACCES":
        name = "EPERM"
    return DamonError(name, f"{what}: {exc.strerror or os.strerror(code)}", what)


def u64_runs(
    indices: np.ndarray, max_gap: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deduplicate ``indices`` and split them into runs.

    Returns ``(unique, inverse, run_starts, run_ends)`` where ``unique[inverse] == indices`` and
    within each ``unique[run_starts[k]:run_ends[k]]`` neighbours differ by at most
    ``max_gap + 1`` (with the default 0: runs of consecutive integers).
    """
    unique, inverse = unique_inverse(indices)
    if unique.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return unique, inverse, empty, empty
    breaks = np.flatnonzero(np.diff(unique) > np.uint64(max_gap + 1)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [unique.size]))
    return unique, inverse, starts, ends


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` built on a *stable* argsort.

    numpy's default (quicksort) argsort dispatches to AVX2 code that gives wrong orders under
    qemu's software CPU emulation (seen in the project's TCG guest with numpy 2.4: unsorted,
    duplicated "unique" values); the stable sort takes another code path and is right everywhere.
    """
    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.empty(ordered.size, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(values.size, dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def read_u64_at(fd: int, indices: np.ndarray, max_gap: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Read the u64 at ``8 * i`` for every ``i`` in ``indices`` from ``fd``.

    pagemap, kpageflags, kpagecount, kpagecgroup and the page_idle bitmap all store one
    native-endian u64 per index and demand 8-byte aligned I/O. One ``preadv`` is issued per run
    of consecutive indices, straight into the result array (no per-page Python work). With
    ``max_gap > 0`` runs separated by at most that many unwanted indices are read as one span
    (worth it where a syscall costs more than the kernel's work for the extra entries).
    Entries past EOF stay 0. Returns ``(values in input order, got)`` where ``got`` tells which
    entries the kernel actually returned (False where the read came back short).
    ``OSError`` propagates to the caller, which knows which file it is.
    """
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1)
    if idx.size <= SMALL_BATCH:
        return _read_u64_small(fd, idx.tolist(), max_gap)
    unique, inverse, starts, ends = u64_runs(idx, max_gap)
    if max_gap:
        first, last = unique[starts], unique[ends - 1]
        lengths = (last - first + np.uint64(1)).astype(np.intp)
    else:
        first, lengths = unique[starts], ends - starts
    bases = np.concatenate(([0], np.cumsum(lengths)[:-1])) if lengths.size else lengths
    span = np.zeros(int(lengths.sum()), dtype=np.uint64)
    got = np.ones(span.size, dtype=bool)
    view = memoryview(span).cast("B")
    for b, n, f in zip(bases.tolist(), lengths.tolist(), first.tolist(), strict=True):
        done = pread_full(fd, view[b * 8 : (b + n) * 8], f * 8)
        if done < n * 8:
            got[b + done // 8 : b + n] = False
    if max_gap:
        run = np.repeat(np.arange(starts.size), ends - starts)
        pos = bases[run] + (unique - first[run]).astype(np.intp)
        span, got = span[pos], got[pos]
    return span[inverse], got[inverse]


#: Below this many indices the batching is done with plain Python: each numpy call has a
#: fixed cost that dominates small batches, and dominates them badly under CPU emulation
#: (tens of microseconds per call in the qemu guest).
SMALL_BATCH = 256


def runs_of(sorted_unique: list[int], max_gap: int) -> list[tuple[int, int]]:
    """(first, last) of runs in a sorted list whose neighbours differ by <= max_gap + 1."""
    out = []
    first = prev = sorted_unique[0]
    for v in sorted_unique[1:]:
        if v - prev > max_gap + 1:
            out.append((first, prev))
            first = v
        prev = v
    out.append((first, prev))
    return out


def _read_u64_small(fd: int, idx: list[int], max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    if not idx:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    values: dict[int, int] = {}
    order = sys.byteorder
    for first, last in runs_of(sorted(set(idx)), max_gap):
        data = pread_bytes(fd, (last - first + 1) * 8, first * 8)
        for k in range(len(data) // 8):
            values[first + k] = int.from_bytes(data[8 * k:8 * k + 8], order)
    out = np.fromiter((values.get(i, 0) for i in idx), dtype=np.uint64, count=len(idx))
    got = np.fromiter((i in values for i in idx), dtype=bool, count=len(idx))
    return out, got


def pread_bytes(fd: int, size: int, offset: int) -> bytes:
    """``pread`` until ``size`` bytes or EOF (sysfs binary files return one page per call)."""
    chunks = []
    done = 0
    while done < size:
        data = os.pread(fd, size - done, offset + done)
        if not data:
            break
        chunks.append(data)
        done += len(data)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def pread_full(fd: int, buf: memoryview, offset: int) -> int:
    """``preadv`` until ``buf`` is full or EOF; returns the bytes read.

    sysfs binary files (the page_idle bitmap) return at most one page per call, so a long run
    needs several calls; /proc files fill the whole buffer in one.
    """
    done = 0
    while done < len(buf):
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n <= 0:
            break
        done += n
    return done
