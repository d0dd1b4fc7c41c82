"""damond's spec model printed as damo's kdamonds JSON/YAML (``damo args damon --format``).

Each value is printed in damo's text form when that text loads back (here and in damo) to the
same kernel value, and in an exact form damo also reads otherwise (see the package doc): the
dumper tries its candidate texts through the same conversions the loader applies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import yaml

from damond.core.spec import (
    NUMA_NO_NODE,
    ULONG_MAX,
    AccessPatternSpec,
    ContextSpec,
    KdamondSpec,
    SchemeSpec,
    TargetSpec,
)
from damond.errors import DamonError
from damond.formats.damo.kdamonds.convert import (
    UNSET,
    percent_d,
    percent_to_samples,
    raw_ns,
    usec_to_aggrs,
)
from damond.formats.damo.kdamonds.later import (
    dump_dests,
    dump_filters,
    dump_goals,
    dump_intervals_goal,
)
from damond.formats.damo.units import (
    DamoTextError,
    Number,
    format_nr,
    format_permil,
    format_sz,
    format_time_ns,
    format_time_ns_exact,
    text_to_bytes,
    text_to_ms,
    text_to_nr,
    text_to_percent,
    text_to_permil,
    text_to_us,
)


class _Dumper:
    """Chooses, for each value, damo's text if it loads back exactly, else an exact fallback."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw

    def raw_ns(self, parser: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``parser`` as the loader applies it to nanosecond-printed fields."""
        return raw_ns(parser, self.raw)

    def pick(self, value: int, parser: Callable[[Any], Any], candidates: list[Any]) -> Any:
        """The first candidate that loads back to ``value``; ``value`` itself (a plain number in
        the field's own unit, which every damo parser returns unchanged) otherwise."""
        for text in candidates:
            if self.loads_to(text, parser, value):
                return text
        return value

    @staticmethod
    def loads_to(text: Any, parser: Callable[[Any], Any], value: int, clamp: bool = False) -> bool:
        """Whether the loader reads ``text`` as ``value``; ``clamp`` for the access pattern,
        which damo caps at ULONG_MAX (``write_ulong``)."""
        try:
            typed = parser(text)
            return percent_d(min(typed, ULONG_MAX) if clamp else typed) == value
        except (DamoTextError, TypeError, ZeroDivisionError, OverflowError, ValueError):
            return False

    def size(self, value: int) -> Any:
        return self.pick(value, text_to_bytes, [format_sz(value, self.raw), f"{value:,} B"])

    def nr(self, value: int) -> Any:
        return self.pick(value, text_to_nr, [format_nr(value, self.raw)])

    def time_us(self, value: int, exact: bool) -> Any:
        """A microseconds field; ``exact`` picks damo's ``format_time_us_exact`` (else the short
        ``format_time_us``)."""
        if self.raw:  # damo --raw prints the exact forms in nanoseconds, the short ones in us
            if exact:
                return self.pick(value, self.raw_ns(text_to_us), [format_nr(value * 1000, True)])
            return self.pick(value, text_to_us, [format_nr(value, True)])
        short = format_time_ns(value * 1000, False)
        return self.pick(value, text_to_us, ([] if exact else [short])
                         + [format_time_ns_exact(value * 1000, False)])

    def time_ms(self, value: int) -> Any:
        parser = self.raw_ns(text_to_ms)
        return self.pick(value, parser, [format_time_ns_exact(value * 1_000_000, self.raw)])

    def permil(self, value: int) -> Any:
        if self.raw:
            return self.pick(value, text_to_permil, [format_permil(value, True)])
        decimal = format(Decimal(value) / 10, "f")
        return self.pick(value, text_to_permil, [format_permil(value, False), f"{decimal} %"])


def _dump_context(d: _Dumper, ctx: ContextSpec) -> dict:
    a = ctx.attrs
    intervals = {
        "sample_us": d.time_us(a.sample_us, exact=False),
        "aggr_us": d.time_us(a.aggr_us, exact=False),
        "ops_update_us": d.time_us(a.update_us, exact=False),
        "intervals_goal": dump_intervals_goal(
            a.intervals_goal, d.raw, lambda us: d.time_us(us, exact=False)),
    }
    sample, aggr = text_to_us(intervals["sample_us"]), text_to_us(intervals["aggr_us"])
    has_pid = ctx.ops in ("vaddr", "fvaddr")
    # damond's extension (docs/offload.md), written only when it is not the default
    offload = {"damond_offload": ctx.offload} if ctx.offload != "auto" else {}
    return {
        **offload,
        "ops": ctx.ops,
        "addr_unit": d.size(ctx.addr_unit),
        "targets": [_dump_target(d, t, has_pid) for t in ctx.targets],
        "intervals": intervals,
        "nr_regions": {"min": d.nr(a.min_nr_regions), "max": d.nr(a.max_nr_regions)},
        "probes": [],
        "sample_control": {"primitives_enabled": {"page_table": True, "page_fault": False},
                           "sample_filters": []},
        "pause": False,
        "schemes": [_dump_scheme(d, s, sample, aggr, a.aggr_us) for s in ctx.schemes],
    }


def _dump_target(d: _Dumper, t: TargetSpec, has_pid: bool) -> dict:
    out: dict[str, Any] = {
        "pid": t.pid if has_pid or t.pid else None,
        "obsolete": False,
        "regions": [{"start": d.nr(r.start), "end": d.nr(r.end)} for r in t.regions],
    }
    if t.ops_args:
        out["damond_ops_args"] = dict(t.ops_args)
    return out


def _dump_scheme(d: _Dumper, s: SchemeSpec, sample: Any, aggr: Any, aggr_us: int) -> dict:
    q, w = s.quota, s.wmarks
    # damo prints target_nid for the migrate actions only; null is "never written" (-1)
    nid = {"target_nid": None if s.target_nid == NUMA_NO_NODE else s.target_nid} if (
        s.action.startswith("migrate_") or s.target_nid != NUMA_NO_NODE) else {}
    return {
        "action": s.action,
        "dests": dump_dests(s),
        **nid,
        "access_pattern": {
            "sz_bytes": {"min": d.size(s.pattern.min_sz), "max": d.size(s.pattern.max_sz)},
            "nr_accesses": _dump_nr_accesses(d, s.pattern, sample, aggr),
            "age": _dump_age(d, s.pattern, aggr, aggr_us),
        },
        "apply_interval_us": d.time_us(s.apply_interval_us, exact=False),
        "quotas": {
            "time_ms": d.time_ms(q.ms),
            "sz_bytes": d.size(q.sz),
            "reset_interval_ms": d.time_ms(q.reset_interval_ms),
            "fail_charge_num": format_nr(0, d.raw),
            "fail_charge_denom": format_nr(0, d.raw),
            "goals": dump_goals(q.goals, d.raw),
            "goal_tuner": "consist",
            "effective_sz_bytes": format_sz(0, d.raw),
            "weights": {"sz_permil": d.permil(q.weight_sz),
                        "nr_accesses_permil": d.permil(q.weight_nr_accesses),
                        "age_permil": d.permil(q.weight_age)},
        },
        "watermarks": {
            "metric": w.metric,
            "interval_us": d.time_us(w.interval_us, exact=True),
            "high_permil": d.permil(w.high),
            "mid_permil": d.permil(w.mid),
            "low_permil": d.permil(w.low),
        },
        "filters": dump_filters(s, d.raw),
    }


def _dump_nr_accesses(d: _Dumper, p: AccessPatternSpec, sample: Any, aggr: Any) -> dict:
    """Percentages as damo prints them when both ends convert back exactly, else samples."""

    def to_samples(v: Any) -> Number:
        return percent_to_samples(text_to_percent(v), sample, aggr)

    picked = []
    for value in (p.min_nr_accesses, p.max_nr_accesses):
        candidates = ["0 %"] if value == 0 else ["max"]
        if sample and aggr and sample is not UNSET:
            guess = int(value * 100.0 / (aggr / sample))
            candidates += [f"{format_nr(g, d.raw)} %" for g in (guess, guess + 1)]
        picked.append(next((c for c in candidates if d.loads_to(c, to_samples, value, True)),
                           None))
    if None not in picked:
        return {"min": picked[0], "max": picked[1]}
    return {k: f"{format_nr(v, d.raw)} samples"
            for k, v in (("min", p.min_nr_accesses), ("max", p.max_nr_accesses))}


def _dump_age(d: _Dumper, p: AccessPatternSpec, aggr: Any, aggr_us: int) -> dict:
    """Times as damo prints them when both ends convert back exactly, else aggr_intervals."""
    parse = d.raw_ns(text_to_us)

    def to_aggrs(v: Any) -> Number:
        return usec_to_aggrs(parse(v), aggr)

    picked = []
    for value in (p.min_age, p.max_age):
        # "max" is what damo prints for the default (unbounded) age, in ns if raw
        candidates = [format_nr(ULONG_MAX * 1000, True) if d.raw else "max"] if value else []
        candidates.append(format_time_ns_exact(value * aggr_us * 1000, d.raw))
        picked.append(next((c for c in candidates if d.loads_to(c, to_aggrs, value, True)), None))
    if None not in picked:
        return {"min": picked[0], "max": picked[1]}
    return {k: f"{format_nr(v, d.raw)} aggr_intervals"
            for k, v in (("min", p.min_age), ("max", p.max_age))}


def dump_kdamonds(specs: list[KdamondSpec], *, fmt: str = "json", raw: bool = False) -> str:
    """Print specs as ``damo args damon --format json|yaml [--raw]`` does.

    The output loads back (here and in damo) to the same kernel values; see the package doc for
    where it departs from damo's own (lossy) number texts. Target ``ops_args`` (damond's own
    operation-set arguments) go to a ``damond_ops_args`` key damo ignores.
    """
    if fmt not in ("json", "yaml"):
        raise DamonError("EINVAL", f"unknown kdamonds format {fmt!r} (json or yaml)")
    d = _Dumper(raw)
    doc = {"kdamonds": [
        {"refresh_ms": kd.refresh_ms, "contexts": [_dump_context(d, c) for c in kd.contexts]}
        for kd in specs
    ]}
    if fmt == "json":
        return json.dumps(doc, indent=4) + "\n"
    return yaml.dump(doc, Dumper=yaml.SafeDumper, default_flow_style=False, sort_keys=False)
