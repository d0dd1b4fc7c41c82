"""What the sysfs tree holds besides the specs: the files the kernel fills from a running
kdamond (stats, ``effective_bytes``, ``tried_regions``) and the kdamond directories' state.

These files change only when the user asks (a ``state`` keyword, or ``refresh_ms``), never on
their own: a directory keeps showing what the last update put there, even after the kdamond
stopped. They are matched with the running schemes **by index**, as the kernel's
``damon_sysfs_schemes_update_stats()`` and its siblings do ("user could have removed the
scheme sysfs dir"): a scheme directory beyond the running schemes is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from damond.core.schemes import TriedRegion
from damond.core.spec import ContextSpec, KdamondSpec, clone
from damond.interfaces.scheme_stats import ZERO_SYSFS_STATS, StatsRow

if TYPE_CHECKING:
    from damond.scheduler import Kdamond


@dataclass
class SchemeView:
    """The kernel-filled files of one scheme directory; a ``tried_regions/N/`` directory shows
    one :class:`~damond.core.schemes.TriedRegion` (``struct damon_sysfs_scheme_region``)."""

    stats: StatsRow = ZERO_SYSFS_STATS
    effective_bytes: int = 0
    tried_regions: list[TriedRegion] = field(default_factory=list)
    tried_total_bytes: int = 0

    def clear_tried(self) -> None:
        """``damon_sysfs_schemes_clear_regions()``: no region directories, total 0."""
        self.tried_regions.clear()
        self.tried_total_bytes = 0


@dataclass
class SysfsContext:
    spec: ContextSpec = field(default_factory=ContextSpec)
    views: list[SchemeView] = field(default_factory=list)

    @classmethod
    def holding(cls, spec: ContextSpec, shown: list[SchemeView] | None = None) -> SysfsContext:
        """A context directory holding a copy of ``spec``; its scheme directories keep what
        ``shown`` showed, matched by index (fresh ones for the others)."""
        shown = shown or []
        views = [shown[i] if i < len(shown) else SchemeView() for i in range(len(spec.schemes))]
        return cls(clone(spec), views)

    def view(self, index: int) -> SchemeView:
        """The view of scheme directory ``index`` (created if a write outran the views)."""
        while len(self.views) <= index:
            self.views.append(SchemeView())
        return self.views[index]


@dataclass
class SysfsKdamond:
    contexts: list[SysfsContext] = field(default_factory=list)
    kdamond: Kdamond | None = None
    #: set once ``on`` built and started a context (``off`` then answers EPERM, not EINVAL)
    ever_started: bool = False
    #: v6.17 ``refresh_ms``: while running, refresh stats, effective quotas and tuned
    #: intervals every that many milliseconds (0: never)
    refresh_ms: int = 0
    #: set when ``refresh_ms`` is written, so that a waiting refresher re-reads it
    refresh_changed: trio.Event = field(default_factory=trio.Event)

    @property
    def running(self) -> bool:
        return self.kdamond is not None and self.kdamond.running

    def to_spec(self) -> KdamondSpec:
        return KdamondSpec(contexts=[clone(c.spec) for c in self.contexts],
                           refresh_ms=self.refresh_ms)

    def set_refresh_ms(self, value: int) -> None:
        self.refresh_ms = value
        self.refresh_changed.set()
        self.refresh_changed = trio.Event()
