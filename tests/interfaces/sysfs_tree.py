"""The reference list of the Linux 6.18 sysfs tree and helpers to compare a tree with it."""

from __future__ import annotations

import re
from pathlib import Path

REFERENCE = Path("/work/shared/reference/sysfs-tree-6.18.txt")
_INDEX = re.compile(r"(?<=/)\d+(?=/|$)|^\d+(?=/|$)")

#: Files that only read (``__ATTR_RO_MODE(..., 0400)`` in 6.18); every other file is 0600.
READ_ONLY_6_18 = {
    "kdamonds/N/pid", "kdamonds/N/contexts/N/avail_operations",
    "kdamonds/N/contexts/N/schemes/N/quotas/effective_bytes",
    "kdamonds/N/contexts/N/schemes/N/tried_regions/total_bytes",
    *(f"kdamonds/N/contexts/N/schemes/N/stats/{f}" for f in (
        "nr_tried", "sz_tried", "nr_applied", "sz_applied", "sz_ops_filter_passed",
        "qt_exceeds")),
    *(f"kdamonds/N/contexts/N/schemes/N/tried_regions/N/{f}" for f in (
        "start", "end", "nr_accesses", "age", "sz_filter_passed")),
}


def reference_entries() -> list[str]:
    """Every entry of ``sysfs-tree-6.18.txt`` (directories and files), sorted."""
    lines = REFERENCE.read_text().splitlines()
    return sorted(line for line in lines if line and not line.startswith("#"))


def normalise(path: str) -> str:
    """A path relative to the admin directory with every numbered component written N."""
    return _INDEX.sub("N", path)


#: The writes that populate one of everything (one kdamond, context, target, region, scheme,
#: filter in each filter directory, goal, dest), relative to the admin directory.
POPULATE = [
    "echo 1 > kdamonds/nr_kdamonds",
    "echo 1 > kdamonds/0/contexts/nr_contexts",
    "echo 1 > kdamonds/0/contexts/0/targets/nr_targets",
    "echo 1 > kdamonds/0/contexts/0/targets/0/regions/nr_regions",
    "echo 1 > kdamonds/0/contexts/0/schemes/nr_schemes",
    "echo 1 > kdamonds/0/contexts/0/schemes/0/filters/nr_filters",
    "echo 1 > kdamonds/0/contexts/0/schemes/0/core_filters/nr_filters",
    "echo 1 > kdamonds/0/contexts/0/schemes/0/ops_filters/nr_filters",
    "echo 1 > kdamonds/0/contexts/0/schemes/0/quotas/goals/nr_goals",
    "echo 1 > kdamonds/0/contexts/0/schemes/0/dests/nr_dests",
]
