"""damo's kdamonds JSON/YAML, read into damond's spec model (see the package doc for the rules).

One function per section of the document (kdamond, context, intervals, target, scheme, access
pattern, quotas, watermarks); each reads its fields through a
:class:`~damond.formats.damo.kdamonds.fields.FieldReader` and converts them as damo does before
it writes the kernel's sysfs files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml

from damond.core.spec import (
    ALL_ACTIONS,
    UINT_MAX,
    ULONG_MAX,
    WMARK_METRICS,
    AccessPatternSpec,
    AttrsSpec,
    ContextSpec,
    KdamondSpec,
    QuotaSpec,
    RegionSpec,
    SchemeSpec,
    TargetSpec,
    WatermarksSpec,
)
from damond.errors import DamonError
from damond.formats.damo.kdamonds.convert import (
    UNSET,
    is_digits,
    percent_to_samples,
    usec_to_aggrs,
)
from damond.formats.damo.kdamonds.fields import FieldReader
from damond.formats.damo.kdamonds.later import (
    load_goals,
    load_intervals_goal,
    load_scheme_extras,
)
from damond.formats.damo.units import (
    DamoTextError,
    text_to_bool,
    text_to_bytes,
    text_to_ms,
    text_to_nr,
    text_to_nr_unit,
    text_to_percent,
    text_to_permil,
    text_to_us,
)

#: Values damo prints in nanoseconds under ``--raw``: (section, key) pairs.
_RAW_NS_FIELDS = (("quotas", "time_ms"), ("quotas", "reset_interval_ms"),
                  ("watermarks", "interval_us"))

#: Actions damo knows (``_damon.py`` ``damos_actions``); those Linux 6.18 lacks are refused.
_DAMO_ACTIONS = ("willneed", "cold", "pageout", "hugepage", "collapse", "nohugepage", "lru_prio",
                 "lru_deprio", "migrate_hot", "migrate_cold", "stat")


def _load_kdamond(ld: FieldReader, node: Any, path: str) -> KdamondSpec:
    node = ld.section(node, path, "kdamond")
    if node is None:
        return KdamondSpec()
    refresh_ms = ld.number(node, "refresh_ms", path, text_to_ms, 0, limit=UINT_MAX)
    contexts = ld.required(node, "contexts", path, [])
    return KdamondSpec(contexts=[
        _load_context(ld, c, f"{path}.contexts[{i}]")
        for i, c in enumerate(ld.items(contexts, f"{path}.contexts"))
    ], refresh_ms=refresh_ms)


def _load_context(ld: FieldReader, node: Any, path: str) -> ContextSpec:
    node = ld.section(node, path, "context")
    if node is None:
        return ContextSpec()
    ops = ld.required(node, "ops", path, "")
    if not isinstance(ops, str):
        ld.errors.append(f"{path}.ops: expected a string, got {ops!r}")
        ops = ""
    addr_unit = ld.number(node, "addr_unit", path, text_to_bytes, 1)
    if addr_unit == 0:
        ld.errors.append(f"{path}.addr_unit: must be at least 1 (the kernel refuses 0)")
        addr_unit = 1
    _check_context_extras(ld, node, path)
    offload = node.get("damond_offload", "auto")  # damond's extension (docs/offload.md)
    if offload not in ("auto", "never"):
        ld.errors.append(f"{path}.damond_offload: {offload!r} is not auto or never")
        offload = "auto"
    attrs, sample, aggr = _load_intervals(ld, node, path)
    _load_nr_regions(ld, node, path, attrs)
    targets = ld.required(node, "targets", path, [])
    schemes = node.get("schemes", [])
    return ContextSpec(
        ops=ops,
        offload=offload,
        attrs=attrs,
        targets=[_load_target(ld, t, f"{path}.targets[{i}]")
                 for i, t in enumerate(ld.items(targets, f"{path}.targets"))],
        schemes=[_load_scheme(ld, s, f"{path}.schemes[{i}]", sample, aggr)
                 for i, s in enumerate(ld.items(schemes, f"{path}.schemes"))],
        addr_unit=addr_unit,
    )


def _check_context_extras(ld: FieldReader, node: dict, path: str) -> None:
    """probes, sample_control and pause: damon/next features damond does not implement."""
    ld.unimplemented(f"{path}.probes", node.get("probes", []), [])
    pause = node.get("pause", False)
    ld.unimplemented(f"{path}.pause", ld.parse(pause, f"{path}.pause", text_to_bool), False)
    if "sample_control" not in node:
        return
    sc_path = f"{path}.sample_control"
    sc = ld.section(node["sample_control"], sc_path, "sample_control")
    if sc is None:
        return
    ld.unimplemented(f"{sc_path}.sample_filters", ld.get(sc, "sample_filters", sc_path), [])
    pe_path = f"{sc_path}.primitives_enabled"
    pe = ld.get(sc, "primitives_enabled", sc_path)
    if pe is UNSET or ld.section(pe, pe_path, "primitives_enabled") is None:
        return
    for key, default in (("page_table", True), ("page_fault", False)):
        value = ld.get(pe, key, pe_path)
        if value is not UNSET:
            value = ld.parse(value, f"{pe_path}.{key}", text_to_bool)
        ld.unimplemented(f"{pe_path}.{key}", value, default)


def _load_intervals(ld: FieldReader, node: dict, path: str) -> tuple[AttrsSpec, Any, Any]:
    """The intervals, plus sample/aggr as damo typed them (its unit conversions use those)."""
    attrs = AttrsSpec(update_us=1_000_000)  # damo's default update interval is 1 s, not 60 s
    sample: Any = 5000.0
    aggr: Any = 100000.0
    if "intervals" not in node:
        return attrs, sample, aggr
    ipath = f"{path}.intervals"
    iv = ld.section(node["intervals"], ipath, "intervals")
    if iv is None:
        return attrs, UNSET, UNSET
    typed = {}
    for key in ("sample_us", "aggr_us", "ops_update_us"):
        value = ld.get(iv, key, ipath)
        typed[key] = UNSET if value is UNSET else ld.parse(value, f"{ipath}.{key}", text_to_us)
    attrs.sample_us = ld.sysfs_int(typed["sample_us"], f"{ipath}.sample_us")
    attrs.aggr_us = ld.sysfs_int(typed["aggr_us"], f"{ipath}.aggr_us")
    attrs.update_us = ld.sysfs_int(typed["ops_update_us"], f"{ipath}.ops_update_us")
    if "intervals_goal" in iv:
        attrs.intervals_goal = load_intervals_goal(ld, iv["intervals_goal"],
                                                   f"{ipath}.intervals_goal")
    return attrs, typed["sample_us"], typed["aggr_us"]


def _load_nr_regions(ld: FieldReader, node: dict, path: str, attrs: AttrsSpec) -> None:
    if "nr_regions" not in node:
        return
    rpath = f"{path}.nr_regions"
    nr = ld.section(node["nr_regions"], rpath, "nr_regions")
    if nr is not None:
        attrs.min_nr_regions = ld.number(nr, "min", rpath, text_to_nr)
        attrs.max_nr_regions = ld.number(nr, "max", rpath, text_to_nr)


def _load_target(ld: FieldReader, node: Any, path: str) -> TargetSpec:
    node = ld.section(node, path, "target")
    if node is None:
        return TargetSpec()
    pid = ld.required(node, "pid", path, None)
    if pid is None:
        pid = 0
    elif isinstance(pid, str) and re.fullmatch(r"-?[0-9]+", pid.strip()):
        pid = int(pid)
    elif type(pid) is not int:
        ld.errors.append(f"{path}.pid: not a pid: {pid!r}")
        pid = 0
    obsolete = ld.parse(node.get("obsolete", False), f"{path}.obsolete", text_to_bool)
    ld.unimplemented(f"{path}.obsolete", obsolete, False)
    regions = []
    for i, r in enumerate(ld.items(ld.required(node, "regions", path, []), f"{path}.regions")):
        rpath = f"{path}.regions[{i}]"
        r = ld.section(r, rpath, "region")
        if r is not None:
            regions.append(RegionSpec(ld.number(r, "start", rpath, text_to_bytes),
                                      ld.number(r, "end", rpath, text_to_bytes)))
    ops_args = node.get("damond_ops_args", {})
    if not isinstance(ops_args, dict):
        ld.errors.append(f"{path}.damond_ops_args: expected a mapping")
        ops_args = {}
    return TargetSpec(pid=pid, regions=regions, ops_args=dict(ops_args))


def _load_scheme(ld: FieldReader, node: Any, path: str, sample: Any, aggr: Any) -> SchemeSpec:
    node = ld.section(node, path, "scheme")
    if node is None:
        return SchemeSpec()
    action = node.get("action", "stat")
    if action not in _DAMO_ACTIONS:
        ld.errors.append(f"{path}.action: unknown action {action!r}")
    elif action not in ALL_ACTIONS:
        ld.errors.append(f"{path}.action: {action!r} is not implemented by damond (it is newer "
                         "than Linux 6.18)")
    spec = SchemeSpec(
        action=action if action in ALL_ACTIONS else "stat",
        pattern=_load_access_pattern(ld, node, path, sample, aggr),
        quota=_load_quotas(ld, node, path),
        wmarks=_load_watermarks(ld, node, path),
        apply_interval_us=ld.number(node, "apply_interval_us", path, text_to_us, 0),
    )
    load_scheme_extras(ld, node, path, spec)
    return spec


def _load_access_pattern(ld: FieldReader, node: dict, path: str, sample: Any,
                         aggr: Any) -> AccessPatternSpec:
    ppath = f"{path}.access_pattern"
    if "access_pattern" not in node:  # damo's DamosAccessPattern(): every region
        whole = {"min": "min", "max": "max"}
        pat = {"sz_bytes": whole, "nr_accesses": whole, "age": whole}
    else:
        pat = ld.section(node["access_pattern"], ppath, "access_pattern")
        if pat is None:
            return AccessPatternSpec()
    spec = AccessPatternSpec()
    sz = _range(ld, pat, "sz_bytes", ppath)
    if sz is not None:
        spec.min_sz, spec.max_sz = (_ulong(ld, ld.parse(v, f"{ppath}.sz_bytes.{k}", text_to_bytes),
                                           f"{ppath}.sz_bytes.{k}") for k, v in sz.items())
    nr = _range(ld, pat, "nr_accesses", ppath)
    if nr is not None:
        spec.min_nr_accesses, spec.max_nr_accesses = _nr_accesses(
            ld, nr, f"{ppath}.nr_accesses", sample, aggr)
    age = _range(ld, pat, "age", ppath)
    if age is not None:
        spec.min_age, spec.max_age = _age(ld, age, f"{ppath}.age", aggr)
    return spec


def _range(ld: FieldReader, node: dict, key: str, path: str) -> dict | None:
    """``{"min": .., "max": ..}`` of ``node[key]``, in that order, or None after an error."""
    value = ld.get(node, key, path)
    if value is UNSET or ld.section(value, f"{path}.{key}", "range") is None:
        return None
    lo, hi = ld.get(value, "min", f"{path}.{key}"), ld.get(value, "max", f"{path}.{key}")
    return None if UNSET in (lo, hi) else {"min": lo, "max": hi}


def _ulong(ld: FieldReader, typed: Any, path: str) -> int:
    """damo's ``write_ulong``: ``'%d' % min(value, ULONG_MAX)``."""
    if typed is UNSET:
        return 0
    if isinstance(typed, (int, float)) and typed > ULONG_MAX:
        typed = ULONG_MAX
    return ld.sysfs_int(typed, path)


def _unit_pair(ld: FieldReader, rng: dict, path: str, parser: Callable[[Any], Any],
               units: tuple[str, str]) -> tuple[str, list] | None:
    """damo's access-pattern parsing: both ends in ``units[0]`` via ``parser``, else both
    ``"<number> <unit>"`` with one same unit (``DamosAccessPattern.from_kvpairs``)."""
    try:
        return units[0], [parser(rng["min"]), parser(rng["max"])]
    except (DamoTextError, TypeError):
        pass
    try:
        (lo, lo_unit), (hi, hi_unit) = (text_to_nr_unit(rng[k]) for k in ("min", "max"))
    except DamoTextError as e:
        ld.errors.append(f"{path}: {e}")
        return None
    if lo_unit != hi_unit or lo_unit not in units:
        ld.errors.append(f"{path}: min and max need one unit of {', '.join(units)}")
        return None
    return lo_unit, [lo, hi]


def _nr_accesses(ld: FieldReader, rng: dict, path: str, sample: Any, aggr: Any) -> tuple[int, int]:
    parsed = _unit_pair(ld, rng, path, text_to_percent, ("percent", "samples"))
    if parsed is None:
        return 0, 0
    unit, values = parsed
    out = []
    for key, value in zip(("min", "max"), values, strict=True):
        if unit == "samples":
            typed = ld.parse(value, f"{path}.{key}", text_to_nr)
        else:
            typed = ld.parse(value, f"{path}.{key}", lambda v: percent_to_samples(
                text_to_percent(v), sample, aggr))
        out.append(_ulong(ld, typed, f"{path}.{key}"))
    return out[0], out[1]


def _age(ld: FieldReader, rng: dict, path: str, aggr: Any) -> tuple[int, int]:
    parsed = _unit_pair(ld, rng, path, ld.raw_ns(text_to_us), ("usec", "aggr_intervals"))
    if parsed is None:
        return 0, 0
    unit, values = parsed
    out = []
    for key, value in zip(("min", "max"), values, strict=True):
        if unit == "aggr_intervals":
            typed = ld.parse(value, f"{path}.{key}", text_to_nr)
        else:
            typed = ld.parse(value, f"{path}.{key}", lambda v: usec_to_aggrs(
                text_to_us(v), aggr))
        out.append(_ulong(ld, typed, f"{path}.{key}"))
    return out[0], out[1]


def _load_quotas(ld: FieldReader, node: dict, path: str) -> QuotaSpec:
    qpath = f"{path}.quotas"
    if "quotas" not in node:
        return QuotaSpec(reset_interval_ms=ULONG_MAX)  # damo's DamosQuotas() default
    q = ld.section(node["quotas"], qpath, "quotas")
    if q is None:
        return QuotaSpec()
    goals = load_goals(ld, q.get("goals", []), f"{qpath}.goals")
    ld.unimplemented(f"{qpath}.goal_tuner", q.get("goal_tuner", "consist"), "consist")
    for key in ("fail_charge_num", "fail_charge_denom"):
        ld.unimplemented(f"{qpath}.{key}", ld.parse(q.get(key, 0), f"{qpath}.{key}", text_to_nr), 0)
    spec = QuotaSpec(
        ms=ld.number(q, "time_ms", qpath, ld.raw_ns(text_to_ms)),
        sz=ld.number(q, "sz_bytes", qpath, text_to_bytes),
        reset_interval_ms=ld.number(q, "reset_interval_ms", qpath, ld.raw_ns(text_to_ms)),
        goals=goals,
    )
    wpath = f"{qpath}.weights"
    weights = ld.get(q, "weights", qpath)
    if weights is not UNSET and ld.section(weights, wpath, "weights") is not None:
        spec.weight_sz = ld.number(weights, "sz_permil", wpath, text_to_permil, limit=UINT_MAX)
        spec.weight_nr_accesses = ld.number(weights, "nr_accesses_permil", wpath, text_to_permil,
                                            limit=UINT_MAX)
        spec.weight_age = ld.number(weights, "age_permil", wpath, text_to_permil, limit=UINT_MAX)
    return spec


def _load_watermarks(ld: FieldReader, node: dict, path: str) -> WatermarksSpec:
    wpath = f"{path}.watermarks"
    if "watermarks" not in node:
        return WatermarksSpec()
    w = ld.section(node["watermarks"], wpath, "watermarks")
    if w is None:
        return WatermarksSpec()
    metric = ld.required(w, "metric", wpath, "none")
    if metric not in WMARK_METRICS:
        ld.errors.append(f"{wpath}.metric: unknown watermarks metric {metric!r}")
        metric = "none"
    return WatermarksSpec(
        metric=metric,
        interval_us=ld.number(w, "interval_us", wpath, ld.raw_ns(text_to_us)),
        high=ld.number(w, "high_permil", wpath, text_to_permil),
        mid=ld.number(w, "mid_permil", wpath, text_to_permil),
        low=ld.number(w, "low_permil", wpath, text_to_permil),
    )


def _parse_document(text_or_obj: str | bytes | dict | list, fmt: str | None) -> Any:
    if isinstance(text_or_obj, (dict, list)):
        return text_or_obj
    text = text_or_obj.decode() if isinstance(text_or_obj, bytes) else text_or_obj
    if fmt not in (None, "json", "yaml"):
        raise DamonError("EINVAL", f"unknown kdamonds format {fmt!r} (json or yaml)")
    try:
        if fmt == "json" or (fmt is None and text.lstrip().startswith("{")):
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise DamonError("EINVAL", f"kdamonds {fmt or 'json/yaml'} does not parse: {e}") from None


def _looks_raw(kdamonds: list) -> bool:
    """Whether the document is ``damo args damon --raw`` output.

    Human output always gives units to times (``"0 ns"``, ``"30 s"``) and sizes (``"1 B"``);
    raw output prints bare digit strings. The document counts as raw when every context states
    its ``addr_unit`` as a bare digit string and every nanosecond-printed field that holds a
    string (the age range, quota times, watermark interval) is one too.
    """
    ns_values, addr_units = [], []
    for ctx in _dicts_in(kd.get("contexts") for kd in _dicts_in([kdamonds])):
        addr_units.append(ctx.get("addr_unit"))
        for scheme in _dicts_in([ctx.get("schemes")]):
            ns_values.extend(_raw_ns_values(scheme))
    # "<n> aggr_intervals" and "<n> usec" ages name their unit: no hint either way
    strings = [v for v in ns_values
               if isinstance(v, str) and not v.rstrip().endswith(("aggr_intervals", "usec"))]
    return (bool(strings) and all(is_digits(v) for v in strings)
            and bool(addr_units) and all(is_digits(a) for a in addr_units))


def _dicts_in(lists: Any) -> list[dict]:
    """The dicts inside the lists in ``lists`` (skipping anything malformed)."""
    return [x for lst in lists if isinstance(lst, list) for x in lst if isinstance(x, dict)]


def _raw_ns_values(scheme: dict) -> list:
    pattern = scheme.get("access_pattern")
    age = pattern.get("age") if isinstance(pattern, dict) else None
    values = [age.get(k) for k in ("min", "max")] if isinstance(age, dict) else []
    for section, key in _RAW_NS_FIELDS:
        if isinstance(scheme.get(section), dict):
            values.append(scheme[section].get(key))
    return values


def load_kdamonds(text_or_obj: str | bytes | dict | list, *, fmt: str | None = None,
                  raw: bool | None = None) -> tuple[list[KdamondSpec], list[str]]:
    """Read damo's kdamonds JSON/YAML (human or ``--raw`` form) into kernel-unit specs.

    ``text_or_obj`` is the file's text, or the already parsed object (``{"kdamonds": [...]}``, or
    the bare list damo's ``record`` keeps in ``<file>.kdamonds``). ``fmt`` forces ``"json"`` or
    ``"yaml"`` (default: JSON if the text starts with ``{``, YAML otherwise). ``raw`` forces the
    reading of bare numbers in nanosecond-printed fields (default: detected, see
    :func:`_looks_raw`).

    Returns the specs and warnings (unknown keys, ignored settings). Raises
    ``DamonError("EINVAL")`` naming every field that is malformed, missing where damo requires
    it, or set to something damond does not implement.
    """
    doc = _parse_document(text_or_obj, fmt)
    kdamonds = doc.get("kdamonds") if isinstance(doc, dict) else doc
    if not isinstance(kdamonds, list):
        raise DamonError("EINVAL", "kdamonds: expected a list under the 'kdamonds' key")
    is_raw = _looks_raw(kdamonds) if raw is None else raw
    ld = FieldReader(is_raw)
    if isinstance(doc, dict):
        ld.errors += [f"{key}: unknown key" for key in doc if key != "kdamonds"]
    if is_raw and raw is None:
        ld.warnings.append(
            "raw form detected: bare numbers of age, quotas.time_ms, quotas.reset_interval_ms"
            " and watermarks.interval_us are read as nanoseconds, as damo --raw prints them")
    specs = [_load_kdamond(ld, kd, f"kdamonds[{i}]") for i, kd in enumerate(kdamonds)]
    if ld.errors:
        raise DamonError("EINVAL", "; ".join(ld.errors))
    return specs, ld.warnings
