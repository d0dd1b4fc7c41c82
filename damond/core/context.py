"""Running monitoring state: contexts, targets and schemes as a kdamond holds them.

These mirror ``struct damon_ctx``, ``struct damon_target`` and ``struct damos``: the user's
parameters (copied from a spec) plus what the kernel keeps while running (regions, timers,
quota charge state, statistics). They are built from specs by ``damond.core.build``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from damond.core.regions import Regions
from damond.core.spec import AttrsSpec, FilterSpec, QuotaGoalSpec, SchemeSpec


@dataclass
class SchemeStats:
    """The five v5.17+ DAMOS counters and v6.14's ``sz_ops_filter_passed``, cumulative since
    the kdamond started (``as_tuple`` keeps the five of the v5.18 ``stats`` files)."""

    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    qt_exceeds: int = 0
    sz_ops_filter_passed: int = 0

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.nr_tried, self.sz_tried, self.nr_applied, self.sz_applied,
                self.qt_exceeds)


@dataclass
class QuotaGoal:
    """``struct damos_quota_goal``: the user's goal plus what the kernel measures.

    ``current_value`` is the user's input for ``user_input`` and the last measured value
    otherwise; ``last_psi_total`` is the PSI total (us) at the previous measurement, for
    ``some_mem_psi_us`` (which scores the PSI time that passed since)."""

    spec: QuotaGoalSpec
    current_value: int = 0
    last_psi_total: int = 0

    @property
    def metric(self) -> str:
        return self.spec.target_metric


@dataclass
class QuotaState:
    """What ``struct damos_quota`` keeps besides the user's parameters.

    ``charged_from_ms`` is the start of the current charge window on the context's clock;
    ``None`` means no window has opened yet (the kernel's ``charged_from = 0``, which makes the
    first apply pass always open one).
    """

    esz: int = 0
    charged_sz: int = 0
    charged_from_ms: int | None = None
    total_charged_sz: int = 0
    total_charged_ns: int = 0
    charge_target_from: Target | None = None
    charge_addr_from: int = 0
    min_score: int = 0
    #: v6.8+ goals (only those with a target value) and the feedback loop's input, in
    #: 1/10,000 bytes (``esz_bp``).
    goals: list[QuotaGoal] = field(default_factory=list)
    esz_bp: int = 0


@dataclass
class Scheme:
    spec: SchemeSpec
    stats: SchemeStats = field(default_factory=SchemeStats)
    quota: QuotaState = field(default_factory=QuotaState)
    #: Watermark state; ``damon_new_scheme()`` starts every scheme activated.
    wmark_activated: bool = True
    next_apply_sis: int = 0
    #: The kernel's two filter lists (``damos_add_filter()`` splits by type), built from the
    #: spec's three directories by ``damond.core.build.scheme_filters``.
    core_filters: list[FilterSpec] = field(default_factory=list)
    ops_filters: list[FilterSpec] = field(default_factory=list)
    #: ``walk_completed``: this scheme finished one apply pass for the current walk request.
    walk_completed: bool = False

    @property
    def action(self) -> str:
        return self.spec.action

    def quota_enabled(self) -> bool:
        """``damos_adjust_quota()``'s guard: a time or size quota, or any goal (6.8+)."""
        q = self.spec.quota
        return bool(q.ms or q.sz or self.quota.goals)

    @property
    def core_filters_default_reject(self) -> bool:
        """``damos_set_filters_default_reject()`` (6.15): memory no core filter matched is
        rejected when the last core filter allows, unless ops filters follow."""
        if self.ops_filters or not self.core_filters:
            return False
        return self.core_filters[-1].allow

    @property
    def ops_filters_default_reject(self) -> bool:
        return bool(self.ops_filters) and self.ops_filters[-1].allow


@dataclass(eq=False)
class Target:
    """A monitoring target. ``pid`` is None for operation sets without processes."""

    pid: int | None = None
    regions: Regions = field(default_factory=Regions)
    #: The user's initial regions, kept so that a restart can use them again (sysfs semantics).
    init_ranges: list[tuple[int, int]] = field(default_factory=list)
    ops_args: dict[str, Any] = field(default_factory=dict)
    #: Private state of the operation set (e.g. an open pidfd, a simulated address space).
    ops_data: Any = None

    @property
    def nr_regions(self) -> int:
        return len(self.regions)


def _no_clock() -> int:
    raise RuntimeError("the context has no clock: the scheduler hands one in")


@dataclass(eq=False)
class Context:
    """One monitoring context: attributes, targets, schemes and the loop's timers."""

    ops_name: str
    #: The operation set's callbacks (``struct damon_ctx``'s ``ops``), set by whoever runs the
    #: context when it starts or commits; the loop calls the operation set only through it.
    ops: Any = None
    attrs: AttrsSpec = field(default_factory=AttrsSpec)
    targets: list[Target] = field(default_factory=list)
    schemes: list[Scheme] = field(default_factory=list)
    #: DAMON_MIN_REGION: handed in by whoever builds the context (the page size for real
    #: memory); 1, no alignment, as in the kernel's unit-test vectors, unless told.
    min_region: int = 1
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    #: Monotonic nanoseconds; handed in by whoever runs the context (trio's clock in damond).
    clock_ns: Callable[[], int] = _no_clock
    #: Sample in batches through the operation set's ``sample_aggregation`` (when it has one):
    #: set by the driver that can run a batch off its event loop.
    batch_sampling: bool = False
    passed_sample_intervals: int = 0
    next_aggregation_sis: int = 0
    next_ops_update_sis: int = 0
    #: ``kdamond_split_regions()``'s static counter, kept per context (Appendix B #1).
    last_nr_regions: int = 0
    #: Private state of the operation set for the whole context.
    ops_data: Any = None
    #: ``damon_region_sz_limit()``, computed at start and after each operations update.
    sz_limit: int = 0
    #: Diagnostics: regions whose moving sum drifted and was fixed at a reset.
    nr_bp_fixes: int = 0
    #: v6.18 ``addr_unit`` (bytes per address unit; only paddr uses other than 1).
    addr_unit: int = 1
    #: ``damon_attrs.aggr_samples`` (6.15): samples per aggregation, fixed while the intervals
    #: are auto-tuned; 0 until the kdamond starts or the user sets new attributes.
    aggr_samples: int = 0
    #: ``next_intervals_tune_sis`` (6.15).
    next_intervals_tune_sis: int = 0
    #: The pending DAMOS walk request (``damos_walk()``, 6.14), or None.
    walk_control: Any = None

    def all_regions(self) -> list[Regions]:
        return [t.regions for t in self.targets]

    def nr_regions(self) -> int:
        return sum(len(t.regions) for t in self.targets)
