"""The parts of damo's kdamonds JSON/YAML for DAMON features after v5.19 (Linux 6.3 .. 6.18):
DAMOS filters, quota goals, migration destinations (``dests``, ``target_nid``) and the
monitoring intervals goal, read into and printed from damond's spec model.

Reading follows damo 3.4.3 (``_damon.py``: ``DamosFilter``, ``DamosQuotaGoal``, ``DamosDest``,
``DamonIntervalsGoal``) and what ``_damon_sysfs.py`` then writes to a 6.18 kernel:

* filters go to ``core_filters/`` (``addr``, ``target``) or ``ops_filters/`` (the others), in
  their order within each (``write_core_ops_filters_dirs``); ``allow`` defaults to false, a
  ``memcg_path`` counts only for ``memcg`` filters, an ``address_range`` only for ``addr``, a
  ``damon_target_idx`` only for ``target``; ``hugepage_size`` is ``[min, max]`` in bytes;
* a goal's ``target_value`` is read per metric (``some_mem_psi_us``: a time in us; the
  ``*_bp`` metrics: a ratio in bp; others: a number); ``nid`` is written only for the
  ``node_*`` metrics and ``memcg_path`` (the ``path`` file) only for ``node_memcg_*``;
* ``target_nid`` null means "not written" (the kernel's ``NUMA_NO_NODE``).

Features newer than 6.18 (the ``probe_hits_wsum`` filter, goal ``complement``, the
``node_memcg_used_bp``/``node_memcg_free_bp`` metrics of 6.19, which a 6.18 kernel's
``target_metric`` refuses, and ``active_mem_bp``/``inactive_mem_bp``/``node_eligible_mem_bp``)
are refused by path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from damond.core.spec import (
    CORE_FILTER_TYPES,
    FILTER_TYPES,
    NUMA_NO_NODE,
    UINT_MAX,
    DestSpec,
    FilterSpec,
    IntervalsGoalSpec,
    QuotaGoalSpec,
    SchemeSpec,
)
from damond.formats.damo.kdamonds.fields import FieldReader
from damond.formats.damo.units import (
    format_bp,
    format_nr,
    format_sz,
    text_to_bool,
    text_to_bp,
    text_to_bytes,
    text_to_nr,
    text_to_us,
)

#: Goal metrics of Linux 6.18, and those damo 3.4.3 knows beyond them.
GOAL_METRICS_6_18 = ("user_input", "some_mem_psi_us", "node_mem_used_bp", "node_mem_free_bp")
_LATER_GOAL_METRICS = ("node_memcg_used_bp", "node_memcg_free_bp", "active_mem_bp",
                       "inactive_mem_bp", "node_eligible_mem_bp")
_NID_METRICS = ("node_mem_used_bp", "node_mem_free_bp", "node_memcg_used_bp",
                "node_memcg_free_bp")
_PATH_METRICS = ("node_memcg_used_bp", "node_memcg_free_bp")
_BP_METRICS = ("node_mem_used_bp", "node_mem_free_bp", "node_memcg_used_bp",
               "node_memcg_free_bp", "active_mem_bp", "inactive_mem_bp")
INT_MAX = (1 << 31) - 1


# -- loading ----------------------------------------------------------------------------------

def load_intervals_goal(ld: FieldReader, node: Any, path: str) -> IntervalsGoalSpec:
    """``DamonIntervalsGoal.from_kvpairs``: all four keys are required."""
    goal = ld.section(node, path, "intervals_goal")
    if goal is None:
        return IntervalsGoalSpec()
    return IntervalsGoalSpec(
        access_bp=ld.number(goal, "access_bp", path, text_to_bp),
        aggrs=ld.number(goal, "aggrs", path, text_to_nr),
        min_sample_us=ld.number(goal, "min_sample_us", path, text_to_us),
        max_sample_us=ld.number(goal, "max_sample_us", path, text_to_us))


def load_scheme_extras(ld: FieldReader, node: dict, path: str, spec: SchemeSpec) -> None:
    """``filters``, ``dests`` and ``target_nid`` of one scheme, into ``spec``."""
    for i, f in enumerate(ld.items(node.get("filters", []), f"{path}.filters")):
        filt = _load_filter(ld, f, f"{path}.filters[{i}]")
        if filt is not None:
            (spec.core_filters if filt.type in CORE_FILTER_TYPES else spec.ops_filters).append(
                filt)
    for i, d in enumerate(ld.items(node.get("dests", []), f"{path}.dests")):
        dpath = f"{path}.dests[{i}]"
        d = ld.section(d, dpath, "dest")
        if d is not None:
            spec.dests.append(DestSpec(ld.number(d, "id", dpath, text_to_nr, limit=UINT_MAX),
                                       ld.number(d, "weight", dpath, text_to_nr, limit=UINT_MAX)))
    nid = node.get("target_nid")
    if nid is not None:
        spec.target_nid = _int(ld, nid, f"{path}.target_nid")


def _int(ld: FieldReader, value: Any, path: str) -> int:
    """A C ``int`` damo writes with ``'%s'``/``'%d'`` (kstrtoint: -2**31 .. 2**31-1)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if type(value) is not int or not -INT_MAX - 1 <= value <= INT_MAX:
        ld.errors.append(f"{path}: not an int: {value!r}")
        return NUMA_NO_NODE
    return value


def _load_filter(ld: FieldReader, node: Any, path: str) -> FilterSpec | None:
    f = ld.section(node, path, "filter")
    if f is None:
        return None
    ftype = ld.required(f, "filter_type", path, "anon")
    if ftype == "probe_hits_wsum":
        ld.errors.append(f"{path}.filter_type: 'probe_hits_wsum' is not implemented by damond "
                         "(it is newer than Linux 6.18)")
        return None
    if ftype not in FILTER_TYPES:
        ld.errors.append(f"{path}.filter_type: unknown filter type {ftype!r}")
        return None
    ld.unimplemented(f"{path}.probe_hits_wsum_range", f.get("probe_hits_wsum_range"), None)
    spec = FilterSpec(type=ftype)
    matching = ld.parse(ld.required(f, "matching", path, False), f"{path}.matching",
                        text_to_bool)
    spec.matching = matching is True
    allow = f.get("allow", f.get("filter_pass", False))
    spec.allow = ld.parse(allow, f"{path}.allow", text_to_bool) is True
    if ftype == "memcg":
        memcg = ld.required(f, "memcg_path", path, "")
        if not isinstance(memcg, str):
            ld.errors.append(f"{path}.memcg_path: expected a string, got {memcg!r}")
            memcg = ""
        spec.memcg_path = memcg
    elif ftype == "addr":
        rng = ld.required(f, "address_range", path, None)
        rpath = f"{path}.address_range"
        if rng is not None and ld.section(rng, rpath, "region") is not None:
            spec.addr_start = ld.number(rng, "start", rpath, text_to_bytes)
            spec.addr_end = ld.number(rng, "end", rpath, text_to_bytes)
    elif ftype == "target":
        spec.target_idx = ld.number(f, "damon_target_idx", path, text_to_nr, limit=INT_MAX)
    hp = f.get("hugepage_size")
    if hp is not None:
        hpath = f"{path}.hugepage_size"
        if not isinstance(hp, list) or len(hp) != 2:
            ld.errors.append(f"{hpath}: expected [min, max]")
        else:
            spec.sz_min, spec.sz_max = (ld.sysfs_int(ld.parse(v, hpath, text_to_bytes), hpath)
                                        for v in hp)
    return spec


def load_goals(ld: FieldReader, node: Any, path: str) -> list[QuotaGoalSpec]:
    goals = []
    for i, g in enumerate(ld.items(node, path)):
        gpath = f"{path}[{i}]"
        g = ld.section(g, gpath, "goal")
        if g is None:
            continue
        if "target_value_bp" in g:  # damo's old spelling: a user_input goal
            goals.append(QuotaGoalSpec(
                target_value=ld.number(g, "target_value_bp", gpath, text_to_nr),
                current_value=ld.number(g, "current_value_bp", gpath, text_to_nr)))
            continue
        metric = ld.required(g, "metric", gpath, "user_input")
        if metric in _LATER_GOAL_METRICS:
            ld.errors.append(f"{gpath}.metric: {metric!r} is not implemented by damond (it is "
                             "newer than Linux 6.18)")
        elif metric not in GOAL_METRICS_6_18:
            ld.errors.append(f"{gpath}.metric: unknown quota goal metric {metric!r}")
        complement = ld.parse(g.get("complement", False), f"{gpath}.complement", text_to_bool)
        ld.unimplemented(f"{gpath}.complement", complement, False)
        target_parser = (text_to_us if metric == "some_mem_psi_us" else
                         text_to_bp if metric in _BP_METRICS else text_to_nr)
        goal = QuotaGoalSpec(
            target_metric=metric if metric in GOAL_METRICS_6_18 else "user_input",
            target_value=ld.number(g, "target_value", gpath, target_parser, "0"),
            current_value=ld.number(g, "current_value", gpath, text_to_nr, "0"))
        if metric in _NID_METRICS:
            nid = g.get("nid")
            if nid is None:
                ld.errors.append(f"{gpath}.nid: required by the {metric} metric")
            else:
                goal.nid = ld.number(g, "nid", gpath, text_to_nr, limit=INT_MAX)
        if metric in _PATH_METRICS:
            memcg = g.get("memcg_path")
            if not isinstance(memcg, str):
                ld.errors.append(f"{gpath}.memcg_path: required by the {metric} metric")
            else:
                goal.path = memcg
        goals.append(goal)
    return goals


# -- dumping ----------------------------------------------------------------------------------

def dump_intervals_goal(g: IntervalsGoalSpec, raw: bool, time_us: Callable[[int], Any]) -> dict:
    return {"access_bp": _exact_bp(g.access_bp, raw), "aggrs": format_nr(g.aggrs, raw),
            "min_sample_us": time_us(g.min_sample_us), "max_sample_us": time_us(g.max_sample_us)}


def _exact_bp(value: int, raw: bool) -> Any:
    text = format_bp(value, raw)
    try:
        if int(text_to_bp(text)) == value:
            return text
    except (ValueError, TypeError):
        pass
    return value  # a bare number is read in bp


def dump_filters(s: SchemeSpec, raw: bool) -> list[dict]:
    """Every filter, in the kernel's build order (core_filters, ops_filters, filters); a
    loader puts them back in core_filters/ops_filters by type, which builds the same lists.
    Only the argument of each filter's type is printed (the kernel uses no other)."""
    out = []
    for f in (*s.core_filters, *s.ops_filters, *s.filters):
        out.append({
            "filter_type": f.type, "matching": f.matching, "allow": f.allow,
            "memcg_path": f.memcg_path if f.type == "memcg" else None,
            "address_range": ({"start": format_nr(f.addr_start, True),
                               "end": format_nr(f.addr_end, True)}
                              if f.type == "addr" else None),
            "damon_target_idx": format_nr(f.target_idx, raw) if f.type == "target" else None,
            "hugepage_size": ([_size(f.sz_min, raw), _size(f.sz_max, raw)]
                              if f.type == "hugepage_size" else None),
            "probe_hits_wsum_range": None,
        })
    return out


def _size(value: int, raw: bool) -> str:
    text = format_sz(value, raw)
    return text if int(text_to_bytes(text)) == value else f"{value} B"


def dump_goals(goals: list[QuotaGoalSpec], raw: bool) -> list[dict]:
    """As damo prints goals: ``target_value`` with ``format_nr`` whatever the metric (a bare
    number reads back in the metric's unit: us for PSI, bp for ratios)."""
    return [{
        "metric": g.target_metric, "complement": False,
        "nid": format_nr(g.nid, raw) if g.target_metric in _NID_METRICS else None,
        "memcg_path": g.path if g.target_metric in _PATH_METRICS else None,
        "target_value": format_nr(g.target_value, raw),
        "current_value": format_nr(g.current_value, raw),
    } for g in goals]


def dump_dests(s: SchemeSpec) -> list[dict]:
    return [{"id": d.id, "weight": d.weight} for d in s.dests]


__all__ = ["dump_dests", "dump_filters", "dump_goals", "dump_intervals_goal",
           "load_goals", "load_intervals_goal", "load_scheme_extras"]
