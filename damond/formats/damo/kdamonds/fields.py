"""Reading a parsed kdamonds document field by field, the way damo reads it.

Every field read goes through a :class:`FieldReader`: it knows the keys damo 3.4.3 knows in each
section, damo's defaults for missing fields, and how damo writes a parsed number to sysfs. It
does not stop at the first problem: it records every refusal and warning with the path of its
field (``kdamonds[0].contexts[0].schemes[1].quotas.sz_bytes``), so that one error names all of
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from damond.core.spec import ULONG_MAX
from damond.formats.damo.kdamonds.convert import UNSET, percent_d, raw_ns
from damond.formats.damo.units import DamoTextError

#: The keys damo 3.4.3 knows in each kind of section; any other key is refused (a misspelt key
#: would otherwise silently leave its field at the default).
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "top": ("kdamonds",),
    "kdamond": ("state", "pid", "refresh_ms", "contexts"),
    "context": ("ops", "addr_unit", "targets", "intervals", "nr_regions", "probes",
                "sample_control", "pause", "schemes", "damond_offload"),
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
    "filter": ("filter_type", "matching", "allow", "filter_pass", "memcg_path", "address_range",
               "damon_target_idx", "hugepage_size", "probe_hits_wsum_range"),
    "goal": ("metric", "complement", "nid", "memcg_path", "target_value", "current_value",
             "target_value_bp", "current_value_bp"),
    "dest": ("id", "weight"),
}


class FieldReader:
    """Walks one parsed document, collecting refusals and warnings with the path of each field.

    ``raw``: the document is ``damo --raw`` output (bare nanoseconds in some fields).
    """

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def section(self, node: Any, path: str, kind: str) -> dict | None:
        """``node`` as a dict whose unknown keys are refused; None (with an error) otherwise."""
        if not isinstance(node, dict):
            self.errors.append(f"{path}: expected a mapping, got {type(node).__name__}")
            return None
        for key in node:
            if key not in KNOWN_KEYS[kind]:
                self.errors.append(f"{path}.{key}: unknown key (damo 3.4.3 has no such field)")
        return node

    def items(self, node: Any, path: str) -> list:
        """``node`` as a list; an empty one (with an error) otherwise."""
        if not isinstance(node, list):
            self.errors.append(f"{path}: expected a list, got {type(node).__name__}")
            return []
        return node

    def get(self, node: dict, key: str, path: str, default: Any = UNSET) -> Any:
        """``node[key]``; damo's default when it has one, else a 'missing' error (returns UNSET)."""
        if key in node:
            return node[key]
        if default is UNSET:
            self.errors.append(f"{path}.{key}: missing (damo requires it)")
        return default

    def required(self, node: dict, key: str, path: str, fallback: Any) -> Any:
        """``node[key]``, or ``fallback`` after a 'missing' error: damo has no default for it."""
        value = self.get(node, key, path)
        return fallback if value is UNSET else value

    def parse(self, value: Any, path: str, parser: Callable[[Any], Any]) -> Any:
        """``parser(value)``, or UNSET after recording why damo would not take it."""
        try:
            return parser(value)
        except DamoTextError as e:
            self.errors.append(f"{path}: {e}")
        except (TypeError, ZeroDivisionError, OverflowError) as e:
            self.errors.append(f"{path}: cannot convert {value!r} ({e})")
        return UNSET

    def sysfs_int(self, typed: Any, path: str, limit: int = ULONG_MAX) -> int:
        """The integer damo writes (``'%d' % typed``), checked against the kernel's range."""
        if typed is UNSET:
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
               default: Any = UNSET, limit: int = ULONG_MAX) -> int:
        """The integer damo writes for ``node[key]`` (0 after an error)."""
        value = self.get(node, key, path, default)
        if value is UNSET:
            return 0
        return self.sysfs_int(self.parse(value, f"{path}.{key}", parser), f"{path}.{key}", limit)

    def raw_ns(self, parser: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``parser``, reading bare digit strings as nanoseconds in raw mode (see package doc)."""
        return raw_ns(parser, self.raw)

    def unimplemented(self, path: str, value: Any, default: Any) -> None:
        """Refuse a field damond does not implement unless it holds its default."""
        if value is not UNSET and value != default:
            self.errors.append(f"{path}: not implemented by damond (only {default!r} is accepted)")
