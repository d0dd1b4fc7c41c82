"""DAMOS ops filters per page, from what user space sees of each page (Linux 6.18).

``damos_pa_filter_out()``/``damos_va_filter_out()`` ask, folio by folio: the first ops filter
that matches decides (rejected unless it allows); a folio no filter matched follows the
default (rejected when the last ops filter allows); and none of it applies when a core filter
already allowed the region (``core_filters_allowed``). ``damos_folio_filter_match()`` per type:

- ``anon``: ``folio_test_anon()``  -> ``KPF_ANON`` of ``/proc/kpageflags``
- ``active``: ``folio_test_active()`` -> ``KPF_ACTIVE``
- ``memcg``: the folio's memcg -> ``/proc/kpagecgroup`` (inode of the cgroup directory)
- ``hugepage_size``: ``folio_size()`` in ``[min, max]`` -> the folio size the caller derives
  from the compound flags
- ``unmapped``: ``!folio_mapped()`` -> ``KPF_MMAP`` clear

``young`` needs the accessed bit *and* clearing it (``damon_folio_mkold()``), which from user
space means the idle page bitmap the access checks already use: not supported, and refused at
``on``/``commit`` by the sets that call this (``UNSUPPORTED``).
"""

from __future__ import annotations

import os

import numpy as np

from damond.core.spec import FilterSpec
from damond.errors import DamonError
from damond.platform.kpageflags import KPF_ACTIVE, KPF_ANON, KPF_MMAP, has

#: Ops filter types this evaluator cannot decide, with the reason.
UNSUPPORTED: dict[str, str] = {
    "young": "a young filter must read and clear each page's accessed bit, which user space "
             "can only do through the idle page bitmap the access checks already use",
}


def _matches(f: FilterSpec, flags: np.ndarray, folio_sizes: np.ndarray,
             cgroups: np.ndarray | None, memcg_inodes: dict[str, int]) -> np.ndarray:
    if f.type == "anon":
        m = has(flags, KPF_ANON)
    elif f.type == "active":
        m = has(flags, KPF_ACTIVE)
    elif f.type == "unmapped":
        m = ~has(flags, KPF_MMAP)
    elif f.type == "hugepage_size":
        m = (folio_sizes >= f.sz_min) & (folio_sizes <= f.sz_max)
    elif f.type == "memcg":
        ino = memcg_inodes.get(f.memcg_path)
        m = (np.zeros(len(flags), dtype=bool) if cgroups is None or ino is None
             else cgroups == np.uint64(ino))
    else:
        raise ValueError(f"not an evaluable ops filter type: {f.type!r}")
    return m == f.matching


def pages_passing(filters: list[FilterSpec], *, core_allowed: bool, flags: np.ndarray,
                  folio_sizes: np.ndarray, cgroups: np.ndarray | None = None,
                  memcg_inodes: dict[str, int] | None = None) -> np.ndarray:
    """Boolean per page: whether the page passes ``filters`` (the kernel's rule above)."""
    n = len(flags)
    if core_allowed or not filters:
        return np.ones(n, dtype=bool)
    decided = np.zeros(n, dtype=bool)
    passed = np.zeros(n, dtype=bool)
    for f in filters:
        m = _matches(f, flags, folio_sizes, cgroups, memcg_inodes or {}) & ~decided
        passed |= m & f.allow
        decided |= m
    passed |= ~decided & (not filters[-1].allow)
    return passed


CGROUP2_ROOT = "/sys/fs/cgroup"


def memcg_inode(memcg_path: str, root: str = CGROUP2_ROOT) -> int:
    """The inode of a cgroup v2 directory (what ``/proc/kpagecgroup`` reports for its pages);
    EINVAL when there is no such cgroup, as ``damon_sysfs_memcg_path_to_id()`` answers."""
    try:
        return os.stat(os.path.join(root, memcg_path.lstrip("/"))).st_ino
    except OSError:
        raise DamonError("EINVAL", f"memcg_path {memcg_path!r}: no such cgroup under "
                         f"{root}") from None
