"""Prometheus metrics: the text format, live counters, the textfile exporter (atomic) and the
HTTP endpoint."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import socket
import stat
import threading
import time
import urllib.error
import urllib.request

import pytest

from damond.control.protocol import unescape_data_line
from damond.service.metrics import _Families
from damond.service.metrics_http import http_answer, parse_listen
from damond.service.metrics_textfile import write_textfile
from tests.service.conftest import PAGEOUT_COLD, base_env, sim_kdamond, write_config

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)$")
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    """A strict reader of the text exposition format 0.0.4 (what Prometheus' own parser
    insists on): every family has HELP and TYPE before its samples, once; every sample line
    parses; counters end in ``_total``; no family is split."""
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[tuple[str, frozenset], float] = {}
    closed: set[str] = set()
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped, f"second HELP for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            assert name not in typed, f"second TYPE for {name}"
            assert name in helped, f"TYPE before HELP for {name}"
            typed[name] = kind
            if current is not None:
                closed.add(current)
            current = name
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        assert name == current and name not in closed, f"{name} outside its family"
        if typed[name] == "counter":
            assert name.endswith("_total"), name
        pairs = frozenset(_LABEL_PAIR.findall(labels or ""))
        assert (name, pairs) not in samples, f"duplicate sample {line!r}"
        samples[(name, pairs)] = float(value)
    try:  # Prometheus' own parser too, when it is installed
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pass
    else:
        assert list(text_string_to_metric_families(text))
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _metrics(d) -> str:
    with d.conn() as c:
        lines = c.ok("metrics")
    return "".join(unescape_data_line(line) + "\n" for line in lines)


def test_metrics_command_parses_and_counters_grow(serve, notify, config_path):
    write_config(config_path, [sim_kdamond(seed=4, schemes=[PAGEOUT_COLD])])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    # the wire escapes "# " lines; the client (Conn.ok keeps them escaped) must unescape
    with d.conn() as c:
        raw = c.ok("metrics")
    assert raw[0].startswith("\\# HELP ")
    time.sleep(0.5)
    first = parse_exposition(_metrics(d))
    time.sleep(0.6)
    second = parse_exposition(_metrics(d))
    k0 = {"kdamond": "0"}
    s0 = {"kdamond": "0", "scheme": "0"}
    assert value(second, "damond_kdamond_running", **k0) == 1
    for name in ("damond_kdamond_samples_total", "damond_kdamond_aggregations_total",
                 "damond_kdamond_cpu_seconds_total"):
        assert value(second, name, **k0) > value(first, name, **k0) > 0, name
    assert value(second, "damond_kdamond_overruns_total", **k0) >= 0
    assert value(second, "damond_kdamond_regions", kdamond="0", target="0") >= 10
    for q in ("0.5", "0.99"):
        late = value(second, "damond_kdamond_sample_lateness_seconds", quantile=q, **k0)
        assert 0 <= late < 1
    # live scheme stats (the sysfs stats files are never refreshed in this test)
    assert value(second, "damond_scheme_nr_tried_total", **s0) > 0
    assert value(second, "damond_scheme_sz_applied_bytes_total", **s0) >= value(
        first, "damond_scheme_sz_applied_bytes_total", **s0)
    assert value(second, "damond_scheme_qt_exceeds_total", **s0) == 0
    with d.conn() as c:
        assert c.value("kdamonds/0/contexts/0/schemes/0/stats/nr_tried") == "0"
    assert value(second, "damond_config_last_reload_successful") == 1


def test_stopped_kdamond_is_not_running_but_keeps_its_counters(serve, notify, config_path):
    write_config(config_path, [sim_kdamond()])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    with d.conn() as c:
        c.ok("echo off > kdamonds/0/state")
    m = parse_exposition(_metrics(d))
    assert value(m, "damond_kdamond_running", kdamond="0") == 0
    assert value(m, "damond_kdamond_samples_total", kdamond="0") > 0
    assert not any(name == "damond_kdamond_regions" for name, _ in m)


def test_textfile_exporter_writes_atomically(serve, notify, config_path, tmp_path):
    directory = tmp_path / "textfile"
    directory.mkdir()
    path = directory / "damond.prom"
    write_config(config_path, [sim_kdamond(), sim_kdamond(seed=1)])
    d = serve("--metrics-textfile", str(path), "--metrics-interval", "0.05",
              config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    # written before READY, world-readable for node_exporter
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    inodes, seen_samples = [], []
    stray: set[str] = set()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        with open(path) as f:
            inodes.append(os.fstat(f.fileno()).st_ino)
            text = f.read()
        m = parse_exposition(text)  # never a torn file
        seen_samples.append(value(m, "damond_kdamond_samples_total", kdamond="1"))
        stray |= {n for n in os.listdir(directory) if n.endswith(".prom") and n != "damond.prom"}
    assert not stray  # the temporary file never looks like a .prom file
    replaced = sum(1 for a, b in zip(inodes, inodes[1:], strict=False) if a != b)
    assert replaced > 5, "the file is replaced (renamed over), not rewritten in place"
    assert seen_samples == sorted(seen_samples) and seen_samples[-1] > seen_samples[0]
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    final = parse_exposition(path.read_text())
    assert value(final, "damond_kdamond_running", kdamond="0") == 0
    assert os.listdir(directory) == ["damond.prom"]


def test_textfile_in_a_missing_directory_is_a_startup_error(serve, tmp_path):
    d = serve("--metrics-textfile", str(tmp_path / "nope" / "damond.prom"))
    assert d.wait() == 1
    assert "No such file or directory" in d.stderr()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_http_endpoint(serve, notify, config_path):
    port = _free_port()
    write_config(config_path, [sim_kdamond()])
    serve("--metrics-listen", f"127.0.0.1:{port}", config=config_path,
          env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)  # listening before READY
    # a client that connects and says nothing does not hold up a scrape
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?x=1", timeout=10) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            m = parse_exposition(r.read().decode())
        assert value(m, "damond_kdamond_running", kdamond="0") == 1
    finally:
        idle.close()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
    assert e.value.code == 404
    assert _http(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert _http(port, b"\xff\xfe garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _http(port, b"GET /" + b"x" * 20000).startswith(b"HTTP/1.1 431 ")
    head = _http(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    # many scrapers at once
    results: list[int] = []

    def scrape() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            results.append(r.status)

    threads = [threading.Thread(target=scrape) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 16


def test_idle_connections_never_lock_a_scraper_out(serve, notify, config_path):
    """Before, the 33rd connection was closed unanswered while 32 idle ones waited out their
    10 s: 40 idle peers made every scrape fail. Now a newcomer evicts the oldest connection
    that has not sent its request; a scrape is answered at once however many idle peers."""
    port = _free_port()
    write_config(config_path, [sim_kdamond()])
    serve("--metrics-listen", f"127.0.0.1:{port}", config=config_path,
          env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    for n in (40, 300):
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
        try:
            for _ in range(3):
                started = time.monotonic()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=5) as r:
                    assert r.status == 200
                    m = parse_exposition(r.read().decode())
                assert time.monotonic() - started < 2
                assert value(m, "damond_kdamond_running", kdamond="0") == 1
            # the evicted ones were closed (EOF), not left hanging; at most the limit is held
            time.sleep(0.3)
            closed = 0
            for s_ in idle:
                s_.setblocking(False)
                with contextlib.suppress(BlockingIOError, ConnectionResetError):
                    closed += s_.recv(1) == b""
            assert closed >= n - 32, (n, closed)
        finally:
            for s_ in idle:
                s_.close()


def test_openmetrics_when_the_scraper_asks_for_it(serve, notify, config_path):
    port = _free_port()
    write_config(config_path, [sim_kdamond()])
    serve("--metrics-listen", f"127.0.0.1:{port}", config=config_path,
          env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1")
        text = r.read().decode()
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["damond_kdamond_samples"].type == "counter"
    assert text.endswith("# EOF\n")


def test_port_in_use_is_a_startup_error(serve):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        d = serve("--metrics-listen", f"127.0.0.1:{s.getsockname()[1]}")
        assert d.wait() == 1
    assert "Address already in use" in d.stderr()


# -- in-process ----------------------------------------------------------------------------


def _exposed(*samples: tuple[str, str, str, float, dict]) -> str:
    """The exposition text of (name, kind, help, value, labels) samples, rendered the way the
    daemon renders its own (prometheus_client's generate_latest over damond's collector)."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    class Fixed(Collector):
        def collect(self):
            fam = _Families()
            for name, kind, help_, v, labels in samples:
                fam(name, kind, help_)(v, **labels)
            return fam.families()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return generate_latest(registry).decode()


def test_label_values_and_help_are_escaped():
    text = _exposed(("damond_x", "gauge", 'a "help"\\ with\nbreak', 1.5,
                     {"path": 'C:\\dir "x"\nnext'}))
    assert text == ('# HELP damond_x a "help"\\\\ with\\nbreak\n# TYPE damond_x gauge\n'
                    'damond_x{path="C:\\\\dir \\"x\\"\\nnext"} 1.5\n')
    parse_exposition(text)


def test_values():
    """Number forms are the exposition format's (Go's float formatting, as prometheus_client
    writes it): before prometheus_client, damond wrote integers without ``.0``; the format
    reads both, so the test keeps the intent (each value reads back exactly) rather than the
    digits."""
    text = _exposed(("damond_a", "gauge", "h", 3, {"k": "a"}),
                    ("damond_a", "gauge", "h", True, {"k": "b"}),
                    ("damond_a", "gauge", "h", 0.25, {"k": "c"}),
                    ("damond_a", "gauge", "h", math.nan, {"k": "d"}),
                    ("damond_a", "gauge", "h", -math.inf, {"k": "e"}),
                    ("damond_b_total", "counter", "h", 2 ** 53, {}))
    m = parse_exposition(text)
    assert [value(m, "damond_a", k=k) for k in "abce"] == [3, 1, 0.25, -math.inf]
    assert math.isnan(value(m, "damond_a", k="d"))
    assert value(m, "damond_b_total") == 2 ** 53
    assert 'damond_a{k="d"} NaN\n' in text and 'damond_a{k="e"} -Inf\n' in text


def test_parse_listen():
    assert parse_listen("127.0.0.1:9847") == ("127.0.0.1", 9847)
    assert parse_listen("[::1]:9847") == ("::1", 9847)
    assert parse_listen(":9847") == (None, 9847)
    for bad in ("9847", "host:", "host:http", "h:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_http_answer_without_a_daemon_for_errors():
    assert http_answer(None, b"GET\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http_answer(None, b"DELETE / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert http_answer(None, b"GET /x HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")


def test_write_textfile_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "sub"  # a directory: os.replace onto it fails
    target.mkdir()
    with pytest.raises(OSError):
        write_textfile(str(target), "x 1\n")
    assert os.listdir(tmp_path) == ["sub"]


def test_a_planted_symlink_is_not_followed(tmp_path):
    """Before, the temporary file had a predictable name (``.<name>.<pid>.tmp``) opened with
    O_TRUNC and chmodded by path: in a collector directory others can write, a symlink planted
    there had its target (any file root can write) overwritten and made 0644."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    directory = tmp_path / "textfile"
    directory.mkdir()
    planted = directory / f".damond.prom.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    write_textfile(str(directory / "damond.prom"), "damond_x 1\n")
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert (directory / "damond.prom").read_text() == "damond_x 1\n"
    assert stat.S_IMODE((directory / "damond.prom").stat().st_mode) == 0o644
    assert sorted(os.listdir(directory)) == [planted.name, "damond.prom"]
    assert planted.is_symlink()
