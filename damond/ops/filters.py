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
MOUNTINFO = "/proc/self/mountinfo"


def memcg_root(mountinfo: str = MOUNTINFO) -> str:
    """Where the memory controller's hierarchy is mounted: a cgroup2 mount that offers
    ``memory``, else a cgroup v1 mount with the ``memory`` option (``/proc/kpagecgroup``
    reports the inode of a directory of that hierarchy); ``CGROUP2_ROOT`` when neither is
    found. A memcg filter's ``memcg_path`` is relative to it, as the kernel's
    ``cgroup_path()`` of the memcg is."""
    v2 = []
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype, _, superopts = (right.split() + ["", "", ""])[:3]
                point = left.split()[4]
                if fstype == "cgroup" and "memory" in superopts.split(","):
                    return point
                if fstype == "cgroup2":
                    v2.append(point)
    except OSError:
        return CGROUP2_ROOT
    for point in v2:
        try:
            with open(os.path.join(point, "cgroup.controllers")) as f:
                if "memory" in f.read().split():
                    return point
        except OSError:
            continue
    return CGROUP2_ROOT


def memcg_inode(memcg_path: str, root: str | None = None) -> int:
    """The inode of a memory cgroup directory (what ``/proc/kpagecgroup`` reports for its
    pages); EINVAL when there is no such cgroup, as ``damon_sysfs_memcg_path_to_id()``
    answers."""
    root = root or memcg_root()
    try:
        return os.stat(os.path.join(root, memcg_path.lstrip("/"))).st_ino
    except OSError:
        raise DamonError("EINVAL", f"memcg_path {memcg_path!r}: no such cgroup under "
                         f"{root}") from None
