"""What a user asks for: the parameters of kdamonds, contexts, targets and schemes.

These plain dataclasses hold exactly what the kernel's sysfs tree holds (with the same defaults
as a freshly created sysfs directory of Linux 6.18), and nothing the kernel computes while
running. Fields newer than v5.18 (filters, quota goals, migration targets, the intervals goal,
``addr_unit``, ``refresh_ms``) default to what an untouched 6.18 directory holds, which means
"feature off": a spec written for v5.18 builds exactly as before.
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
#: Actions of Linux 6.18's ``enum damos_action``, in its order (``lru_prio``/``lru_deprio``
#: v6.0, ``migrate_hot``/``migrate_cold`` v6.11): what the 6.18 sysfs ``action`` file takes.
ALL_ACTIONS: tuple[str, ...] = ("willneed", "cold", "pageout", "hugepage", "nohugepage",
                                "lru_prio", "lru_deprio", "migrate_hot", "migrate_cold", "stat")
#: Watermark metrics, in the debugfs numbering order (0, 1).
WMARK_METRICS: tuple[str, ...] = ("none", "free_mem_rate")

#: DAMOS filter types of Linux 6.18 (``enum damos_filter_type`` order). ``addr`` and ``target``
#: are handled by the core (``damos_filter_for_ops()`` is false), the rest by the operation set.
FILTER_TYPES: tuple[str, ...] = ("anon", "active", "memcg", "young", "hugepage_size",
                                 "unmapped", "addr", "target")
CORE_FILTER_TYPES: tuple[str, ...] = ("addr", "target")
OPS_FILTER_TYPES: tuple[str, ...] = tuple(t for t in FILTER_TYPES if t not in CORE_FILTER_TYPES)
#: Quota goal metrics the core implements (``enum damos_quota_goal_metric`` order): Linux 6.18's
#: first four, then 6.19's ``node_memcg_*`` and 7.0's ``[in]active_mem_bp``. The 6.18
#: interfaces accept only the first four (``interfaces.sysfs.schemes.GOAL_METRICS_6_18``); the
#: later ones are reachable where a later interface asks for them (the in-process api).
QUOTA_GOAL_METRICS: tuple[str, ...] = (
    "user_input", "some_mem_psi_us", "node_mem_used_bp", "node_mem_free_bp",
    "node_memcg_used_bp", "node_memcg_free_bp", "active_mem_bp", "inactive_mem_bp")
#: ``NUMA_NO_NODE``: a fresh scheme's ``target_nid``.
NUMA_NO_NODE = -1

ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1


@dataclass
class IntervalsGoalSpec:
    """v6.15 ``monitoring_attrs/intervals/intervals_goal/``: auto-tune the sampling and
    aggregation intervals so that ``access_bp`` per 10,000 of the possible access events are
    seen per ``aggrs`` aggregations. ``aggrs == 0`` (the default) disables tuning."""

    access_bp: int = 0
    aggrs: int = 0
    min_sample_us: int = 0
    max_sample_us: int = 0


@dataclass
class AttrsSpec:
    """Monitoring attributes (sysfs ``monitoring_attrs/``, debugfs ``attrs``)."""

    sample_us: int = 5_000
    aggr_us: int = 100_000
    update_us: int = 60_000_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1_000
    intervals_goal: IntervalsGoalSpec = field(default_factory=IntervalsGoalSpec)


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
class QuotaGoalSpec:
    """v6.8+ ``quotas/goals/N/``. A goal with ``target_value`` 0 is ignored, as the kernel's
    ``damos_sysfs_add_quota_score()`` skips it. ``current_value`` is the user's input for
    ``user_input`` (6.8); ``nid`` is used by the ``node_*`` metrics (6.13), ``path`` (a cgroup
    path relative to the cgroup v2 root, e.g. ``/workload``) by ``node_memcg_*`` (6.19)."""

    target_metric: str = "user_input"
    target_value: int = 0
    current_value: int = 0
    nid: int = 0
    path: str = ""


@dataclass
class QuotaSpec:
    """Time/size quota per reset interval, the prioritisation weights (permil) and the v6.8+
    quota goals that tune the effective size quota."""

    ms: int = 0
    sz: int = 0
    reset_interval_ms: int = 0
    weight_sz: int = 0
    weight_nr_accesses: int = 0
    weight_age: int = 0
    goals: list[QuotaGoalSpec] = field(default_factory=list)


@dataclass
class WatermarksSpec:
    metric: str = "none"
    interval_us: int = 0
    high: int = 0
    mid: int = 0
    low: int = 0


@dataclass
class FilterSpec:
    """One DAMOS filter (``filters/N/``, ``core_filters/N/``, ``ops_filters/N/``; v6.3+).

    ``matching``: the filter is about memory that matches (True) or does not match the type's
    condition; ``allow`` (v6.14): matching memory is allowed (True) or rejected. Only the
    argument of the filter's ``type`` is used: ``memcg_path`` (``memcg``), ``addr_start`` /
    ``addr_end`` (``addr``, ``[start, end)``), ``target_idx`` (``target``, the sysfs file
    ``damon_target_idx``), ``sz_min`` / ``sz_max`` (``hugepage_size``, closed range of the
    folio size in bytes; the sysfs files ``min`` and ``max``).
    """

    type: str = "anon"
    matching: bool = False
    allow: bool = False
    memcg_path: str = ""
    addr_start: int = 0
    addr_end: int = 0
    target_idx: int = 0
    sz_min: int = 0
    sz_max: int = 0


@dataclass
class DestSpec:
    """v6.16 ``dests/N/``: a migration destination node and its weight."""

    id: int = 0
    weight: int = 0


@dataclass
class SchemeSpec:
    action: str = "stat"
    pattern: AccessPatternSpec = field(default_factory=AccessPatternSpec)
    quota: QuotaSpec = field(default_factory=QuotaSpec)
    wmarks: WatermarksSpec = field(default_factory=WatermarksSpec)
    #: v6.7 ``apply_interval_us``; 0 means "the aggregation interval".
    apply_interval_us: int = 0
    #: The three filter directories, each in its own order. The kernel adds ``core_filters``,
    #: then ``ops_filters``, then ``filters`` (``damon_sysfs_mk_scheme()``), each filter going
    #: to the core or the ops list by its type; ``core_filters`` takes only core types and
    #: ``ops_filters`` only ops types (checked at build: EINVAL).
    filters: list[FilterSpec] = field(default_factory=list)
    core_filters: list[FilterSpec] = field(default_factory=list)
    ops_filters: list[FilterSpec] = field(default_factory=list)
    #: v6.11 ``target_nid`` of ``migrate_hot``/``migrate_cold``; NUMA_NO_NODE when unset.
    target_nid: int = NUMA_NO_NODE
    #: v6.16 ``dests/``: weighted destination nodes; when given they replace ``target_nid``.
    dests: list[DestSpec] = field(default_factory=list)


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
    #: v6.18 ``addr_unit``: the byte size of one address unit (``paddr`` only may use other
    #: than 1, to reach physical addresses beyond ``ULONG_MAX`` on 32-bit machines).
    addr_unit: int = 1
    #: damond's own: ``auto`` lets ``damond serve --offload auto`` run this context in the
    #: kernel's DAMON, ``never`` keeps it in user space (config key ``damond_offload``)
    offload: str = "auto"


@dataclass
class KdamondSpec:
    contexts: list[ContextSpec] = field(default_factory=list)
    #: v6.17 ``refresh_ms``: refresh the stats files every that many milliseconds while the
    #: kdamond runs (0: never). Interface state, not core state: the core never reads it.
    refresh_ms: int = 0


def clone(spec):
    """Deep copy of any spec object (specs are mutable; running kdamonds keep their own copy)."""
    return copy.deepcopy(spec)
