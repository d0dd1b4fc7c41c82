"""Prometheus metrics: the daemon's state rendered in the text exposition format 0.0.4.

:func:`render_metrics` reads the kdamonds' own counters and their running contexts directly
(the scheme stats come from the schemes themselves, not from the sysfs ``stats`` files, which
change only on ``update_schemes_stats``). Reading is safe without asking the kdamonds: they
share the one trio thread and change their state only inside their own steps. Rendering costs
a percentile over a bounded window per kdamond, so a scrape cannot slow sampling noticeably.

The same text is shown three ways: the ``metrics`` protocol command (``Daemon.metrics_text``),
a file for node_exporter's textfile collector (:mod:`damond.service.metrics_textfile`) and
``GET /metrics`` (:mod:`damond.service.metrics_http`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from damond import __version__

if TYPE_CHECKING:
    from damond.scheduler import Kdamond
    from damond.service.daemon import Daemon

#: the exposition format's media type (what node_exporter and Prometheus expect)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: lateness percentiles cover this many recent samples (10 s at the default 5 ms sampling)
LATENESS_SAMPLES = 2000
#: shown as the ``quantile`` label (percentile / 100: 0.5, 0.99)
LATENESS_PERCENTILES = (50, 99)
#: the scheme counters: (stats field, metric name, help)
SCHEME_COUNTERS = (
    ("nr_tried", "damond_scheme_nr_tried_total",
     "Regions the scheme's action was tried on"),
    ("sz_tried", "damond_scheme_sz_tried_bytes_total",
     "Bytes of regions the scheme's action was tried on"),
    ("nr_applied", "damond_scheme_nr_applied_total",
     "Regions the scheme's action was applied to"),
    ("sz_applied", "damond_scheme_sz_applied_bytes_total",
     "Bytes the scheme's action was applied to"),
    ("qt_exceeds", "damond_scheme_qt_exceeds_total",
     "Times the scheme's quota was exceeded"),
)
#: process start, for damond_start_time_seconds
_STARTED = time.time()


# --------------------------------------------------------------------------------------------
# The text format
# --------------------------------------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class Family:
    """One metric family: its HELP and TYPE lines and its samples."""

    name: str
    type: str
    help: str
    samples: list[tuple[dict[str, str], float | int]] = field(default_factory=list)

    def add(self, value: float | int, **labels: str) -> None:
        self.samples.append((labels, value))

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.type}"
        for labels, value in self.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                yield f"{self.name}{{{inner}}} {format_value(value)}"
            else:
                yield f"{self.name} {format_value(value)}"


class _Families:
    def __init__(self) -> None:
        self.by_name: dict[str, Family] = {}

    def __call__(self, name: str, type_: str, help_: str) -> Family:
        fam = self.by_name.get(name)
        if fam is None:
            fam = self.by_name[name] = Family(name, type_, help_)
        return fam

    def text(self) -> str:
        return "".join(line + "\n" for fam in self.by_name.values() for line in fam.lines())


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _kdamonds(daemon: Daemon) -> list[tuple[str, bool, Kdamond | None]]:
    """(label, running, kdamond object) of every kdamond: the sysfs tree's by index (stopped
    ones too, with the counters of their last run), then other interfaces' running ones."""
    out: list[tuple[str, bool, Kdamond | None]] = []
    seen = set()
    for i, kd in enumerate(daemon.sysfs.kdamonds):
        out.append((str(i), kd.running, kd.kdamond))
        if kd.kdamond is not None:
            seen.add(id(kd.kdamond))
    for kd in daemon.scheduler.running:
        if id(kd) not in seen:
            out.append((f"{kd.group}.{kd.index}", kd.running, kd))
    return out


def render_metrics(daemon: Daemon) -> str:
    """The daemon's metrics in the Prometheus text exposition format."""
    fam = _Families()
    fam("damond_build_info", "gauge", "damond's version").add(1, version=__version__)
    fam("damond_start_time_seconds", "gauge",
        "When the daemon started (seconds since the epoch)").add(_STARTED)
    _render_config(daemon, fam)
    running = fam("damond_kdamond_running", "gauge", "Whether the kdamond is running (0 or 1)")
    for label, is_running, kd in _kdamonds(daemon):
        running.add(int(is_running), kdamond=label)
        if kd is not None:
            _render_kdamond(fam, label, kd)
    return fam.text()


def _render_config(daemon: Daemon, fam: _Families) -> None:
    manager = daemon.config_manager
    if manager is None or manager.path is None:
        return
    s = manager.stats
    fam("damond_config_last_reload_successful", "gauge",
        "Whether the last configuration reload succeeded").add(int(s.last_ok))
    fam("damond_config_last_reload_success_timestamp_seconds", "gauge",
        "When a configuration was last applied successfully").add(s.last_success_time)
    reloads = fam("damond_config_reloads_total", "counter", "Configuration reloads by result")
    reloads.add(s.succeeded, result="success")
    reloads.add(s.failed, result="failure")


def _render_kdamond(fam: _Families, label: str, kd: Kdamond) -> None:
    s = kd.stats
    fam("damond_kdamond_samples_total", "counter",
        "Sampling intervals the kdamond completed").add(s.samples, kdamond=label)
    fam("damond_kdamond_aggregations_total", "counter",
        "Aggregation intervals the kdamond completed").add(s.aggregations, kdamond=label)
    fam("damond_kdamond_overruns_total", "counter",
        "Samples that started after their next deadline had passed").add(s.overruns,
                                                                         kdamond=label)
    fam("damond_kdamond_watermark_waits_total", "counter",
        "Watermark checks that found every scheme inactive").add(s.wmark_waits, kdamond=label)
    fam("damond_kdamond_cpu_seconds_total", "counter",
        "CPU time of the kdamond's own work").add(s.cpu_ns / 1e9, kdamond=label)
    fam("damond_kdamond_busy_seconds_total", "counter",
        "Wall-clock time of the kdamond's own work").add(s.busy_ns / 1e9, kdamond=label)
    lateness = fam("damond_kdamond_sample_lateness_seconds", "gauge",
                   f"Sampling lateness over the last {LATENESS_SAMPLES} samples, by quantile")
    recent = s.percentiles(s.recent_lateness(LATENESS_SAMPLES), LATENESS_PERCENTILES)
    for p, value in zip(LATENESS_PERCENTILES, recent, strict=True):
        lateness.add(value, kdamond=label, quantile=format_value(p / 100))
    if not kd.running:
        return
    ctx = kd.ctx
    regions = fam("damond_kdamond_regions", "gauge", "Monitoring regions of each target")
    for t, target in enumerate(ctx.targets):
        regions.add(target.nr_regions, kdamond=label, target=str(t))
    for i, scheme in enumerate(ctx.schemes):
        labels = {"kdamond": label, "scheme": str(i)}
        for attr, name, help_ in SCHEME_COUNTERS:
            fam(name, "counter", help_).add(getattr(scheme.stats, attr), **labels)
        fam("damond_scheme_quota_effective_bytes", "gauge",
            "The scheme's effective size quota (0: no size quota)").add(scheme.quota.esz,
                                                                         **labels)
        fam("damond_scheme_active", "gauge",
            "Whether the scheme's watermarks let it act").add(int(scheme.wmark_activated),
                                                                **labels)
