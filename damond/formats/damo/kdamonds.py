"""damo's kdamonds JSON/YAML configuration, read into and printed from damond's spec model.

Users of damond already keep their DAMON setups as the files ``damo args damon --format
json|yaml`` prints (and ``damo start --kdamonds`` reads). This module loads such a file into
:class:`damond.core.spec.KdamondSpec` objects and prints specs back in the same format.

Loading converts every value exactly as damo 3.4.3 converts it when it writes the kernel's sysfs
files, so a file means the same to damond as to ``damo start`` on a kernel:

* numbers are damo's text forms: ``"1,000"``, ``"128.000 MiB"``, ``"1 s 200 ms"``, ``"50 %"``,
  ``"max"``/``"min"``; parsed by :func:`text_to_nr` and friends, which keep damo's int/float
  results so that damo's float arithmetic (and its truncations) is reproduced bit for bit
  (``_damo_fmt_str.py``: ``text_to_nr``, ``try_common_input``, ``text_to_bytes``, ``text_to_ns``,
  ``text_to_us``, ``text_to_ms``, ``text_to_ratio``, ``text_to_percent``, ``text_to_permil``);
* each value is then written the way ``_damon_sysfs.py`` writes it: ``'%d' % value`` (Python's
  ``%d`` truncates a float toward zero), and ``min(value, ULONG_MAX)`` for the access pattern
  (``write_ulong``);
* ``nr_accesses`` in percent becomes ``int(percent * (aggr_us / sample_us) / 100)`` samples, and an
  ``age`` in time becomes ``int(age_us / aggr_us)`` aggregation intervals, using the context's
  intervals as damo parsed them (``_damon.py``: ``DamonNrAccesses.add_unset_unit``,
  ``DamonAge.add_unset_unit``, called from ``_damon_sysfs.write_context_dir``);
* a missing optional section takes damo's default, which is not always the kernel's: e.g. a
  missing ``quotas`` means ``reset_interval_ms`` = ``max`` and a missing ``intervals`` means an
  update interval of 1 s (``_damon.py``: ``DamosQuotas.__init__``, ``DamonIntervals.__init__``).

One deliberate difference: ``damo args damon --raw`` prints the ``age`` range, ``quotas.time_ms``,
``quotas.reset_interval_ms`` and ``watermarks.interval_us`` in **nanoseconds**
(``format_time_us_exact``/``format_time_ms_exact`` with ``machine_friendly``), but damo reads the
same bare numbers back in their field's unit (us or ms), so damo itself turns a raw "30 s" age into
8 h 20 m. damond reads a raw file (detected, or forced with ``raw=True``) the way damo printed it:
those bare numbers are nanoseconds. A warning says so.

Fields damond does not implement (filters, quota goals, dests, probes, ...) are refused with
``EINVAL`` naming each field by its path, unless they hold their default; keys damo 3.4.3 does not
know are ignored and reported as warnings.

Dumping prints what damo prints (same keys, order, and text forms) except where damo's text would
not load back to the same number (damo rounds sizes to ``%.3f MiB`` and times to ``%.3f s``, and
prints 290 permil as ``28 %``): there it falls back to an exact form damo also reads the same way
(``"N samples"``, ``"N aggr_intervals"``, or a plain integer in the field's unit).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import yaml

from damond.core.spec import (
    ACTIONS,
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

Number = int | float

# ---------------------------------------------------------------------------------------------
# damo's number texts, parsed (_damo_fmt_str.py).  Results keep damo's int/float types on purpose.


class DamoTextError(ValueError):
    """A value damo could not parse either."""


_BYTE_UNITS = {"B": 1}
for _i, _p in enumerate("KMGTPE", start=1):
    for _suffix in ("", "B", "iB"):
        _BYTE_UNITS[_p + _suffix] = 1 << (10 * _i)

NS_PER = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
NS_PER.update(m=60 * NS_PER["s"], h=3600 * NS_PER["s"], d=86400 * NS_PER["s"])

_DIGITS = re.compile(r"[0-9]+")


def text_to_nr(txt: Any) -> Number:
    """damo's ``text_to_nr``: an int or float as is, ``max``, or digits with thousands commas."""
    if type(txt) in (int, float):
        return txt
    if not isinstance(txt, str):
        raise DamoTextError(f"not a number: {txt!r}")
    if txt == "max":
        return ULONG_MAX
    plain = txt.replace(",", "")
    try:
        return int(plain)
    except ValueError:
        pass
    try:
        return float(plain)
    except ValueError:
        raise DamoTextError(f"not a number: {txt!r}") from None


def _common(txt: Any, min_val: Number = 0, max_val: Number = ULONG_MAX) -> Number | None:
    """damo's ``try_common_input``: ``min``, ``max`` or a unitless number; None otherwise."""
    if txt == "min":
        return min_val
    if txt == "max":
        return max_val
    try:
        return text_to_nr(txt)
    except DamoTextError:
        return None


def _need_str(txt: Any) -> str:
    if not isinstance(txt, str) or not txt:
        raise DamoTextError(f"not a number: {txt!r}")
    return txt


def text_to_bytes(txt: Any) -> Number:
    """damo's ``text_to_bytes``: a size with an optional B/K/KB/KiB suffix, capped at ULONG_MAX."""
    number = _common(txt)
    if number is not None:
        return number
    txt = _need_str(txt)
    # damo tries a three-letter unit (KiB) on texts longer than 3, then two letters (KB) on
    # texts longer than 2, then one (K, B), and else takes the whole text as bytes.
    for width, min_len in ((3, 4), (2, 3), (1, 1)):
        if len(txt) >= min_len and txt[-width:] in _BYTE_UNITS:
            number, unit = text_to_nr(txt[:-width]), txt[-width:]
            break
    else:
        number, unit = text_to_nr(txt), "B"
    try:
        return min(ULONG_MAX, int(number * _BYTE_UNITS[unit]))
    except (OverflowError, ValueError):
        raise DamoTextError(f"not a size: {txt!r}") from None


def text_to_ns(txt: Any) -> Number:
    """damo's ``text_to_ns``: ``"1 s 200 ms"`` style times; a bare number is nanoseconds."""
    number = _common(txt)
    if number is not None:
        return number
    txt = _need_str(txt)
    fields = txt.split()
    if len(fields) > 1:
        total: Number = 0
        for i in range(0, len(fields), 2):
            total += text_to_ns("".join(fields[i : i + 2]))
        return total
    if txt[-2:] not in NS_PER and txt[-1] not in NS_PER:
        try:
            return float(txt)
        except ValueError:
            raise DamoTextError(f"not a time: {txt!r}") from None
    unit = txt[-2:]
    if unit in ("ns", "us", "ms"):
        return text_to_nr(txt[:-2]) * NS_PER[unit]
    return text_to_nr(txt[:-1]) * NS_PER[txt[-1]]


def text_to_us(txt: Any) -> Number:
    """damo's ``text_to_us``: a bare number is microseconds, a time with units is converted."""
    number = _common(txt)
    if number is not None:
        return number
    return text_to_ns(txt) / 1000


def text_to_ms(txt: Any) -> Number:
    """damo's ``text_to_ms``: a bare number is milliseconds, a time with units is converted."""
    number = _common(txt)
    if number is not None:
        return number
    return text_to_us(txt) / 1000


def _text_to_ratio(txt: Any) -> Number:
    number = _common(txt, 0.0)
    if number is not None:
        return number
    txt = _need_str(txt)
    if txt[-1] == "%":
        return text_to_nr(txt[:-1]) / 100.0
    return text_to_nr(txt)


def _text_to_scaled_ratio(scale: int) -> Callable[[Any], Number]:
    def parse(txt: Any) -> Number:
        number = _common(txt, 0)
        if number is not None:
            return number
        return _text_to_ratio(txt) * scale

    return parse


#: damo's ``text_to_percent`` / ``text_to_permil`` / ``text_to_bp``: ``"50 %"`` or a bare number
#: already in the target unit.
text_to_percent = _text_to_scaled_ratio(100)
text_to_permil = _text_to_scaled_ratio(1000)
text_to_bp = _text_to_scaled_ratio(10000)


def text_to_bool(txt: Any) -> bool:
    """damo's ``text_to_bool``: a bool, or y/yes/true/n/no/false in any case."""
    if isinstance(txt, bool):
        return txt
    if isinstance(txt, str):
        if txt.lower() in ("y", "yes", "true"):
            return True
        if txt.lower() in ("n", "no", "false"):
            return False
    raise DamoTextError(f"not a boolean: {txt!r}")


def _text_to_nr_unit(txt: Any) -> tuple[Number, str]:
    fields = _need_str(txt).split()
    if len(fields) != 2:
        raise DamoTextError(f"not '<number> <unit>': {txt!r}")
    return text_to_nr(fields[0]), fields[1]


def percent_d(value: Number) -> int:
    """What Python's ``'%d' % value`` (damo's way to write a sysfs file) makes of a number."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DamoTextError(f"not a finite number: {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# damo's number texts, printed (_damo_fmt_str.py).


def _d(value: Number) -> str:
    """Python's ``'%d' % value``, damo's way to print a number: floats truncate toward zero."""
    return str(int(value))


def format_nr(nr: Number, raw: bool) -> str:
    """damo's ``format_nr``: digits, with thousands commas unless raw."""
    return _d(nr) if raw else f"{int(nr):,}"


_SIZE_UNITS = ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB"))


def format_sz(sz: Number, raw: bool) -> str:
    """damo's ``format_sz``: ``'max'``, ``'%.3f MiB'`` style, or ``'N B'`` (lossy)."""
    if raw:
        return _d(sz)
    value = float(sz)
    if value == float(ULONG_MAX):
        return "max"
    for shift, unit in _SIZE_UNITS:
        if value > 1 << shift:
            return f"{value / (1 << shift):.3f} {unit}"
    return f"{_d(value)} B"


_TIME_UNITS = (("d", NS_PER["d"]), ("h", NS_PER["h"]), ("m", NS_PER["m"]), ("s", NS_PER["s"]),
               ("ms", NS_PER["ms"]), ("us", NS_PER["us"]), ("ns", 1))


def format_time_ns_exact(time_ns: Number, raw: bool) -> str:
    """damo's ``format_time_ns_exact``: ``"1 m 30 s 5 ms"``, or bare nanoseconds if raw."""
    if raw:
        return _d(time_ns)
    sign = "-" if time_ns < 0 else ""
    time_ns = abs(time_ns)
    if time_ns >= ULONG_MAX:
        return sign + "max"
    for name, unit_ns in _TIME_UNITS:
        if time_ns < unit_ns:
            continue
        if unit_ns == 1:
            return f"{sign}{_d(time_ns)} ns" if time_ns % 1 == 0 else f"{sign}{time_ns:.3f} ns"
        count = int(time_ns / unit_ns)
        text = f"{format_nr(count, False)} {name}"
        rest = time_ns - count * unit_ns
        if rest == 0:
            return sign + text
        return f"{sign}{text} {format_time_ns_exact(rest, False)}"
    return "0 ns"


def format_time_ns(time_ns: Number, raw: bool) -> str:
    """damo's ``format_time_ns``: the short, possibly rounded form (``"1.235 s"``)."""
    if raw:
        return _d(time_ns)
    t = float(time_ns)
    sign = "-" if t < 0 else ""
    t = abs(t)
    if t >= ULONG_MAX:
        return sign + "max"
    hour, minute, sec = NS_PER["h"], NS_PER["m"], NS_PER["s"]
    if t >= hour:
        hours = int(t / hour)
        rest = t - hours * hour
        return f"{sign}{hours} h" + ("" if rest == 0 else " " + format_time_ns(rest, False))
    if t >= minute:
        if t % minute == 0:
            return f"{sign}{_d(t / minute)} m"
        if t % sec == 0:
            return f"{sign}{_d(t / minute)} m {_d((t % minute) / sec)} s"
        return f"{sign}{_d(t / minute)} m {(t % minute) / sec:.3f} s"
    for name in ("s", "ms", "us"):
        if t >= NS_PER[name]:
            if t % NS_PER[name] == 0:
                return f"{sign}{_d(t / NS_PER[name])} {name}"
            return f"{sign}{t / NS_PER[name]:.3f} {name}"
    return f"{sign}{_d(t)} ns"


def format_ratio(ratio: float, raw: bool) -> str:
    """damo's ``format_ratio``: ``"12.5 %"``; ``'%f'`` of the ratio if raw."""
    if raw:
        return f"{ratio:f}"
    over = format_nr(int(ratio * 100), False)
    under = f"{ratio * 100 % 1:.7f}".rstrip("0")[2:]
    return f"{over} %" if under == "" else f"{over}.{under} %"


def _format_scaled(scale: int) -> Callable[[Number, bool], str]:
    def fmt(value: Number, raw: bool) -> str:
        return f"{value:f}" if raw else format_ratio(float(value) / scale, False)

    return fmt


format_permil = _format_scaled(1000)
format_bp = _format_scaled(10000)


# ---------------------------------------------------------------------------------------------
# Loading.

_NONE = object()

_KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "top": ("kdamonds",),
    "kdamond": ("state", "pid", "refresh_ms", "contexts"),
    "context": ("ops", "addr_unit", "targets", "intervals", "nr_regions", "probes",
                "sample_control", "pause", "schemes"),
    "target": ("pid", "obsolete", "regions", "damond_ops_args"),
    "region": ("start", "end", "nr_accesses", "age", "probe_hits", "sz_filter_passed"),
    "intervals": ("sample_us", "aggr_us", "ops_update_us", "intervals_goal"),
    "intervals_goal": ("access_bp", "aggrs", "min_sample_us", "max_sample_us"),
    "nr_regions": ("min", "max"),
    "sample_control": ("primitives_enabled", "sample_filters"),
    "primitives_enabled": ("page_table", "page_fault"),
    "scheme": ("action", "dests", "target_nid", "access_pattern", "apply_interval_us", "quotas",
               "watermarks", "filters", "stats"),
    "access_pattern": ("sz_bytes", "nr_accesses", "age"),
    "range": ("min", "max"),
    "quotas": ("time_ms", "sz_bytes", "reset_interval_ms", "fail_charge_num",
               "fail_charge_denom", "goals", "goal_tuner", "effective_sz_bytes", "weights"),
    "weights": ("sz_permil", "nr_accesses_permil", "age_permil"),
    "watermarks": ("metric", "interval_us", "high_permil", "mid_permil", "low_permil"),
}

#: Values damo prints in nanoseconds under ``--raw``: (section, key) pairs.
_RAW_NS_FIELDS = (("quotas", "time_ms"), ("quotas", "reset_interval_ms"),
                  ("watermarks", "interval_us"))

#: Actions damo knows (``_damon.py`` ``damos_actions``); those outside spec.ACTIONS are refused.
_DAMO_ACTIONS = ("willneed", "cold", "pageout", "hugepage", "collapse", "nohugepage", "lru_prio",
                 "lru_deprio", "migrate_hot", "migrate_cold", "stat")


class _Loader:
    """Walks one parsed document, collecting refusals and warnings with the path of each field."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.errors: list[str] = []
        self.warnings: list[str] = []

    # -- generic helpers ------------------------------------------------------------------

    def section(self, node: Any, path: str, kind: str) -> dict | None:
        """``node`` as a dict whose unknown keys are reported; None (with an error) otherwise."""
        if not isinstance(node, dict):
            self.errors.append(f"{path}: expected a mapping, got {type(node).__name__}")
            return None
        for key in node:
            if key not in _KNOWN_KEYS[kind]:
                self.warnings.append(f"{path}.{key}: unknown key (ignored)")
        return node

    def items(self, node: Any, path: str) -> list:
        if not isinstance(node, list):
            self.errors.append(f"{path}: expected a list, got {type(node).__name__}")
            return []
        return node

    def get(self, node: dict, key: str, path: str, default: Any = _NONE) -> Any:
        """``node[key]``; damo's default when it has one, else a 'missing' error (returns _NONE)."""
        if key in node:
            return node[key]
        if default is _NONE:
            self.errors.append(f"{path}.{key}: missing (damo requires it)")
        return default

    def required(self, node: dict, key: str, path: str, fallback: Any) -> Any:
        """``node[key]``, or ``fallback`` after a 'missing' error: damo has no default for it."""
        value = self.get(node, key, path)
        return fallback if value is _NONE else value

    def parse(self, value: Any, path: str, parser: Callable[[Any], Any]) -> Any:
        """``parser(value)``, or _NONE after recording why damo would not take it."""
        try:
            return parser(value)
        except DamoTextError as e:
            self.errors.append(f"{path}: {e}")
        except (TypeError, ZeroDivisionError, OverflowError) as e:
            self.errors.append(f"{path}: cannot convert {value!r} ({e})")
        return _NONE

    def sysfs_int(self, typed: Any, path: str, limit: int = ULONG_MAX) -> int:
        """The integer damo writes (``'%d' % typed``), checked against the kernel's range."""
        if typed is _NONE:
            return 0
        try:
            value = percent_d(typed)
        except (DamoTextError, TypeError) as e:
            self.errors.append(f"{path}: {e}")
            return 0
        if not 0 <= value <= limit:
            self.errors.append(f"{path}: {value} is out of the kernel's range [0, {limit}]")
            return 0
        return value

    def number(self, node: dict, key: str, path: str, parser: Callable[[Any], Any],
               default: Any = _NONE, limit: int = ULONG_MAX) -> int:
        value = self.get(node, key, path, default)
        if value is _NONE:
            return 0
        return self.sysfs_int(self.parse(value, f"{path}.{key}", parser), f"{path}.{key}", limit)

    def raw_ns(self, parser: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``parser``, reading bare digit strings as nanoseconds in raw mode (see module doc)."""
        if not self.raw:
            return parser
        return lambda v: parser(f"{v.strip()} ns" if _is_digits(v) else v)

    def unimplemented(self, path: str, value: Any, default: Any) -> None:
        """Refuse a field damond does not implement unless it holds its default."""
        if value is not _NONE and value != default:
            self.errors.append(f"{path}: not implemented by damond (only {default!r} is accepted)")


def _is_digits(value: Any) -> bool:
    return isinstance(value, str) and _DIGITS.fullmatch(value.strip()) is not None


def _load_kdamond(ld: _Loader, node: Any, path: str) -> KdamondSpec:
    node = ld.section(node, path, "kdamond")
    if node is None:
        return KdamondSpec()
    refresh = node.get("refresh_ms", 0)
    ld.unimplemented(f"{path}.refresh_ms", ld.parse(refresh, f"{path}.refresh_ms", text_to_ms), 0)
    contexts = ld.required(node, "contexts", path, [])
    return KdamondSpec(contexts=[
        _load_context(ld, c, f"{path}.contexts[{i}]")
        for i, c in enumerate(ld.items(contexts, f"{path}.contexts"))
    ])


def _load_context(ld: _Loader, node: Any, path: str) -> ContextSpec:
    node = ld.section(node, path, "context")
    if node is None:
        return ContextSpec()
    ops = ld.required(node, "ops", path, "")
    if not isinstance(ops, str):
        ld.errors.append(f"{path}.ops: expected a string, got {ops!r}")
        ops = ""
    addr_unit = ld.parse(node.get("addr_unit", 1), f"{path}.addr_unit", text_to_bytes)
    ld.unimplemented(f"{path}.addr_unit", addr_unit, 1)
    _check_context_extras(ld, node, path)
    attrs, sample, aggr = _load_intervals(ld, node, path)
    _load_nr_regions(ld, node, path, attrs)
    targets = ld.required(node, "targets", path, [])
    schemes = node.get("schemes", [])
    return ContextSpec(
        ops=ops,
        attrs=attrs,
        targets=[_load_target(ld, t, f"{path}.targets[{i}]")
                 for i, t in enumerate(ld.items(targets, f"{path}.targets"))],
        schemes=[_load_scheme(ld, s, f"{path}.schemes[{i}]", sample, aggr)
                 for i, s in enumerate(ld.items(schemes, f"{path}.schemes"))],
    )


def _check_context_extras(ld: _Loader, node: dict, path: str) -> None:
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
    if pe is _NONE or ld.section(pe, pe_path, "primitives_enabled") is None:
        return
    for key, default in (("page_table", True), ("page_fault", False)):
        value = ld.get(pe, key, pe_path)
        if value is not _NONE:
            value = ld.parse(value, f"{pe_path}.{key}", text_to_bool)
        ld.unimplemented(f"{pe_path}.{key}", value, default)


def _load_intervals(ld: _Loader, node: dict, path: str) -> tuple[AttrsSpec, Any, Any]:
    """The intervals, plus sample/aggr as damo typed them (its unit conversions use those)."""
    attrs = AttrsSpec(update_us=1_000_000)  # damo's default update interval is 1 s, not 60 s
    sample: Any = 5000.0
    aggr: Any = 100000.0
    if "intervals" not in node:
        return attrs, sample, aggr
    ipath = f"{path}.intervals"
    iv = ld.section(node["intervals"], ipath, "intervals")
    if iv is None:
        return attrs, _NONE, _NONE
    typed = {}
    for key in ("sample_us", "aggr_us", "ops_update_us"):
        value = ld.get(iv, key, ipath)
        typed[key] = _NONE if value is _NONE else ld.parse(value, f"{ipath}.{key}", text_to_us)
    attrs.sample_us = ld.sysfs_int(typed["sample_us"], f"{ipath}.sample_us")
    attrs.aggr_us = ld.sysfs_int(typed["aggr_us"], f"{ipath}.aggr_us")
    attrs.update_us = ld.sysfs_int(typed["ops_update_us"], f"{ipath}.ops_update_us")
    if "intervals_goal" in iv:
        _check_intervals_goal(ld, iv["intervals_goal"], f"{ipath}.intervals_goal")
    return attrs, typed["sample_us"], typed["aggr_us"]


def _check_intervals_goal(ld: _Loader, node: Any, path: str) -> None:
    """Interval auto-tuning is off while ``aggrs`` is 0; damond implements only that."""
    goal = ld.section(node, path, "intervals_goal")
    if goal is None:
        return
    parsers = {"access_bp": text_to_bp, "aggrs": text_to_nr, "min_sample_us": text_to_us,
               "max_sample_us": text_to_us}
    values = {}
    for key, parser in parsers.items():
        value = ld.get(goal, key, path)
        values[key] = _NONE if value is _NONE else ld.parse(value, f"{path}.{key}", parser)
    ld.unimplemented(f"{path}.aggrs", values["aggrs"], 0)
    if values["aggrs"] == 0 and any(values[k] not in (0, _NONE) for k in parsers):
        ld.warnings.append(f"{path}: ignored, auto-tuning is disabled while aggrs is 0")


def _load_nr_regions(ld: _Loader, node: dict, path: str, attrs: AttrsSpec) -> None:
    if "nr_regions" not in node:
        return
    rpath = f"{path}.nr_regions"
    nr = ld.section(node["nr_regions"], rpath, "nr_regions")
    if nr is not None:
        attrs.min_nr_regions = ld.number(nr, "min", rpath, text_to_nr)
        attrs.max_nr_regions = ld.number(nr, "max", rpath, text_to_nr)


def _load_target(ld: _Loader, node: Any, path: str) -> TargetSpec:
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


def _load_scheme(ld: _Loader, node: Any, path: str, sample: Any, aggr: Any) -> SchemeSpec:
    node = ld.section(node, path, "scheme")
    if node is None:
        return SchemeSpec()
    action = node.get("action", "stat")
    if action not in _DAMO_ACTIONS:
        ld.errors.append(f"{path}.action: unknown action {action!r}")
    elif action not in ACTIONS:
        ld.errors.append(f"{path}.action: {action!r} is not implemented by damond")
    for key, default in (("dests", []), ("filters", []), ("target_nid", None)):
        ld.unimplemented(f"{path}.{key}", node.get(key, default), default)
    return SchemeSpec(
        action=action if action in ACTIONS else "stat",
        pattern=_load_access_pattern(ld, node, path, sample, aggr),
        quota=_load_quotas(ld, node, path),
        wmarks=_load_watermarks(ld, node, path),
        apply_interval_us=ld.number(node, "apply_interval_us", path, text_to_us, 0),
    )


def _load_access_pattern(ld: _Loader, node: dict, path: str, sample: Any,
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


def _range(ld: _Loader, node: dict, key: str, path: str) -> dict | None:
    """``{"min": .., "max": ..}`` of ``node[key]``, in that order, or None after an error."""
    value = ld.get(node, key, path)
    if value is _NONE or ld.section(value, f"{path}.{key}", "range") is None:
        return None
    lo, hi = ld.get(value, "min", f"{path}.{key}"), ld.get(value, "max", f"{path}.{key}")
    return None if _NONE in (lo, hi) else {"min": lo, "max": hi}


def _ulong(ld: _Loader, typed: Any, path: str) -> int:
    """damo's ``write_ulong``: ``'%d' % min(value, ULONG_MAX)``."""
    if typed is _NONE:
        return 0
    if isinstance(typed, (int, float)) and typed > ULONG_MAX:
        typed = ULONG_MAX
    return ld.sysfs_int(typed, path)


def _unit_pair(ld: _Loader, rng: dict, path: str, parser: Callable[[Any], Any],
               units: tuple[str, str]) -> tuple[str, list] | None:
    """damo's access-pattern parsing: both ends in ``units[0]`` via ``parser``, else both
    ``"<number> <unit>"`` with one same unit (``DamosAccessPattern.from_kvpairs``)."""
    try:
        return units[0], [parser(rng["min"]), parser(rng["max"])]
    except (DamoTextError, TypeError):
        pass
    try:
        (lo, lo_unit), (hi, hi_unit) = (_text_to_nr_unit(rng[k]) for k in ("min", "max"))
    except DamoTextError as e:
        ld.errors.append(f"{path}: {e}")
        return None
    if lo_unit != hi_unit or lo_unit not in units:
        ld.errors.append(f"{path}: min and max need one unit of {', '.join(units)}")
        return None
    return lo_unit, [lo, hi]


def _nr_accesses(ld: _Loader, rng: dict, path: str, sample: Any, aggr: Any) -> tuple[int, int]:
    parsed = _unit_pair(ld, rng, path, text_to_percent, ("percent", "samples"))
    if parsed is None:
        return 0, 0
    unit, values = parsed
    out = []
    for key, value in zip(("min", "max"), values, strict=True):
        if unit == "samples":
            typed = ld.parse(value, f"{path}.{key}", text_to_nr)
        else:
            typed = ld.parse(value, f"{path}.{key}", lambda v: _percent_to_samples(
                text_to_percent(v), sample, aggr))
        out.append(_ulong(ld, typed, f"{path}.{key}"))
    return out[0], out[1]


def _percent_to_samples(percent: Number, sample: Any, aggr: Any) -> Number:
    """``DamonNrAccesses.add_unset_unit``: ``int(percent * (aggr / sample) / 100)``."""
    if sample is _NONE or aggr is _NONE:
        raise DamoTextError("needs valid intervals to convert a percentage")
    if sample == 0:
        raise DamoTextError("a percentage needs a non-zero sample_us")
    value = percent * (aggr / sample) / 100
    return percent_d(value)


def _age(ld: _Loader, rng: dict, path: str, aggr: Any) -> tuple[int, int]:
    parsed = _unit_pair(ld, rng, path, ld.raw_ns(text_to_us), ("usec", "aggr_intervals"))
    if parsed is None:
        return 0, 0
    unit, values = parsed
    out = []
    for key, value in zip(("min", "max"), values, strict=True):
        if unit == "aggr_intervals":
            typed = ld.parse(value, f"{path}.{key}", text_to_nr)
        else:
            typed = ld.parse(value, f"{path}.{key}", lambda v: _usec_to_aggrs(
                text_to_us(v), aggr))
        out.append(_ulong(ld, typed, f"{path}.{key}"))
    return out[0], out[1]


def _usec_to_aggrs(usec: Number, aggr: Any) -> Number:
    """``DamonAge.add_unset_unit``: ``int(usec / aggr_us)``."""
    if aggr is _NONE:
        raise DamoTextError("needs valid intervals to convert a time")
    if aggr == 0:
        raise DamoTextError("a time needs a non-zero aggr_us")
    return percent_d(usec / aggr)


def _load_quotas(ld: _Loader, node: dict, path: str) -> QuotaSpec:
    qpath = f"{path}.quotas"
    if "quotas" not in node:
        return QuotaSpec(reset_interval_ms=ULONG_MAX)  # damo's DamosQuotas() default
    q = ld.section(node["quotas"], qpath, "quotas")
    if q is None:
        return QuotaSpec()
    ld.unimplemented(f"{qpath}.goals", q.get("goals", []), [])
    ld.unimplemented(f"{qpath}.goal_tuner", q.get("goal_tuner", "consist"), "consist")
    for key in ("fail_charge_num", "fail_charge_denom"):
        ld.unimplemented(f"{qpath}.{key}", ld.parse(q.get(key, 0), f"{qpath}.{key}", text_to_nr), 0)
    spec = QuotaSpec(
        ms=ld.number(q, "time_ms", qpath, ld.raw_ns(text_to_ms)),
        sz=ld.number(q, "sz_bytes", qpath, text_to_bytes),
        reset_interval_ms=ld.number(q, "reset_interval_ms", qpath, ld.raw_ns(text_to_ms)),
    )
    wpath = f"{qpath}.weights"
    weights = ld.get(q, "weights", qpath)
    if weights is not _NONE and ld.section(weights, wpath, "weights") is not None:
        spec.weight_sz = ld.number(weights, "sz_permil", wpath, text_to_permil, limit=UINT_MAX)
        spec.weight_nr_accesses = ld.number(weights, "nr_accesses_permil", wpath, text_to_permil,
                                            limit=UINT_MAX)
        spec.weight_age = ld.number(weights, "age_permil", wpath, text_to_permil, limit=UINT_MAX)
    return spec


def _load_watermarks(ld: _Loader, node: dict, path: str) -> WatermarksSpec:
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
    return (bool(strings) and all(_is_digits(v) for v in strings)
            and bool(addr_units) and all(_is_digits(a) for a in addr_units))


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
    ld = _Loader(is_raw)
    if isinstance(doc, dict):
        ld.warnings += [f"{key}: unknown key (ignored)" for key in doc if key != "kdamonds"]
    if is_raw and raw is None:
        ld.warnings.append(
            "raw form detected: bare numbers of age, quotas.time_ms, quotas.reset_interval_ms"
            " and watermarks.interval_us are read as nanoseconds, as damo --raw prints them")
    specs = [_load_kdamond(ld, kd, f"kdamonds[{i}]") for i, kd in enumerate(kdamonds)]
    if ld.errors:
        raise DamonError("EINVAL", "; ".join(ld.errors))
    return specs, ld.warnings


# ---------------------------------------------------------------------------------------------
# Dumping.


class _Dumper:
    """Chooses, for each value, damo's text if it loads back exactly, else an exact fallback."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.ld = _Loader(raw)

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
                return self.pick(value, self.ld.raw_ns(text_to_us), [_d(value * 1000)])
            return self.pick(value, text_to_us, [_d(value)])
        short = format_time_ns(value * 1000, False)
        return self.pick(value, text_to_us, ([] if exact else [short])
                         + [format_time_ns_exact(value * 1000, False)])

    def time_ms(self, value: int) -> Any:
        parser = self.ld.raw_ns(text_to_ms)
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
        "intervals_goal": {
            "access_bp": format_bp(0, d.raw), "aggrs": format_nr(0, d.raw),
            "min_sample_us": format_time_ns(0, d.raw), "max_sample_us": format_time_ns(0, d.raw),
        },
    }
    sample, aggr = text_to_us(intervals["sample_us"]), text_to_us(intervals["aggr_us"])
    has_pid = ctx.ops in ("vaddr", "fvaddr")
    return {
        "ops": ctx.ops,
        "addr_unit": "1" if d.raw else "1 B",
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
    return {
        "action": s.action,
        "dests": [],
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
            "goals": [],
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
        "filters": [],
    }


def _dump_nr_accesses(d: _Dumper, p: AccessPatternSpec, sample: Any, aggr: Any) -> dict:
    """Percentages as damo prints them when both ends convert back exactly, else samples."""

    def to_samples(v: Any) -> Number:
        return _percent_to_samples(text_to_percent(v), sample, aggr)

    picked = []
    for value in (p.min_nr_accesses, p.max_nr_accesses):
        candidates = ["0 %"] if value == 0 else ["max"]
        if sample and aggr and sample is not _NONE:
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
    parse = d.ld.raw_ns(text_to_us)

    def to_aggrs(v: Any) -> Number:
        return _usec_to_aggrs(parse(v), aggr)

    picked = []
    for value in (p.min_age, p.max_age):
        # "max" is what damo prints for the default (unbounded) age, in ns if raw
        candidates = [_d(ULONG_MAX * 1000) if d.raw else "max"] if value else []
        candidates.append(format_time_ns_exact(value * aggr_us * 1000, d.raw))
        picked.append(next((c for c in candidates if d.loads_to(c, to_aggrs, value, True)), None))
    if None not in picked:
        return {"min": picked[0], "max": picked[1]}
    return {k: f"{format_nr(v, d.raw)} aggr_intervals"
            for k, v in (("min", p.min_age), ("max", p.max_age))}


def dump_kdamonds(specs: list[KdamondSpec], *, fmt: str = "json", raw: bool = False) -> str:
    """Print specs as ``damo args damon --format json|yaml [--raw]`` does.

    The output loads back (here and in damo) to the same kernel values; see the module doc for
    where it departs from damo's own (lossy) number texts. Target ``ops_args`` (damond's own
    operation-set arguments) go to a ``damond_ops_args`` key damo ignores.
    """
    if fmt not in ("json", "yaml"):
        raise DamonError("EINVAL", f"unknown kdamonds format {fmt!r} (json or yaml)")
    d = _Dumper(raw)
    doc = {"kdamonds": [
        {"refresh_ms": 0, "contexts": [_dump_context(d, c) for c in kd.contexts]} for kd in specs
    ]}
    if fmt == "json":
        return json.dumps(doc, indent=4) + "\n"
    return yaml.dump(doc, Dumper=yaml.SafeDumper, default_flow_style=False, sort_keys=False)
