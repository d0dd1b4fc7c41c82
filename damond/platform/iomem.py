"""``/proc/iomem``: where the physical RAM is, for physical-address (paddr) monitoring.

The kernel's paddr users (DAMON_RECLAIM, DAMON_LRU_SORT, damo) default to the biggest "System
RAM" resource. ``/proc/iomem`` shows real addresses only to readers that had CAP_SYS_ADMIN when
they opened it; everyone else sees every address as 0, which is detected here and reported as
EPERM rather than silently returning empty ranges.

"System RAM" resources may be nested below other resources (e.g. under "Reserved" on some
firmware) and memory added by dax/kmem is named "System RAM (kmem)"; the kernel's walk over
IORESOURCE_SYSTEM_RAM sees both, and so does this module.
"""

from __future__ import annotations

from damond.errors import DamonError
from damond.platform import os_error

IOMEM_PATH = "/proc/iomem"


def _system_ram_resources() -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` of every System RAM resource, in file order."""
    try:
        with open(IOMEM_PATH, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise os_error(exc, IOMEM_PATH) from None
    out = []
    for line in lines:
        span, sep, name = line.strip().partition(" : ")
        if not sep or not (name == "System RAM" or name.startswith("System RAM (")):
            continue
        start, _, end = span.partition("-")
        out.append((int(start, 16), int(end, 16)))
    if out and all(s == 0 and e == 0 for s, e in out):
        raise DamonError(
            "EPERM", f"{IOMEM_PATH} shows zeroed addresses: reading it needs CAP_SYS_ADMIN",
            IOMEM_PATH)
    return out


def system_ram_ranges() -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` physical address ranges of all System RAM resources."""
    return [(s, e + 1) for s, e in _system_ram_resources()]


def biggest_system_ram() -> tuple[int, int]:
    """The range the kernel's DAMON picks by default for paddr, quirk included.

    mm/damon/core.c ``damon_find_biggest_system_ram()`` stores ``res->end`` (inclusive) as the
    region's exclusive end, so the last byte is left out: this returns ``(start, end_inclusive)``.
    Its comparison (``end - start < resource_size``) also lets a later resource of equal size
    replace an earlier one, reproduced here. (Upstream later fixed the end in "mm/damon/core: fix
    wrong end address assignment on walk_system_ram()"; kernels before it behave as here.) The
    kernel's walk also visits "Kernel code/data/bss" children, which are never bigger than their
    parent and so never change the answer. Raises ENOENT when there is no System RAM line.
    """
    best = (0, 0)
    for start, end in _system_ram_resources():
        if best[1] - best[0] < end - start + 1:
            best = (start, end)
    if best == (0, 0):
        raise DamonError("ENOENT", f"{IOMEM_PATH} lists no System RAM", IOMEM_PATH)
    return best
