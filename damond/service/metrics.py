"""Prometheus metrics: rendered from the live daemon, exported three ways.

:func:`render_metrics` reads the kdamonds' own counters and their running contexts directly
(the scheme stats come from the schemes themselves, not from the sysfs ``stats`` files, which
change only on ``update_schemes_stats``) and prints the text exposition format 0.0.4. Reading
is safe without asking the kdamonds: they share the one trio thread and change their state only
inside their own steps. Rendering costs a percentile over a bounded window per kdamond, so a
scrape cannot slow sampling noticeably.

The same text is served by the ``metrics`` protocol command, written for node_exporter's
textfile collector (:func:`textfile_exporter`: temporary file and rename, so the collector
never reads half a file) and served over HTTP (:func:`serve_metrics_http`: ``GET /metrics``).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
import structlog
import trio

from damond import __version__

if TYPE_CHECKING:
    from damond.scheduler import Kdamond
    from damond.service.daemon import Daemon

log = structlog.get_logger("damond.service.metrics")

#: the exposition format's media type (what node_exporter and Prometheus expect)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: lateness percentiles cover this many recent samples (10 s at the default 5 ms sampling)
LATENESS_SAMPLES = 2000
LATENESS_QUANTILES = (0.5, 0.99)
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
    from damond.service.config import manager_of

    manager = manager_of(daemon)
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


def _recent_lateness(kd: Kdamond) -> list[float]:
    """The lateness quantiles of the last ``LATENESS_SAMPLES`` samples, in seconds (walking
    only those, not the whole kept history)."""
    kept = kd.stats.lateness_s
    n = min(len(kept), LATENESS_SAMPLES)
    if not n:
        return [0.0] * len(LATENESS_QUANTILES)
    values = np.fromiter(islice(reversed(kept), n), dtype=np.float64, count=n)
    return [float(v) for v in np.quantile(values, LATENESS_QUANTILES)]


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
    for q, value in zip(LATENESS_QUANTILES, _recent_lateness(kd), strict=True):
        lateness.add(value, kdamond=label, quantile=format_value(q))
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


# --------------------------------------------------------------------------------------------
# node_exporter textfile
# --------------------------------------------------------------------------------------------


def write_textfile(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a reader sees the old or the new file.

    The temporary file is in the same directory (rename is atomic only within a file system)
    and does not end in ``.prom``, so the collector never picks it up.
    """
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # not subject to the umask: node_exporter runs as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def textfile_exporter(daemon: Daemon, path: str, interval_s: float,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
    """Write the metrics to ``path`` now and every ``interval_s``; a last time when cancelled
    (so the file does not claim kdamonds run after the daemon stopped).

    The first write happens before reporting started: a path that cannot be written is a
    startup error. Later failures are logged (once per distinct error) and retried.
    """
    await trio.to_thread.run_sync(write_textfile, path, render_metrics(daemon))
    task_status.started()
    last_error = None
    try:
        while True:
            await trio.sleep(interval_s)
            try:
                await trio.to_thread.run_sync(write_textfile, path, render_metrics(daemon))
                last_error = None
            except OSError as e:
                if str(e) != last_error:
                    log.warning("metrics textfile not written", path=path, error=str(e))
                    last_error = str(e)
    finally:
        with trio.CancelScope(shield=True):
            try:
                write_textfile(path, render_metrics(daemon))
            except OSError as e:
                log.warning("metrics textfile not written", path=path, error=str(e))


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

#: a request head larger than this is refused (a scraper sends a few hundred bytes)
MAX_REQUEST_HEAD = 8192
#: a client has this long to send its request and take the answer
HTTP_TIMEOUT_S = 10.0
#: connections handled at once; more are closed at once (a scrape endpoint needs few)
MAX_HTTP_CLIENTS = 32
#: after answering, unread request bytes are drained for this long (up to LINGER_BYTES) so
#: that closing does not reset the connection before the client has read the answer
LINGER_S = 1.0
LINGER_BYTES = 1 << 20


def parse_listen(text: str) -> tuple[str | None, int]:
    """``HOST:PORT`` (``[v6]:PORT``; an empty host means every address) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-listen: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port)


def _response(status: str, body: bytes, content_type: str, *, head: bool = False,
              extra: str = "") -> bytes:
    header = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return header.encode("ascii") + (b"" if head else body)


def http_answer(daemon: Daemon, head: bytes) -> bytes:
    """The whole HTTP response to a request head (everything up to the empty line)."""
    try:
        request_line = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("ascii")
        method, target, version = request_line.split(" ")
    except (UnicodeDecodeError, ValueError):
        return _response("400 Bad Request", b"bad request\n", "text/plain")
    if not version.startswith("HTTP/"):
        return _response("400 Bad Request", b"bad request\n", "text/plain")
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"only GET and HEAD\n", "text/plain",
                         extra="Allow: GET, HEAD\r\n")
    path = target.split("?", 1)[0]
    is_head = method == "HEAD"
    if path == "/metrics":
        return _response("200 OK", render_metrics(daemon).encode(), CONTENT_TYPE, head=is_head)
    if path == "/":
        body = b"damond: metrics at /metrics\n"
        return _response("200 OK", body, "text/plain; charset=utf-8", head=is_head)
    return _response("404 Not Found", b"not found; try /metrics\n", "text/plain", head=is_head)


async def _read_head(stream: trio.abc.Stream) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_REQUEST_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return data if data else b""
        data += chunk
    return data


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close, then read what the client still sends: closing a socket with unread data
    makes the kernel send a reset, which can destroy the answer in flight."""
    await stream.send_eof()
    drained = 0
    with trio.move_on_after(LINGER_S):
        while drained < LINGER_BYTES and (chunk := await stream.receive_some(65536)):
            drained += len(chunk)


class _HttpServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.clients = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        """Answer one request and close. Never raises: a client's trouble ends that client."""
        try:
            if self.clients >= MAX_HTTP_CLIENTS:
                return
            self.clients += 1
            try:
                with trio.move_on_after(HTTP_TIMEOUT_S):
                    head = await _read_head(stream)
                    if head is None:
                        answer = _response("431 Request Header Fields Too Large",
                                           b"request head too large\n", "text/plain")
                    elif not head:
                        return
                    else:
                        answer = http_answer(self.daemon, head)
                    await stream.send_all(answer)
                    await _linger(stream)
            finally:
                self.clients -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            log.exception("metrics HTTP client failed")
        finally:
            await trio.aclose_forcefully(stream)


async def serve_metrics_http(daemon: Daemon, *, listen: str | None = None,
                             sock: socket.socket | None = None,
                             task_status: trio.TaskStatus[list[tuple]] = trio.TASK_STATUS_IGNORED
                             ) -> None:
    """Serve ``GET /metrics`` on ``listen`` (``HOST:PORT``) or an already-listening ``sock``
    (socket activation) until cancelled; reports the bound addresses once listening."""
    if sock is not None:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    else:
        host, port = parse_listen(listen or "")
        listeners = await trio.open_tcp_listeners(port, host=host)
    addresses = [lst.socket.getsockname() for lst in listeners]
    server = _HttpServer(daemon)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.handle, listeners)
        log.info("metrics endpoint listening", addresses=[list(a[:2]) for a in addresses])
        task_status.started(addresses)
