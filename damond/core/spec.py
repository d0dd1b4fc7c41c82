"""What a user asks for: the parameters of kdamonds, contexts, targets and schemes.

These plain dataclasses hold exactly what the kernel's sysfs tree holds (with the same defaults
as a freshly created sysfs directory, v5.18/5.19), and nothing the kernel computes while running.
Every interface speaks this model: the sysfs tree and the debugfs files are views over it, damo's
kdamonds JSON/YAML converts to and from it, and the programming interface builds it. The running
core objects (``damond.core.context``) are built from a spec by ``damond.core.build`` only after
the whole spec has been validated, so a refused ``commit`` never leaves half a change behind.

Units follow the kernel: intervals in microseconds, sizes in bytes, ``nr_accesses`` in sampling
intervals per aggregation interval, ``age`` in aggregation intervals, watermarks per thousand.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

#: Actions of the v5.18 sysfs ``action`` file, in the debugfs numbering order (0..5).
ACTIONS: tuple[str, ...] = ("willneed", "cold", "pageout", "hugepage", "nohugepage", "stat")
#: Watermark metrics, in the debugfs numbering order (0, 1).
WMARK_METRICS: tuple[str, ...] = ("none", "free_mem_rate")

ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1


@dataclass
class AttrsSpec:
    """Monitoring attributes (sysfs ``monitoring_attrs/``, debugfs ``attrs``)."""

    sample_us: int = 5_000
    aggr_us: int = 100_000
    update_us: int = 60_000_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1_000


@dataclass
class AccessPatternSpec:
    """Closed ranges a region must fall in for a scheme to act (all ``0..0`` by default, as in
    sysfs: a freshly created scheme matches nothing useful, and damond keeps that on purpose)."""

    min_sz: int = 0
    max_sz: int = 0
    min_nr_accesses: int = 0
    max_nr_accesses: int = 0
    min_age: int = 0
    max_age: int = 0


@dataclass
class QuotaSpec:
    """Time/size quota per reset interval, and the prioritisation weights (permil)."""

    ms: int = 0
    sz: int = 0
    reset_interval_ms: int = 0
    weight_sz: int = 0
    weight_nr_accesses: int = 0
    weight_age: int = 0


@dataclass
class WatermarksSpec:
    metric: str = "none"
    interval_us: int = 0
    high: int = 0
    mid: int = 0
    low: int = 0


@dataclass
class SchemeSpec:
    action: str = "stat"
    pattern: AccessPatternSpec = field(default_factory=AccessPatternSpec)
    quota: QuotaSpec = field(default_factory=QuotaSpec)
    wmarks: WatermarksSpec = field(default_factory=WatermarksSpec)
    #: v6.7 ``apply_interval_us``; 0 means "the aggregation interval".
    apply_interval_us: int = 0


@dataclass
class RegionSpec:
    start: int = 0
    end: int = 0


@dataclass
class TargetSpec:
    #: ``pid_target``; ignored by operation sets without processes (paddr, sim).
    pid: int = 0
    regions: list[RegionSpec] = field(default_factory=list)
    #: Operation-set specific arguments (e.g. the ``sim`` set's workload); not a kernel field.
    ops_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContextSpec:
    ops: str = "vaddr"
    attrs: AttrsSpec = field(default_factory=AttrsSpec)
    targets: list[TargetSpec] = field(default_factory=list)
    schemes: list[SchemeSpec] = field(default_factory=list)


@dataclass
class KdamondSpec:
    contexts: list[ContextSpec] = field(default_factory=list)


def clone(spec):
    """Deep copy of any spec object (specs are mutable; running kdamonds keep their own copy)."""
    return copy.deepcopy(spec)
