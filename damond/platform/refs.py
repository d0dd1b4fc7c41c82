"""``/proc/PID/clear_refs`` and ``/proc/PID/smaps``: the access check that works on any kernel.

This is wss.pl's method: write ``1`` to ``clear_refs`` (clears PG_referenced and the PTE Accessed
bits of every page), wait, then sum ``Referenced:`` in ``smaps``. It needs no kernel option and
no PFNs, but it has costs worth stating wherever it is used:

* it **perturbs reclaim**: clearing Accessed/referenced bits hides recent use from the LRU, so the
  kernel may evict hot pages (idle page tracking exists because of this);
* it is per VMA at best (``smaps``) or per process (``smaps_rollup``, 4.14+), never per page;
* the kernel walks every page table of the process for each write and each read: for large
  processes that is tens of milliseconds and slightly higher latency for the target;
* clearing does not flush the TLB on x86, so an access through a translation still cached
  there is not seen until the entry is evicted (see :mod:`damond.platform.page_idle`).

``clear_refs`` is writable only by the process's owner (mode 0200, plus ptrace checks);
``smaps`` needs PTRACE_MODE_READ. Values in ``smaps`` are kB; everything returned here is bytes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from damond.errors import DamonError
from damond.platform import os_error

CLEAR_REFS_ALL = 1
CLEAR_REFS_ANON = 2
CLEAR_REFS_MAPPED = 3
CLEAR_REFS_SOFT_DIRTY = 4
CLEAR_REFS_MM_HIWATER_RSS = 5

_SINCE = {1: "2.6.22", 2: "2.6.22", 3: "2.6.32", 4: "3.11", 5: "4.0"}


def clear_refs(pid: int | str, what: int) -> None:
    """Write ``what`` to ``/proc/PID/clear_refs``.

    1 clears referenced/accessed bits of all pages, 2 of anonymous pages, 3 of file-mapped pages,
    4 clears soft-dirty bits (write-protects every PTE, so the next write to each page faults;
    accepted but a no-op on kernels without CONFIG_MEM_SOFT_DIRTY), 5 resets the peak RSS
    (VmHWM). Raises EINVAL for other values, ESRCH if the process is gone, EPERM if not owner.
    """
    if what not in _SINCE:
        raise DamonError("EINVAL", f"clear_refs value {what!r} is not one of 1-5")
    path = f"/proc/{pid}/clear_refs"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise os_error(exc, path, gone=True) from None
    try:
        os.write(fd, b"%d" % what)
    except OSError as exc:
        err = os_error(exc, path, gone=True)
        if err.errno_name == "EINVAL":
            raise DamonError("EINVAL", f"{path}: kernel rejects {what} (needs {_SINCE[what]}+)",
                             path) from None
        raise err from None
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class SmapsEntry:
    """The fields of one ``smaps`` VMA block that damond uses, in bytes."""

    start: int
    end: int
    size: int
    rss: int
    referenced: int
    anonymous: int
    swap: int
    anon_huge_pages: int
    path: str


_HEADER = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+ *(.*)$", re.M)
_FIELD = re.compile(rb"^(Size|Rss|Referenced|Anonymous|AnonHugePages|Swap):\s+(\d+) kB$", re.M)
_ROLLUP_FIELD = re.compile(rb"^(\w+):\s+(\d+) kB$", re.M)


def _read_proc(pid: int | str, name: str) -> bytes:
    path = f"/proc/{pid}/{name}"
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read()
    except OSError as exc:
        raise os_error(exc, path, gone=True) from None


def read_smaps(pid: int | str = "self") -> list[SmapsEntry]:
    """Per-VMA sizes from ``/proc/PID/smaps`` (empty for a zombie).

    The file is read once and parsed as a table (see :func:`parse_smaps`).
    """
    return parse_smaps(_read_proc(pid, "smaps"))


def parse_smaps(data: bytes) -> list[SmapsEntry]:
    """Parse the bytes of an ``smaps`` file (see :func:`read_smaps`).

    A kernel prints the same lines, in the same order, for every VMA, so the file is a table
    with a fixed number of lines per VMA: the kept fields are taken as strided slices of the
    line list, which costs a fraction of a per-line loop or a multi-line regex (8000 VMAs parse
    in ~30 ms instead of ~130 ms). Files that do not have that shape use a slower parser.
    """
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        return []
    stride = _stride(lines)
    columns = _columns(lines, stride) if stride else None
    if columns is None:
        return _parse_smaps_slow(data)
    entries = []
    for head, size, rss, ref, anon, swap, ahp in zip(lines[::stride], *columns, strict=True):
        fields = head.split(None, 5)
        start, _, end = fields[0].partition(b"-")
        path = fields[5].decode("utf-8", "surrogateescape") if len(fields) > 5 else ""
        entries.append(SmapsEntry(int(start, 16), int(end, 16), size, rss, ref, anon, swap, ahp,
                                  path))
    return entries


_HEX_START = frozenset(b"0123456789abcdef")
_KEPT = (b"Size:", b"Rss:", b"Referenced:", b"Anonymous:", b"Swap:", b"AnonHugePages:")


def _stride(lines: list[bytes]) -> int | None:
    """Lines per VMA block, if every block has the same number; else None."""
    if not lines[0] or lines[0][0] not in _HEX_START:
        return None
    stride = next((i for i in range(1, len(lines)) if lines[i] and lines[i][0] in _HEX_START),
                  len(lines))
    if len(lines) % stride or not all(h and h[0] in _HEX_START for h in lines[::stride]):
        return None
    return stride


def _columns(lines: list[bytes], stride: int) -> list[list[int]] | None:
    """For each kept field, its value in bytes for every block; None if the layout differs.

    Every block starts with a header (checked by :func:`_stride`) and has the same length, so
    the kernel printed the same keys in each: checking the first and last block is enough; a
    stray line elsewhere would make ``int()`` fail and send the file to the slow parser.
    """
    columns = []
    last = len(lines) - stride
    try:
        for key in _KEPT:
            offset = next((i for i in range(1, stride) if lines[i].startswith(key)), None)
            if offset is None or not lines[last + offset].startswith(key):
                return None
            n = len(key)
            columns.append([int(line[n:-3]) << 10 for line in lines[offset::stride]])
    except ValueError:
        return None
    return columns


def _parse_smaps_slow(data: bytes) -> list[SmapsEntry]:
    """Fallback when a kernel prints the fields in another order or omits one."""
    out: list[SmapsEntry] = []
    blocks = _HEADER.split(data)
    # split() yields [prefix, start, end, path, body, start, end, path, body, ...]
    for i in range(1, len(blocks) - 3, 4):
        s, e, p, body = blocks[i : i + 4]
        kv = {k: int(v) * 1024 for k, v in _FIELD.findall(body)}
        out.append(SmapsEntry(int(s, 16), int(e, 16), kv.get(b"Size", int(e, 16) - int(s, 16)),
                              kv.get(b"Rss", 0), kv.get(b"Referenced", 0),
                              kv.get(b"Anonymous", 0), kv.get(b"Swap", 0),
                              kv.get(b"AnonHugePages", 0), p.decode("utf-8", "surrogateescape")))
    return out


def read_smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """Every ``kB`` field of ``/proc/PID/smaps_rollup`` (4.14+) in bytes, e.g. ``Rss``,
    ``Referenced``, ``Anonymous``, ``Swap``; one page-table walk for the whole process.
    Empty for a zombie. Raises ENOENT on kernels before 4.14."""
    path = f"/proc/{pid}/smaps_rollup"
    try:
        with open(path, "rb", buffering=0) as f:
            data = f.read()
    except FileNotFoundError:
        if os.path.exists(f"/proc/{pid}"):
            raise DamonError("ENOENT", f"{path} absent: kernel older than 4.14", path) from None
        raise DamonError("ESRCH", f"{path}: process does not exist (any more)", path) from None
    except OSError as exc:
        raise os_error(exc, path, gone=True) from None
    return {k.decode(): int(v) * 1024 for k, v in _ROLLUP_FIELD.findall(data)}
