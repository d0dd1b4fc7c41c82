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
from damond.core.spec import AttrsSpec, SchemeSpec


@dataclass
class SchemeStats:
    """The five v5.17+ DAMOS counters, cumulative since the kdamond started."""

    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    qt_exceeds: int = 0

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.nr_tried, self.sz_tried, self.nr_applied, self.sz_applied,
                self.qt_exceeds)


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


@dataclass
class Scheme:
    spec: SchemeSpec
    stats: SchemeStats = field(default_factory=SchemeStats)
    quota: QuotaState = field(default_factory=QuotaState)
    #: Watermark state; ``damon_new_scheme()`` starts every scheme activated.
    wmark_activated: bool = True
    next_apply_sis: int = 0

    @property
    def action(self) -> str:
        return self.spec.action

    def quota_enabled(self) -> bool:
        q = self.spec.quota
        return bool(q.ms or q.sz)


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

    def all_regions(self) -> list[Regions]:
        return [t.regions for t in self.targets]

    def nr_regions(self) -> int:
        return sum(len(t.regions) for t in self.targets)
