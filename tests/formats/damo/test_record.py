"""damo record files written by damond: read back exactly, read by the real damo's reports, and
still readable (by both) after the writer is SIGKILLed mid-recording."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from damond.core.events import AggregationEvent, TargetSnapshot
from damond.formats.damo.record import RecordWriter, adler32_combine, read_record

REPO = Path(__file__).resolve().parents[3]
DAMO = shutil.which("damo", path=str(Path(sys.executable).parent)) or shutil.which("damo")
needs_damo = pytest.mark.skipif(DAMO is None, reason="damo (pip install damo==3.4.3) not found")

MiB = 1 << 20
HOT = 0x7F00_0000_0000  # 4 MiB in two regions, 18 and 17 of 20 samples: 180 and 170 hz
COLD = 0x7F00_1000_0000  # 64 MiB in two regions, never accessed


def target_snapshot(i: int, target: int = 0) -> TargetSnapshot:
    """Aggregation ``i`` of one target: the hot range keeps its rate, so both ranges age."""
    base = target << 36
    start = np.array([HOT, HOT + 2 * MiB, COLD, COLD + 32 * MiB], dtype=np.uint64) + base
    end = np.array([HOT + 2 * MiB, HOT + 4 * MiB, COLD + 32 * MiB, COLD + 64 * MiB],
                   dtype=np.uint64) + base
    return TargetSnapshot(target, start, end, np.array([18, 17, 0, 0], dtype=np.int64),
                          np.array([i, i, i + 5, i + 5], dtype=np.int64))


def event(i: int, targets: tuple[int, ...] = (0,), kd: int = 0, ctx: int = 0,
          sample_us: int = 5_000, aggr_us: int = 100_000) -> AggregationEvent:
    t0 = 1_000_000_000 + 123  # CLOCK_MONOTONIC-like, not on a microsecond
    return AggregationEvent(kd, ctx, t0 + i * aggr_us * 1000, t0 + (i + 1) * aggr_us * 1000,
                            sample_us, aggr_us, tuple(target_snapshot(i, t) for t in targets))


def expected_snapshots(events: list[AggregationEvent], output_type: str) -> list[tuple]:
    """What read_record must return for ``events``: records in first-seen order."""
    perf = output_type == "perf_script"
    records: dict[tuple, list[tuple]] = {}
    for ev in events:
        for t in ev.targets:
            key = (t.target_index,) if perf else (ev.kdamond_index, ev.context_index,
                                                  ev.sample_us, ev.aggr_us, t.target_index)
            end_ns = ev.end_ns // 1000 * 1000 if perf else ev.end_ns  # perf prints microseconds
            records.setdefault(key, []).append((
                0 if perf else ev.kdamond_index, 0 if perf else ev.context_index, t.target_index,
                ev.start_ns, end_ns, None if perf else ev.sample_us, None if perf else ev.aggr_us,
                t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(), t.age.tolist()))
    out = [s for snaps in records.values() for s in snaps]
    if perf:  # start times are deduced from the end times, as damo does
        fixed = []
        for snaps in records.values():
            ends = [s[4] for s in snaps]
            for i, s in enumerate(snaps):
                start = ends[i - 1] if i else (
                    ends[0] - (ends[-1] - ends[0]) // (len(ends) - 1) if len(ends) > 1
                    else ends[0])
                fixed.append(s[:3] + (start,) + s[4:])
        out = fixed
    return out


def as_tuples(snapshots) -> list[tuple]:
    return [(s.kdamond_index, s.context_index, s.target_index, s.start_ns, s.end_ns, s.sample_us,
             s.aggr_us, s.start.tolist(), s.end.tolist(), s.nr_accesses.tolist(), s.age.tolist())
            for s in snapshots]


def write_record(path: Path, events: list[AggregationEvent], output_type: str,
                 flush_every: int = 7) -> None:
    with RecordWriter(path, output_type, flush_interval_s=3600) as w:
        for i, ev in enumerate(events):
            w.add(ev)
            if i % flush_every == flush_every - 1:
                w.flush()


def run_damo(*args: str) -> subprocess.CompletedProcess:
    """damo caches probes of the live kernel in ~/.damo.sysinfo: give it a throw-away HOME."""
    with tempfile.TemporaryDirectory(prefix="damo-home-") as home:
        return subprocess.run([DAMO, *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HOME": home})


# --- the writer and the reader ---------------------------------------------------------------


@pytest.mark.parametrize("output_type", ["json_compressed", "json", "perf_script"])
def test_round_trip(tmp_path: Path, output_type: str) -> None:
    events = [event(i, targets=(0, 1)) for i in range(30)]
    if output_type != "perf_script":  # perf lines carry neither contexts nor intervals
        events += [event(i, kd=1, ctx=2) for i in range(5)]
        events += [event(i, sample_us=1_000, aggr_us=50_000) for i in range(30, 33)]
    path = tmp_path / "damon.data"
    write_record(path, events, output_type)
    assert as_tuples(read_record(path)) == expected_snapshots(events, output_type)


def test_file_is_complete_after_every_flush_and_only_then(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    old_umask = os.umask(0)
    try:
        w = RecordWriter(path, flush_interval_s=3600)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(zlib.decompress(path.read_bytes())) == []
    for n in range(1, 6):
        w.add(event(n))
        assert len(read_record(path)) == n - 1  # not durable yet
        w.flush()
        assert len(read_record(path)) == n
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.add(event(9))


def test_flush_interval_and_empty_targets(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    empty = TargetSnapshot(3, *(np.zeros(0, dtype=t) for t in (np.uint64, np.uint64,
                                                                 np.int64, np.int64)))
    w = RecordWriter(path, flush_interval_s=0)
    ev = event(0)
    w.add(AggregationEvent(0, 0, ev.start_ns, ev.end_ns, 5000, 100000, ev.targets + (empty,)))
    assert [s.target_index for s in read_record(path)] == [0]  # flushed by add, no empty one
    w.close()


def test_perf_script_takes_one_context(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "p", "perf_script") as w:
        w.add(event(0))
        with pytest.raises(ValueError, match="one context"):
            w.add(event(1, ctx=1))


def test_perf_script_single_snapshot_gets_damos_fake_second_one(tmp_path: Path) -> None:
    path = tmp_path / "p"
    with RecordWriter(path, "perf_script") as w:
        w.add(event(0))
    lines = path.read_text().splitlines()
    assert lines[-1].endswith("target_id=0 nr_regions=1 0-0: -1 -1")
    snapshots = read_record(path)
    assert len(snapshots) == 1
    assert (snapshots[0].start_ns, snapshots[0].end_ns) == (1_000_000_000, 1_100_000_000)


@given(a=st.binary(max_size=300), b=st.binary(max_size=70000))
def test_adler32_combine(a: bytes, b: bytes) -> None:
    assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


# --- the real damo reading damond's records --------------------------------------------------

RAW_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \(.*\)\s+(-?\d+)\s+(-?\d+)$")


def damo_raw_form_snapshots(text: str) -> list[list[tuple[int, int, int, int]]]:
    """The region lines of ``damo report access --raw_form``, one list per snapshot."""
    snapshots: list[list] = []
    for line in text.splitlines():
        if line.startswith("monitoring_start:"):
            snapshots.append([])
        m = RAW_LINE.match(line.strip())
        if m:
            snapshots[-1].append((int(m[1], 16), int(m[2], 16), int(m[3]), int(m[4])))
    return snapshots


def regions_of(ev: AggregationEvent, target: int = 0) -> list[tuple[int, int, int, int]]:
    t = ev.targets[target]
    return list(zip(t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(), t.age.tolist(),
                    strict=True))


@needs_damo
@pytest.mark.parametrize("output_type", ["json_compressed", "perf_script"])
def test_damo_report_access_shows_the_regions(tmp_path: Path, output_type: str) -> None:
    events = [event(i) for i in range(30)]
    path = tmp_path / "damon.data"
    write_record(path, events, output_type)
    res = run_damo("report", "access", "--input", str(path), "--raw_form")
    assert res.returncode == 0, res.stderr
    assert damo_raw_form_snapshots(res.stdout) == [regions_of(ev) for ev in events]
    if output_type == "json_compressed":  # perf lines have no intervals: only raw numbers
        res = run_damo("report", "access", "--input", str(path))
        assert res.returncode == 0, res.stderr
        assert "intervals: sample 5 ms aggr 100 ms" in res.stdout
        assert re.search(r"addr 127\.000 TiB\s+size 2\.000 MiB\s+access 180 hz", res.stdout)
        assert re.search(r"size 32\.000 MiB\s+access 0 hz\s+age 3\.400 s", res.stdout)


@needs_damo
def test_damo_report_heatmap_raw_shows_hot_and_cold(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    write_record(path, [event(i) for i in range(30)], "json_compressed")
    res = run_damo("report", "heatmap", "--input", str(path), "--output", "raw", "--abs_addr",
                   "--draw_range", "all", "--resol", "20", "16")
    assert res.returncode == 0, res.stderr
    heats: dict[str, list[float]] = {"hot": [], "cold": []}
    for line in res.stdout.splitlines():
        _, addr, heat = line.split("\t")
        if heat == "NaN":  # before a region's first observation (damo backdates by its age)
            continue
        addr = int(addr)
        if HOT <= addr < HOT + 4 * MiB:
            heats["hot"].append(float(heat))
        else:
            assert COLD <= addr < COLD + 64 * MiB, hex(addr)
            heats["cold"].append(float(heat))
    assert len(heats["hot"]) > 100 and len(heats["cold"]) > 100
    hot = sorted(heats["hot"])  # 180 and 170 hz; less only in pixels a snapshot half covers
    assert hot[-1] == pytest.approx(180.0) and hot[len(hot) // 2] >= 170.0 - 1e-6
    assert set(heats["cold"]) == {0.0}


@needs_damo
def test_damo_report_wss(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    write_record(path, [event(i) for i in range(30)], "json_compressed")
    res = run_damo("report", "wss", "--input", str(path), "--exclude_samples", "0")
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"^\s*(\d+)\s+(\S+ \S+) \|", res.stdout, re.M)
    assert rows == [(p, "4.000 MiB") for p in ("0", "25", "50", "75", "100")]


@needs_damo
def test_json_type_needs_file_saying_json_data(tmp_path: Path) -> None:
    """damo 3.4.3 takes a file for JSON only if ``file -b`` prints exactly "JSON data"; file 5.41
    and later print "JSON text data", and damo then hands it to ``perf script``."""
    path = tmp_path / "damon.data"
    events = [event(i) for i in range(5)]
    write_record(path, events, "json")
    assert as_tuples(read_record(path)) == expected_snapshots(events, "json")
    kind = subprocess.run(["file", "-b", str(path)], capture_output=True, text=True).stdout
    if kind.strip() != "JSON data":
        pytest.skip(f"`file` says {kind.strip()!r}: damo {DAMO} cannot read json records here")
    res = run_damo("report", "access", "--input", str(path), "--raw_form")
    assert damo_raw_form_snapshots(res.stdout) == [regions_of(ev) for ev in events]


@needs_damo
def test_read_record_reads_damos_own_files(tmp_path: Path) -> None:
    """damo's writer (its ``convert_record_format``) against damond's reader."""
    events = [event(i, targets=(0, 1)) for i in range(12)]
    perf = tmp_path / "damon.perf"
    write_record(perf, events, "perf_script")
    for fmt in ("json_compressed", "perf_script"):
        out = tmp_path / f"by_damo.{fmt}"
        res = run_damo("convert_record_format", "--record_file", str(perf), "--format", fmt,
                       "--output_file", str(out))
        assert res.returncode == 0, res.stdout + res.stderr
        got = as_tuples(read_record(out))
        assert [s[2:] for s in got] == [s[2:] for s in expected_snapshots(events, "perf_script")]


# --- a writer killed mid-recording -----------------------------------------------------------

CHILD = r"""
import sys
import numpy as np
from damond.core.events import AggregationEvent, TargetSnapshot
from damond.formats.damo.record import RecordWriter

path, output_type = sys.argv[1], sys.argv[2]
starts = np.arange(100, dtype=np.uint64) * (1 << 21) + (1 << 40)
w = RecordWriter(path, output_type, flush_interval_s=3600)
i = 0
while True:
    t = TargetSnapshot(0, starts, starts + (1 << 21), np.full(100, i % 21, dtype=np.int64),
                       np.full(100, i, dtype=np.int64))
    w.add(AggregationEvent(0, 0, i * 100_000_000, (i + 1) * 100_000_000, 5000, 100000, (t,)))
    i += 1
    if i % 25 == 0:
        w.flush()
        print(i, flush=True)
"""


def kill_writer_after(path: Path, output_type: str, nr_flushes: int, delay_s: float) -> int:
    """Run a writer, SIGKILL it ``delay_s`` after its ``nr_flushes``-th flush; returns how many
    snapshots it had flushed (at least) by then."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), output_type],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        acked = 0
        for _ in range(nr_flushes):
            acked = int(child.stdout.readline())
        time.sleep(delay_s)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return acked


@pytest.mark.parametrize("output_type", ["json_compressed", "perf_script"])
def test_sigkilled_writer_leaves_a_readable_file(tmp_path: Path, output_type: str) -> None:
    for round_, delay in enumerate([0.0, 0.003, 0.011, 0.027, 0.05]):
        path = tmp_path / f"damon{round_}.data"
        acked = kill_writer_after(path, output_type, 3 + round_, delay)
        snapshots = read_record(path)
        assert len(snapshots) >= acked and len(snapshots) % 25 == 0
        for i, s in enumerate(snapshots):
            assert s.nr_regions == 100
            assert s.nr_accesses.tolist() == [i % 21] * 100 and s.age.tolist() == [i] * 100
        if DAMO is None:
            continue
        res = run_damo("report", "access", "--input", str(path), "--raw_form")
        assert res.returncode == 0, res.stderr
        damo_snapshots = damo_raw_form_snapshots(res.stdout)
        assert len(damo_snapshots) == len(snapshots)
        assert damo_snapshots[-1][0] == (1 << 40, (1 << 40) + (1 << 21), (len(snapshots) - 1) % 21,
                                         len(snapshots) - 1)


# --- temporary files: never a planted path, never left behind ------------------------------


def test_a_planted_symlink_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    """Before, each flush opened ``<out>.damond-tmp`` with O_TRUNC and no O_NOFOLLOW: root
    recording into a shared directory truncated, rewrote and chmodded a file of the planter's
    choosing."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o640)
    out = tmp_path / "shared" / "damon.data"
    out.parent.mkdir()
    (out.parent / "damon.data.damond-tmp").symlink_to(victim)
    write_record(out, [event(i) for i in range(10)], "json_compressed", flush_every=3)
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o640
    assert len(read_record(out)) == 10
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(os.listdir(out.parent)) == ["damon.data", "damon.data.damond-tmp"]


_FULL_DISK_WRITER = """
import resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.formats.damo.test_record import event
from damond.formats.damo.record import RecordWriter
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
w = RecordWriter(sys.argv[1], "json", flush_interval_s=3600)
try:
    for i in range(100000):
        w.add(event(i))
        if i % 5 == 4:
            w.flush()
except OSError as e:
    print(e.errno, flush=True)
"""


def test_a_full_disk_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ, so write() fails with EFBIG,
    as it would with ENOSPC on a full file system) makes a flush fail: the previous output
    stays whole and no ``*.damond-tmp`` is left."""
    out = tmp_path / "damon.data"
    res = subprocess.run([sys.executable, "-c", _FULL_DISK_WRITER, str(out), str(REPO),
                          str(64 << 10)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(27)  # EFBIG
    assert os.listdir(tmp_path) == ["damon.data"]
    assert len(read_record(out)) % 5 == 0 and len(read_record(out)) > 0


def test_a_file_that_is_not_a_record_says_so(tmp_path: Path) -> None:
    """Before, any text without trace lines (``/etc/passwd``) read as a record with no
    snapshots; a JSON object crashed with AttributeError."""
    cases = {
        "passwd": (b"root:x:0:0:root:/root:/bin/bash\n", "without a single damon:damon_aggr"),
        "binary": (bytes(range(256)) * 4, "neither a zlib stream"),
        "object.json": (b'{"kdamonds": []}', "JSON, but not a list of damo records"),
        "numbers.json": (b"[1, 2]", "JSON, but not a list of damo records"),
    }
    for name, (data, why) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=why):
            read_record(tmp_path / name)
    (tmp_path / "empty").write_bytes(b"")
    assert read_record(tmp_path / "empty") == []  # a record that saw nothing
