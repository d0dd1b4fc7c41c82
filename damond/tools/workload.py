"""Artificial workloads with known access patterns, for tests, benchmarks and demos.

``python -m damond.tools.workload MODE ...`` maps memory, prints one JSON line describing where
it is
(``{"pid": ..., "ranges": {"hot": [start, end], ...}}``) and then accesses it until killed:

``hotcold``   a hot mapping touched continuously and a cold mapping touched once, as two
              separate mappings (so even the per-mapping ``smaps`` access check tells them apart)
``onemap``    one mapping whose first part is hot and the rest cold (``MADV_NOHUGEPAGE``, so
              page-granular checks see the boundary)
``alternate`` N buffers of SIZE bytes, each accessed for MS milliseconds in turn, repeating
              (the shape of the kernel's DAMON working-set-size selftest)
``reader`` / ``writer``  one mapping only read (or only written) continuously

Accesses touch every page of the hot part in each pass (one byte per 4 KiB page for reads, a
memcpy for writes), as fast as the CPU allows.

Every mode fills its memory on one CPU and then drains that CPU's LRU-add batch (see
``_pinned_fill``) before it announces itself: otherwise the last pages it faulted in (up to 31
folios on Linux 6.12) stay off the LRU lists for as long as nothing else faults on that CPU, and
``page_idle`` can neither mark nor read such a page, so it reads "accessed" forever.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import mmap
import os
import sys
import time
from functools import partial

PAGE = mmap.PAGESIZE
MADV_NOHUGEPAGE = 15
PROT_NONE = 0  # not exported by Python's mmap module


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _map(size: int, nohuge: bool = False) -> tuple[mmap.mmap, int]:
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if nohuge and hasattr(m, "madvise"):
        m.madvise(MADV_NOHUGEPAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    return m, addr


def _mprotect_none(addr: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mprotect(ctypes.c_void_p(addr), ctypes.c_size_t(length), PROT_NONE) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")


def _write_all(m: mmap.mmap, start: int, end: int, value: int) -> None:
    chunk = bytes([value & 0xFF]) * min(end - start, 1 << 20)
    for off in range(start, end, len(chunk)):
        n = min(len(chunk), end - off)
        m[off:off + n] = chunk[:n]


def _read_all(m: mmap.mmap, start: int, end: int) -> int:
    view = memoryview(m)
    return sum(view[start:end:PAGE])


@contextlib.contextmanager
def _pinned_fill():
    """Fault the memory in on one CPU, then drain that CPU's per-CPU LRU-add batch.

    A page enters the LRU lists through a per-CPU batch that drains only when it fills or when
    the kernel calls lru_add_drain() on that CPU; a workload that faults its memory in once and
    then only touches it leaves the last pages in the batch indefinitely. page_idle skips pages
    that are not on an LRU list (its bitmap reads 0 for them: "accessed"; the kernel's own paddr
    operations call them "not accessed"). Unmapping a page runs lru_add_drain() on the calling
    CPU, hence the pinning: the drain must run where the faults did."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
        scratch = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        scratch[0] = 1
        scratch.close()  # munmap: lru_add_drain() on this CPU
    finally:
        os.sched_setaffinity(0, allowed)


def _announce(ranges: dict[str, tuple[int, int]], style: str = "json") -> None:
    """Say where the memory is: one JSON line for programs (tests, benchmarks), or a line
    for a person (``--describe text``, what the demo shows)."""
    if style == "json":
        print(json.dumps({"pid": os.getpid(), "ranges": ranges}), flush=True)
        return
    parts = [f"{name} [{start:#x}, {end:#x}) ({(end - start) / (1 << 20):g} MiB)"
             for name, (start, end) in ranges.items()]
    print(f"workload pid {os.getpid()}: {'; '.join(parts)}", flush=True)


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m damond.tools.workload", description=__doc__)
    ap.add_argument("mode", choices=["hotcold", "onemap", "alternate", "reader", "writer"])
    ap.add_argument("--hot", default="16M")
    ap.add_argument("--cold", default="64M")
    ap.add_argument("--nr", type=int, default=2)
    ap.add_argument("--size", default="10M")
    ap.add_argument("--ms", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--describe", choices=["json", "text"], default="json",
                    help="how to say where the memory is: one JSON line (default) or text")
    args = ap.parse_args(argv)
    announce = partial(_announce, style=args.describe)
    hot, cold = parse_size(args.hot), parse_size(args.cold)
    deadline = time.monotonic() + args.seconds
    if args.mode == "hotcold":
        # one mapping cut in two by an inaccessible page: the kernel would merge two adjacent
        # anonymous mappings with the same flags into one, and mmap places them adjacently
        m, a = _map(hot + PAGE + cold)
        _mprotect_none(a + hot, PAGE)
        ha, ca = a, a + hot + PAGE
        with _pinned_fill():
            _write_all(m, hot + PAGE, hot + PAGE + cold, 1)
            _write_all(m, 0, hot, 1)
        announce({"hot": (ha, ha + hot), "cold": (ca, ca + cold)})
        value = 2
        while time.monotonic() < deadline:
            _write_all(m, 0, hot, value)
            value += 1
    elif args.mode == "onemap":
        m, a = _map(hot + cold, nohuge=True)
        with _pinned_fill():
            _write_all(m, 0, hot + cold, 1)
        announce({"hot": (a, a + hot), "cold": (a + hot, a + hot + cold)})
        value = 2
        while time.monotonic() < deadline:
            _write_all(m, 0, hot, value)
            value += 1
    elif args.mode == "alternate":
        size = parse_size(args.size)
        bufs = [_map(size, nohuge=True) for _ in range(args.nr)]
        with _pinned_fill():
            for m, _ in bufs:
                _write_all(m, 0, size, 1)
        announce({f"buf{i}": (a, a + size) for i, (_, a) in enumerate(bufs)})
        value = 2
        while time.monotonic() < deadline:
            for m, _ in bufs:
                until = time.monotonic() + args.ms / 1000
                while time.monotonic() < until:
                    _write_all(m, 0, size, value)
                    value += 1
    else:
        m, a = _map(hot, nohuge=True)
        with _pinned_fill():
            _write_all(m, 0, hot, 1)
        announce({"hot": (a, a + hot)})
        value = 2
        while time.monotonic() < deadline:
            if args.mode == "reader":
                _read_all(m, 0, hot)
            else:
                _write_all(m, 0, hot, value)
                value += 1


if __name__ == "__main__":
    try:
        run()
    except KeyboardInterrupt:
        sys.exit(0)
