"""``/proc/meminfo``: system memory counters, for DAMOS watermarks and quota goals.

DAMOS's ``free_mem_rate`` watermark metric is ``NR_FREE_PAGES * 1000 / totalram_pages`` (per
thousand, integer division): exactly ``MemFree * 1000 // MemTotal`` here, as both lines are those
two counters. The file is readable by anyone and costs one small read (~20 us); the daemon may
check watermarks every ``interval_us`` without concern.
"""

from __future__ import annotations

import re

from damond.errors import DamonError
from damond.platform import os_error

MEMINFO_PATH = "/proc/meminfo"
_LINE = re.compile(rb"^([^:\s]+):\s+(\d+)( kB)?$", re.M)


def _read() -> bytes:
    try:
        with open(MEMINFO_PATH, "rb", buffering=0) as f:
            return f.read()
    except OSError as exc:
        raise os_error(exc, MEMINFO_PATH) from None


def read_meminfo() -> dict[str, int]:
    """Every counter of ``/proc/meminfo``; ``kB`` values converted to bytes, counts (such as
    ``HugePages_Total``) left as they are."""
    return {
        k.decode(): int(v) * 1024 if unit else int(v) for k, v, unit in _LINE.findall(_read())
    }


def free_mem_rate() -> int:
    """Free memory per thousand of total RAM, as the kernel's DAMOS watermarks compute it."""
    data = _read()
    total = _field(data, b"MemTotal:")
    free = _field(data, b"MemFree:")
    if total <= 0:
        raise DamonError("EINVAL", f"{MEMINFO_PATH}: MemTotal is {total}")
    return free * 1000 // total


def _field(data: bytes, key: bytes) -> int:
    at = data.find(key)
    if at < 0:
        raise DamonError("ENOENT", f"{MEMINFO_PATH}: no {key.decode()} line")
    return int(data[at + len(key) : data.index(b"k", at)])
