"""``damond record --socket`` against a real ``damond serve`` (sim kdamonds), the trace
grouping it relies on, and ``damond report --socket`` (live)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

from damond.formats.damo.record import read_record
from damond.interfaces.tracepoint import TraceGrouper
from damond.interfaces.tracepoint import format_lines as format_tracepoint_lines
from damond.interfaces.tracepoint import parse_head as parse_trace_head
from damond.tools import report
from tests.control.conftest import damond, sockdir, start_damond, start_sim_kdamond  # noqa: F401
from tests.tools import synthetic

DAMO = os.path.join(os.path.dirname(sys.executable), "damo")


def record_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "damond.tools.record", "--quiet", *args]


def test_trace_lines_group_back_into_the_events():
    mine = synthetic.events(kdamond=1, targets=2)
    other = synthetic.events(kdamond=0, targets=1)
    lines = []
    for a, b in zip(mine, other, strict=True):
        lines += format_tracepoint_lines(b) + format_tracepoint_lines(a) + ["# dropped 3 events"]
    grouper = TraceGrouper(1, 5_000, 100_000)
    got = [ev for line in lines if (ev := grouper.feed(line)) is not None]
    got.append(grouper.finish())
    assert len(got) == len(mine)
    for g, m in zip(got, mine, strict=True):
        assert (g.kdamond_index, g.start_ns, g.end_ns, g.sample_us, g.aggr_us) == (
            m.kdamond_index, m.start_ns, m.end_ns, m.sample_us, m.aggr_us)
        assert [t.target_index for t in g.targets] == [0, 1]
        for gt, mt in zip(g.targets, m.targets, strict=True):
            for field in ("start", "end", "nr_accesses", "age"):
                assert getattr(gt, field).tolist() == getattr(mt, field).tolist()
    assert grouper.finish() is None


def test_trace_grouper_splits_same_timestamp_and_skips_partial_snapshots():
    line = "kdamond.0 5.000000: damon:damon_aggregated: target_id=0 nr_regions=2 {}-{}: 1 2"
    grouper = TraceGrouper(0, 5_000, 100_000)
    feed = [line.format(0, 4096), line.format(4096, 8192), line.format(0, 4096)]
    assert [grouper.feed(x) for x in feed[:2]] == [None, None]
    first = grouper.feed(feed[2])  # target 0 again at the same time: a new aggregation
    assert first is not None and first.targets[0].nr_regions == 2
    assert first.start_ns == 5_000_000_000 - 100_000_000
    assert grouper.finish() is None  # the second one has 1 of its 2 regions
    assert parse_trace_head("kdamond.12 82877.315633: damon:...") == (12, 82877315633000)
    assert parse_trace_head("# dropped 3 events") is None


def test_record_a_daemon_kdamond(start_damond, tmp_path, capsys):  # noqa: F811
    d = start_damond("--cpu-budget", "0")  # aggregations at the configured rate
    with d.conn() as c:
        start_sim_kdamond(c)
    out = tmp_path / "daemon.data"
    proc = subprocess.run(record_cmd("--socket", d.path, "--kdamond", "0", "-o", str(out),
                                     "--timeout", "2.5", "--flush-interval", "0.5"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    snaps = read_record(out)
    assert len(snaps) >= 15
    for prev, cur in zip(snaps, snaps[1:], strict=False):
        assert cur.start_ns == prev.end_ns
        assert 50_000_000 < cur.end_ns - cur.start_ns < 300_000_000
    assert {(s.sample_us, s.aggr_us, s.kdamond_index, s.target_index) for s in snaps} == {
        (5_000, 100_000, 0, 0)}
    # the sim workload's hot range (16 MiB at 0x7f0000000000) is the most accessed
    hot = [s.nr_accesses[s.start < 0x7F0001000000].mean() for s in snaps[5:]]
    cold = [s.nr_accesses[s.start >= 0x7F0085000000].mean() for s in snaps[5:]]
    assert min(hot) > 10 and max(cold) < 2
    damo = subprocess.run([DAMO, "report", "access", "--input", str(out), "--raw_form"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": tempfile.mkdtemp()})
    assert damo.returncode == 0, damo.stderr
    assert damo.stdout.count("monitoring_start:") == len(snaps)
    assert "7f0000000000-" in damo.stdout

    # live reports, straight from the daemon
    assert report.main(["access", "--socket", d.path, "--seconds", "0.6"]) == 0
    live = capsys.readouterr()
    assert "recording kdamond 0 for 0.6 s" in live.err
    assert "# intervals: sample 5 ms, aggr 100 ms (20 samples per aggregation)" in live.out
    assert "0x7f0000000000" in live.out
    assert report.main(["wss", "--socket", d.path, "--seconds", "0.6",
                        "--exclude-samples", "0"]) == 0
    assert "# avr:" in capsys.readouterr().out


def test_recording_ends_when_the_kdamond_stops(start_damond, tmp_path):  # noqa: F811
    d = start_damond("--cpu-budget", "0")  # aggregations at the configured rate
    with d.conn() as c:
        start_sim_kdamond(c)
        out = tmp_path / "stopped.data"
        proc = subprocess.Popen([sys.executable, "-m", "damond.tools.record", "--socket", d.path,
                                 "-o", str(out)], stderr=subprocess.PIPE, text=True)
        # the recorder subscribed once its first flush created the file (a loaded machine may
        # take seconds to start a Python process): then let it record a while
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        time.sleep(1.0)
        c.ok("echo off > kdamonds/0/state")
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "kdamond 0 stopped" in err
    assert len(read_record(out)) >= 5


@pytest.mark.parametrize(("args", "status", "message"), [
    (["--socket", "/nonexistent/damond.sock"], 2, "cannot connect to the daemon at "
                                                  "/nonexistent/damond.sock"),
    (["--socket", "{sock}", "--kdamond", "3"], 1, "the daemon has no kdamond 3"),
    (["--socket", "{sock}"], 1, "kdamond 0 is not running (state 'off')"),
    (["--socket", "{sock}", "--sample-us", "1000"], 2, "its own attributes"),
])
def test_daemon_errors(damond, tmp_path, args, status, message):  # noqa: F811
    with damond.conn() as c:
        c.ok("echo 1 > kdamonds/nr_kdamonds")
    args = [a.format(sock=damond.path) for a in args]
    proc = subprocess.run(record_cmd(*args, "-o", str(tmp_path / "x.data")),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == status
    assert proc.stderr == f"damond record: {message}\n" or message in proc.stderr
    assert not (tmp_path / "x.data").exists()
