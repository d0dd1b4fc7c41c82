"""Declarative workloads for the ``sim`` operation set.

A workload is a few address ranges, each with the probability that one of its pages is
accessed during one sampling interval, optionally changing over time (phases), plus the size of
the simulated machine's memory so that ``free_mem_rate`` watermarks can be tried. It is plain
data (a dict, JSON or YAML) so that users can write one in a file or a control-socket command,
and it is reproducible from its seed.

Example (YAML)::

    seed: 7
    mem_total: 4G
    ranges:
      - {name: hot,  start: 0x10000000, size: 16M,  p: 0.9}
      - {name: warm, size: 64M, p: 0.2}        # placed 1 GiB after the previous range
      - {name: cold, size: 256M, p: 0}
    phases:
      - {at: 30, p: {hot: 0, cold: 0.9}}      # at 30 s the access pattern flips
      - {at: 60, other_used: 3G}              # other programs take memory: free rate drops
    lifetime_s: 120                            # the simulated process exits after 2 minutes
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from damond.errors import DamonError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
#: Where ranges without an explicit start begin, and the gap left between them: big gaps so
#: that the vaddr-like three-regions initialisation sees the ranges as separate mappings.
DEFAULT_BASE = 0x7F00_0000_0000
DEFAULT_GAP = 1 * GiB

_SIZE_RE = re.compile(r"^\s*(0[xX][0-9a-fA-F]+|\d+)\s*([KMGT]i?B?|B)?\s*$")
_UNITS = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1 << 40}


def parse_size(value: Any, what: str) -> int:
    """Bytes from an int or a string like ``16M``, ``1GiB``, ``0x1000`` or ``4096``."""
    if isinstance(value, bool):
        raise DamonError("EINVAL", f"{what}: {value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise DamonError("EINVAL", f"{what}: {value} is negative")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise DamonError("EINVAL", f"{what}: {value!r} is not a size (e.g. 4096, 16M, 1G)")
    number = int(m.group(1), 0)
    unit = (m.group(2) or "").upper()[:1]
    return number * _UNITS[unit]


def _parse_prob(value: Any, what: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise DamonError("EINVAL", f"{what}: {value!r} is not a probability") from None
    if not 0.0 <= p <= 1.0:
        raise DamonError("EINVAL", f"{what}: {p} is not within [0, 1]")
    return p


@dataclass
class SimRange:
    name: str
    start: int
    end: int
    #: Probability that a page of the range is accessed within one sampling interval.
    p: float


@dataclass
class SimPhase:
    at_s: float
    p: dict[str, float] = field(default_factory=dict)
    other_used: int | None = None


@dataclass
class SimWorkload:
    ranges: list[SimRange]
    phases: list[SimPhase] = field(default_factory=list)
    seed: int = 0
    mem_total: int = 4 * GiB
    #: Memory used by the rest of the simulated machine (counts against free_mem_rate).
    other_used: int = 0
    #: Seconds after which the simulated process is gone (None: it lives forever).
    lifetime_s: float | None = None

    def probabilities_at(self, t_s: float) -> list[float]:
        probs = {r.name: r.p for r in self.ranges}
        for ph in self.phases:
            if ph.at_s <= t_s:
                probs.update(ph.p)
        return [probs[r.name] for r in self.ranges]

    def other_used_at(self, t_s: float) -> int:
        used = self.other_used
        for ph in self.phases:
            if ph.at_s <= t_s and ph.other_used is not None:
                used = ph.other_used
        return used

    def mapped_ranges(self) -> list[tuple[int, int]]:
        return [(r.start, r.end) for r in self.ranges]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "seed": self.seed, "mem_total": self.mem_total, "other_used": self.other_used,
            "ranges": [{"name": r.name, "start": r.start, "size": r.end - r.start, "p": r.p}
                       for r in self.ranges],
            "phases": [_phase_dict(ph) for ph in self.phases],
        }
        if self.lifetime_s is not None:
            d["lifetime_s"] = self.lifetime_s
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimWorkload:
        if not isinstance(d, dict):
            raise DamonError("EINVAL", "a sim workload is a mapping with 'ranges'")
        unknown = set(d) - {"seed", "mem_total", "other_used", "ranges", "phases", "lifetime_s"}
        if unknown:
            raise DamonError("EINVAL", f"sim workload: unknown keys {sorted(unknown)}")
        ranges = _parse_ranges(d.get("ranges"))
        names = {r.name for r in ranges}
        phases = [_parse_phase(ph, i, names) for i, ph in enumerate(d.get("phases") or [])]
        lifetime = d.get("lifetime_s")
        return cls(
            ranges=ranges, phases=sorted(phases, key=lambda ph: ph.at_s),
            seed=int(d.get("seed", 0)),
            mem_total=parse_size(d.get("mem_total", 4 * GiB), "mem_total") or 1,
            other_used=parse_size(d.get("other_used", 0), "other_used"),
            lifetime_s=None if lifetime is None else float(lifetime))


def _phase_dict(ph: SimPhase) -> dict[str, Any]:
    d: dict[str, Any] = {"at": ph.at_s}
    if ph.p:
        d["p"] = dict(ph.p)
    if ph.other_used is not None:
        d["other_used"] = ph.other_used
    return d


def _parse_ranges(raw) -> list[SimRange]:
    if not raw or not isinstance(raw, list):
        raise DamonError("EINVAL", "sim workload: 'ranges' must be a non-empty list")
    ranges: list[SimRange] = []
    next_start = DEFAULT_BASE
    for i, r in enumerate(raw):
        what = f"sim workload range {i}"
        if not isinstance(r, dict):
            raise DamonError("EINVAL", f"{what}: must be a mapping")
        start = parse_size(r["start"], what + " start") if "start" in r else next_start
        if "end" in r:
            end = parse_size(r["end"], what + " end")
        elif "size" in r:
            end = start + parse_size(r["size"], what + " size")
        else:
            raise DamonError("EINVAL", f"{what}: needs 'size' or 'end'")
        if end <= start:
            raise DamonError("EINVAL", f"{what}: end must be above start")
        if ranges and start < ranges[-1].end:
            raise DamonError("EINVAL", f"{what}: ranges must be sorted and not overlap")
        name = str(r.get("name", f"range{i}"))
        if any(x.name == name for x in ranges):
            raise DamonError("EINVAL", f"{what}: duplicate name {name!r}")
        ranges.append(SimRange(name, start, end, _parse_prob(r.get("p", 0.0), what + " p")))
        next_start = end + DEFAULT_GAP
    return ranges


def _parse_phase(raw, i: int, names: set[str]) -> SimPhase:
    what = f"sim workload phase {i}"
    if not isinstance(raw, dict) or "at" not in raw:
        raise DamonError("EINVAL", f"{what}: must be a mapping with 'at' (seconds)")
    probs = raw.get("p") or {}
    if not isinstance(probs, dict) or set(probs) - names:
        raise DamonError("EINVAL", f"{what}: 'p' must map range names ({sorted(names)}) to "
                         "probabilities")
    other = raw.get("other_used")
    return SimPhase(
        at_s=float(raw["at"]),
        p={k: _parse_prob(v, f"{what} p[{k}]") for k, v in probs.items()},
        other_used=None if other is None else parse_size(other, what + " other_used"))


def default_workload(seed: int = 0) -> SimWorkload:
    """What a ``sim`` target without a workload gets: a hot, a warm and a cold range, laid out
    as three mappings separated by large gaps, on a 4 GiB machine."""
    return SimWorkload.from_dict({
        "seed": seed,
        "ranges": [
            {"name": "hot", "size": 16 * MiB, "p": 0.9},
            {"name": "warm", "size": 64 * MiB, "p": 0.2},
            {"name": "cold", "size": 256 * MiB, "p": 0.0},
        ],
    })
