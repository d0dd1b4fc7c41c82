"""Prometheus metrics: the daemon's state, collected at scrape time by a prometheus_client
``Collector`` and rendered by prometheus_client (the text exposition format 0.0.4, or OpenMetrics
when a scraper asks for it over HTTP), so the format's escaping and number forms are the
library's, not ours.

:class:`DamondCollector` reads the kdamonds' own counters and their running contexts directly
(the scheme stats come from the schemes themselves, not from the sysfs ``stats`` files, which
change only on ``update_schemes_stats``). Reading is safe without asking the kdamonds: the
collector runs in the one trio thread they share, and they change their state only inside their
own steps. Collecting costs a percentile over a bounded window per kdamond, so a scrape cannot
slow sampling noticeably.

The same metrics are shown three ways: the ``metrics`` protocol command
(``Daemon.metrics_text``), a file for node_exporter's textfile collector
(:mod:`damond.service.metrics_textfile`) and ``GET /metrics``
(:mod:`damond.service.metrics_http`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from damond import __version__

if TYPE_CHECKING:
    from damond.scheduler import Kdamond
    from damond.service.daemon import Daemon

#: the exposition format's media type (what node_exporter and Prometheus expect)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
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
_KINDS = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}


class _Families:
    """The families of one collection, in first-use order; ``fam(name, kind, help)`` returns a
    function adding one sample with keyword labels (every sample of a family has the same label
    names, fixed by its first sample)."""

    def __init__(self) -> None:
        self.by_name: dict[str, tuple[Metric, list[str]]] = {}

    def __call__(self, name: str, kind: str, help_: str) -> Callable[..., None]:
        def add(value: float, **labels: str) -> None:
            if name not in self.by_name:
                self.by_name[name] = (_KINDS[kind](name, help_, labels=list(labels)),
                                      list(labels))
            family, names = self.by_name[name]
            family.add_metric([labels[k] for k in names], value)

        return add

    def families(self) -> list[Metric]:
        return [family for family, _ in self.by_name.values()]


class DamondCollector(Collector):
    """Collects one daemon's metrics when asked (at each scrape, command or file write)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterable[Metric]:
        fam = _Families()
        _collect(self.daemon, fam)
        return fam.families()


def registry_for(daemon: Daemon) -> CollectorRegistry:
    """A registry holding only ``daemon``'s collector (not the library's global one, which
    would add this process's Python metrics and outlive the daemon)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DamondCollector(daemon))
    return registry


def render_metrics(daemon: Daemon) -> str:
    """The daemon's metrics in the Prometheus text exposition format 0.0.4."""
    return generate_latest(registry_for(daemon)).decode()


def _collect(daemon: Daemon, fam: _Families) -> None:
    fam("damond_build_info", "gauge", "damond's version")(1, version=__version__)
    fam("damond_start_time_seconds", "gauge",
        "When the daemon started (seconds since the epoch)")(_STARTED)
    _render_config(daemon, fam)
    running = fam("damond_kdamond_running", "gauge", "Whether the kdamond is running (0 or 1)")
    for label, is_running, kd in _kdamonds(daemon):
        running(int(is_running), kdamond=label)
        if kd is not None:
            _render_kdamond(fam, label, kd)


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


def _render_config(daemon: Daemon, fam: _Families) -> None:
    manager = daemon.config_manager
    if manager is None or manager.path is None:
        return
    s = manager.stats
    fam("damond_config_last_reload_successful", "gauge",
        "Whether the last configuration reload succeeded")(int(s.last_ok))
    fam("damond_config_last_reload_success_timestamp_seconds", "gauge",
        "When a configuration was last applied successfully")(s.last_success_time)
    reloads = fam("damond_config_reloads_total", "counter", "Configuration reloads by result")
    reloads(s.succeeded, result="success")
    reloads(s.failed, result="failure")


def _render_budget(fam: _Families, label: str, kd: Kdamond) -> None:
    """The monitoring budget (``damond.core.budget``): what it allows, what it costs, and the
    intervals in force. Kdamonds the kernel runs (offload) have none."""
    if getattr(kd, "budget_status", None) is None:
        return
    b = kd.budget_status()
    fam("damond_kdamond_cpu_budget_ratio", "gauge",
        "The kdamond's CPU budget, a share of one CPU (0: disabled)")(kd.cpu_budget,
                                                                      kdamond=label)
    fam("damond_kdamond_effective_sample_seconds", "gauge",
        "Sampling interval in force (the configured one stretched by the budget)")(
        kd.effective_sample_us() / 1e6, kdamond=label)
    fam("damond_kdamond_effective_aggregation_seconds", "gauge",
        "Aggregation interval in force (the configured one stretched by the budget)")(
        kd.effective_aggr_us() / 1e6, kdamond=label)
    fam("damond_kdamond_cpu_share_ratio", "gauge",
        "The kdamond's CPU share over its last budget window")(b["cpu_share"], kdamond=label)
    fam("damond_kdamond_charged_share_ratio", "gauge",
        "The share charged to the budget over its last window (target slowdown included)")(
        b["charged_share"], kdamond=label)
    fam("damond_kdamond_budget_exceeded_total", "counter",
        "Budget windows whose charged share exceeded the budget")(b["exceeded"], kdamond=label)
    if getattr(kd, "sampler_status", None) is not None:
        sm = kd.sampler_status()
        fam("damond_kdamond_sampler_info", "gauge",
            "Which sampler runs the kdamond's samples (native, python or per-sample) and where "
            "(worker-thread or event-loop)")(
            1, kdamond=label, kind=sm["kind"], where=sm["where"])


def _render_kdamond(fam: _Families, label: str, kd: Kdamond) -> None:
    s = kd.stats
    fam("damond_kdamond_samples_total", "counter",
        "Sampling intervals the kdamond completed")(s.samples, kdamond=label)
    fam("damond_kdamond_aggregations_total", "counter",
        "Aggregation intervals the kdamond completed")(s.aggregations, kdamond=label)
    fam("damond_kdamond_overruns_total", "counter",
        "Samples that started after their next deadline had passed")(s.overruns, kdamond=label)
    fam("damond_kdamond_watermark_waits_total", "counter",
        "Watermark checks that found every scheme inactive")(s.wmark_waits, kdamond=label)
    fam("damond_kdamond_cpu_seconds_total", "counter",
        "CPU time of the kdamond's own work")(s.cpu_ns / 1e9, kdamond=label)
    fam("damond_kdamond_busy_seconds_total", "counter",
        "Wall-clock time of the kdamond's own work")(s.busy_ns / 1e9, kdamond=label)
    lateness = fam("damond_kdamond_sample_lateness_seconds", "gauge",
                   f"Sampling lateness over the last {LATENESS_SAMPLES} samples, by quantile")
    recent = s.percentiles(s.recent_lateness(LATENESS_SAMPLES), LATENESS_PERCENTILES)
    for p, value in zip(LATENESS_PERCENTILES, recent, strict=True):
        lateness(value, kdamond=label, quantile=floatToGoString(p / 100))
    _render_budget(fam, label, kd)
    if not kd.running:
        fam("damond_kdamond_stop_info", "gauge",
            "Why the kdamond's last run stopped (reason label; present while it is stopped)")(
            1, kdamond=label, reason=kd.stop_reason or "stopped")
        return
    ctx = kd.ctx
    regions = fam("damond_kdamond_regions", "gauge", "Monitoring regions of each target")
    for t, target in enumerate(ctx.targets):
        regions(target.nr_regions, kdamond=label, target=str(t))
    for i, scheme in enumerate(ctx.schemes):
        labels = {"kdamond": label, "scheme": str(i)}
        for attr, name, help_ in SCHEME_COUNTERS:
            fam(name, "counter", help_)(getattr(scheme.stats, attr), **labels)
        fam("damond_scheme_quota_effective_bytes", "gauge",
            "The scheme's effective size quota (0: no size quota)")(scheme.quota.esz, **labels)
        fam("damond_scheme_active", "gauge",
            "Whether the scheme's watermarks let it act")(int(scheme.wmark_activated), **labels)
