"""``contexts/N/schemes/``: DAMOS schemes (Linux 6.18 ``mm/damon/sysfs-schemes.c``).

One scheme directory holds ``action``, ``apply_interval_us`` (v6.7), ``target_nid`` (v6.11,
default ``NUMA_NO_NODE``), ``access_pattern/``, ``quotas/`` (with ``weights/``, ``goals/``
(v6.8) and the read-only ``effective_bytes`` (v6.9)), ``watermarks/``, the three filter
directories, ``dests/`` (v6.16), ``stats/`` and ``tried_regions/`` (v6.2). Parsing follows the
kernel file by file; note that ``quotas/{ms,bytes,reset_interval_ms}`` answer EINVAL for any
parse failure (ERANGE included), as their stores do.
"""

from __future__ import annotations

from damond.core.schemes import TriedRegion
from damond.core.spec import (
    ALL_ACTIONS,
    QUOTA_GOAL_METRICS,
    WMARK_METRICS,
    DestSpec,
    QuotaGoalSpec,
    SchemeSpec,
)
from damond.interfaces.kparse import kstrtoint, kstrtouint
from damond.interfaces.scheme_stats import SYSFS_SCHEME_STATS
from damond.interfaces.sysfs.files import (
    aliases,
    attr,
    indexed,
    keyword,
    nr_file,
    numbered_dir,
    shown,
    text,
)
from damond.interfaces.sysfs.filters import FILTER_DIRS, filters_dir
from damond.interfaces.sysfs.views import SchemeView, SysfsContext
from damond.interfaces.vfs import Dir, File

#: The ``target_metric`` keywords of Linux 6.18 (``damos_sysfs_qgoal_metric_names``, unchanged
#: since 6.16's ``node_mem_*``): ``node_memcg_used_bp``/``node_memcg_free_bp`` (and the goal's
#: ``path`` file) came in 6.19 (the series posted in Oct 2025 after 6.18-rc1; its "implement
#: path file under quota goal directory" is fixed "Cc: stable # 6.19.x"), ``active_mem_bp`` and
#: ``inactive_mem_bp`` in 2026 (7.0). A 6.18 tree refuses them with EINVAL like any unknown
#: keyword (``target_metric_store()``).
GOAL_METRICS_6_18: tuple[str, ...] = (
    "user_input", "some_mem_psi_us", "node_mem_used_bp", "node_mem_free_bp")
assert set(GOAL_METRICS_6_18) <= set(QUOTA_GOAL_METRICS)


def schemes_dir(c: SysfsContext) -> Dir:
    spec = c.spec

    def reset_views(nr: int) -> None:
        c.views[:] = [SchemeView() for _ in range(nr)]

    nr = nr_file(spec.schemes, SchemeSpec, after=reset_views)
    return Dir(indexed("nr_schemes", nr, lambda: len(spec.schemes),
                       lambda i: _scheme_dir(spec.schemes[i], c.view(i))),
               aliases("nr_schemes"))


def _scheme_dir(s: SchemeSpec, view: SchemeView) -> Dir:
    entries = {
        "action": lambda: keyword(s, "action", lambda: ALL_ACTIONS, "DAMOS actions"),
        "apply_interval_us": lambda: attr(s, "apply_interval_us"),
        "target_nid": lambda: attr(s, "target_nid", kstrtoint),
        "access_pattern": lambda: _access_pattern_dir(s),
        "quotas": lambda: _quotas_dir(s, view),
        "watermarks": lambda: _watermarks_dir(s),
        "dests": lambda: numbered_dir("nr_dests", s.dests, DestSpec, _dest_dir),
        "stats": lambda: _stats_dir(view),
        "tried_regions": lambda: _tried_regions_dir(view),
    }
    for name in FILTER_DIRS:
        entries[name] = lambda name=name: filters_dir(name, getattr(s, name))
    return Dir(lambda: {name: make() for name, make in entries.items()},
               aliases(None, {"access_patterns": "access_pattern"}))


def _access_pattern_dir(s: SchemeSpec) -> Dir:
    p = s.pattern

    def minmax(lo: str, hi: str) -> Dir:
        return Dir(lambda: {"min": attr(p, lo), "max": attr(p, hi)})

    return Dir(lambda: {"sz": minmax("min_sz", "max_sz"),
                        "nr_accesses": minmax("min_nr_accesses", "max_nr_accesses"),
                        "age": minmax("min_age", "max_age")})


def _quotas_dir(s: SchemeSpec, view: SchemeView) -> Dir:
    q = s.quota
    weights = Dir(lambda: {"sz_permil": attr(q, "weight_sz", kstrtouint),
                           "nr_accesses_permil": attr(q, "weight_nr_accesses", kstrtouint),
                           "age_permil": attr(q, "weight_age", kstrtouint)})
    goals = numbered_dir("nr_goals", q.goals, QuotaGoalSpec, _goal_dir)
    return Dir(lambda: {"ms": attr(q, "ms", errno="EINVAL"),
                        "bytes": attr(q, "sz", errno="EINVAL"),
                        "reset_interval_ms": attr(q, "reset_interval_ms", errno="EINVAL"),
                        "effective_bytes": shown(lambda: view.effective_bytes),
                        "weights": weights, "goals": goals})


def _goal_dir(g: QuotaGoalSpec) -> Dir:
    return Dir(lambda: {
        "target_metric": keyword(g, "target_metric", lambda: GOAL_METRICS_6_18,
                                 "quota goal metrics"),
        "target_value": attr(g, "target_value"),
        "current_value": attr(g, "current_value"),
        "nid": attr(g, "nid", kstrtoint),
        "path": text(g, "path"),
    })


def _watermarks_dir(s: SchemeSpec) -> Dir:
    w = s.wmarks
    return Dir(lambda: {
        "metric": keyword(w, "metric", lambda: WMARK_METRICS, "watermark metrics"),
        "interval_us": attr(w, "interval_us"), "high": attr(w, "high"),
        "mid": attr(w, "mid"), "low": attr(w, "low")})


def _dest_dir(d: DestSpec) -> Dir:
    return Dir(lambda: {"id": attr(d, "id", kstrtouint), "weight": attr(d, "weight", kstrtouint)})


def _stats_dir(view: SchemeView) -> Dir:
    def stat_file(i: int) -> File:
        return shown(lambda: view.stats[i])

    return Dir(lambda: {name: stat_file(i) for i, name in enumerate(SYSFS_SCHEME_STATS)})


def _tried_regions_dir(view: SchemeView) -> Dir:
    """No ``nr_*`` file: the directories appear on ``update_schemes_tried_regions`` and vanish
    on ``clear_schemes_tried_regions`` (or the next update)."""

    def region_dir(r: TriedRegion) -> Dir:
        return Dir(lambda: {name: shown(lambda name=name: getattr(r, name)) for name in
                            ("start", "end", "nr_accesses", "age", "sz_filter_passed")})

    return Dir(indexed(None, None, lambda: len(view.tried_regions),
                       lambda i: region_dir(view.tried_regions[i]),
                       extra=lambda: {"total_bytes": shown(lambda: view.tried_total_bytes)}))
