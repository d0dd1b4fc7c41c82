"""The ``kdamonds/N/state`` keywords of Linux 6.18 and the file updates they trigger.

``on``, ``off`` and ``commit`` start, stop and reconfigure a kdamond (see ``admin.py``). The
others copy what the running kdamond computed into files of the tree, inside the kdamond
between two samples (``damon_call()``; :meth:`Kdamond.call`), matching schemes by index:

* ``update_schemes_stats`` (5.18): ``stats/*``;
* ``update_schemes_effective_quotas`` (6.9): ``quotas/effective_bytes`` (``quota.esz``);
* ``update_tuned_intervals`` (6.15): ``intervals/sample_us`` and ``aggr_us`` get the intervals
  the kdamond runs with (which the intervals goal may have tuned).

``refresh_ms`` (6.17) makes the first three happen periodically, as the kernel's
``damon_sysfs_repeat_call_fn()`` does.

``update_schemes_tried_regions`` (6.2) and ``update_schemes_tried_bytes`` (6.6) empty every
``tried_regions/`` directory, then wait for the kdamond's next apply pass of every scheme
(``damos_walk()``) and fill them with the regions each scheme tried (or only
``total_bytes``); ``clear_schemes_tried_regions`` only empties them.
``commit_schemes_quota_goals`` (6.8) hands the goals of the files to the running schemes and
nothing else (``damos_sysfs_set_quota_scores()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from damond.core.spec import ContextSpec, QuotaSpec, SchemeSpec, clone
from damond.interfaces.scheme_stats import sysfs_stats_row

if TYPE_CHECKING:
    from damond.core.context import Context
    from damond.core.schemes import WalkControl
    from damond.interfaces.sysfs.views import SysfsKdamond

#: Every ``state`` keyword of Linux 6.18, in ``damon_sysfs_cmd_strs`` order, with the version
#: that introduced it.
STATE_KEYWORDS: dict[str, str] = {
    "on": "5.18", "off": "5.18", "commit": "5.19",
    "commit_schemes_quota_goals": "6.8", "update_schemes_stats": "5.18",
    "update_schemes_tried_bytes": "6.6", "update_schemes_tried_regions": "6.2",
    "clear_schemes_tried_regions": "6.2", "update_schemes_effective_quotas": "6.9",
    "update_tuned_intervals": "6.15",
}


def read_schemes_stats(ctx: Context) -> list[tuple[int, ...]]:
    return [sysfs_stats_row(s.stats) for s in ctx.schemes]


def read_effective_quotas(ctx: Context) -> list[int]:
    return [s.quota.esz for s in ctx.schemes]


def read_tuned_intervals(ctx: Context) -> tuple[int, int]:
    return ctx.attrs.sample_us, ctx.attrs.aggr_us


def show_schemes_stats(kd: SysfsKdamond, rows: list[tuple[int, ...]]) -> None:
    """``damon_sysfs_schemes_update_stats()``: scheme directory *i* gets running scheme *i*'s
    counters; directories without a running counterpart keep what they showed."""
    for ctx in kd.contexts[:1]:
        for i, row in enumerate(rows[:len(ctx.spec.schemes)]):
            ctx.view(i).stats = row


def show_effective_quotas(kd: SysfsKdamond, esz: list[int]) -> None:
    for ctx in kd.contexts[:1]:
        for i, value in enumerate(esz[:len(ctx.spec.schemes)]):
            ctx.view(i).effective_bytes = value


def show_tuned_intervals(kd: SysfsKdamond, intervals: tuple[int, int]) -> None:
    for ctx in kd.contexts[:1]:
        ctx.spec.attrs.sample_us, ctx.spec.attrs.aggr_us = intervals


def refresh_all(kd: SysfsKdamond, ctx: Context) -> None:
    """What one ``refresh_ms`` period updates (tuned intervals, stats, effective quotas); runs
    inside the kdamond."""
    show_tuned_intervals(kd, read_tuned_intervals(ctx))
    show_schemes_stats(kd, read_schemes_stats(ctx))
    show_effective_quotas(kd, read_effective_quotas(ctx))


def clear_tried_regions(kd: SysfsKdamond) -> None:
    """``damon_sysfs_schemes_clear_regions()``."""
    for ctx in kd.contexts[:1]:
        for view in ctx.views:
            view.clear_tried()


def show_tried_regions(kd: SysfsKdamond, control: WalkControl) -> None:
    """``damos_sysfs_populate_region_dir()`` for every region the walk collected: scheme
    directory *i* gets running scheme *i*'s regions (directories beyond them get nothing)."""
    for ctx in kd.contexts[:1]:
        for i in range(len(ctx.spec.schemes)):
            view = ctx.view(i)
            view.tried_total_bytes = control.total_bytes.get(i, 0)
            if not control.total_bytes_only:
                view.tried_regions = list(control.regions.get(i, []))


def goals_only(spec: ContextSpec) -> ContextSpec:
    """A context holding only the quota goals of ``spec``'s schemes (and its operation set,
    which checks what the goals name): what ``commit_schemes_quota_goals`` builds, so that
    nothing else of the files is validated or committed."""
    return ContextSpec(ops=spec.ops, addr_unit=spec.addr_unit, schemes=[
        SchemeSpec(quota=QuotaSpec(goals=clone(s.quota.goals))) for s in spec.schemes])
