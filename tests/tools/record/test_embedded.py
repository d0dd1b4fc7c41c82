"""``damond record`` with its embedded kdamond: a real ``vaddr`` recording of the hot/cold
workload read back by ``read_record``, the real damo and ``damond report`` (text and PNG);
a recording killed with SIGKILL; SIGINT; errors."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from damond.formats.damo.record import read_record
from damond.tools import report
from damond.tools.report import analysis, heatmap, heatmap_png
from damond.tools.report.source import group_series

DAMO = os.path.join(os.path.dirname(sys.executable), "damo")
RECORD = [sys.executable, "-m", "damond.tools.record"]
WORKLOAD = [sys.executable, "-m", "damond.tools.workload", "hotcold",
            "--hot", "16M", "--cold", "64M"]


def damo(*args: str) -> str:
    proc = subprocess.run([DAMO, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": tempfile.mkdtemp(prefix="damo-home-")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def hotcold(tmp_path_factory) -> tuple[str, dict]:
    """A 5 s vaddr recording of the hot/cold workload: (record path, the workload's ranges)."""
    path = str(tmp_path_factory.mktemp("vaddr") / "damon.data")
    proc = subprocess.run([*RECORD, "-o", path, "--timeout", "5", "--flush-interval", "1", "--",
                           *WORKLOAD], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"written to {path}" in proc.stderr
    ranges = json.loads(proc.stdout.splitlines()[0])["ranges"]
    return path, ranges


def mean_rate(snaps, lo: int, hi: int) -> float:
    return float(np.mean([analysis.mean_access_over(s.start, s.end, s.nr_accesses, lo, hi)
                          for s in snaps]))


def test_vaddr_record_holds_the_hot_and_cold_mappings(hotcold):
    path, ranges = hotcold
    assert os.stat(path).st_mode & 0o777 == 0o600
    snaps = read_record(path)
    assert len(snaps) >= 15  # 50 when the machine is idle
    assert {(s.sample_us, s.aggr_us) for s in snaps} == {(5_000, 100_000)}
    (h0, h1), (c0, c1) = ranges["hot"], ranges["cold"]
    late = snaps[10:]
    assert all(s.start.min() <= h0 and c1 <= s.end.max() for s in late)
    hot, cold = mean_rate(late, h0, h1), mean_rate(late, c0, c1)
    assert hot > 1.0 and hot > 5 * cold, (hot, cold)


def test_damo_reads_the_vaddr_record(hotcold):
    path, ranges = hotcold
    n = len(read_record(path))
    assert damo("report", "access", "--input", path).count("snapshot time:") == n
    raw = damo("report", "access", "--input", path, "--raw_form")
    assert raw.count("monitoring_start:") == n
    assert "\n7f" in raw and "\n5" in raw  # regions of the mmap area and of the heap area
    # damo's heatmap (raw, absolute addresses, every monitored range): the hot mapping's
    # pixels are far hotter than the cold mapping's and than the rest
    pixels = [line.split("\t") for line in
              damo("report", "heatmap", "--input", path, "--output", "raw", "--draw_range",
                   "all", "--abs_addr", "--resol", "20", "200").splitlines()]
    (h0, h1), (c0, c1) = ranges["hot"], ranges["cold"]
    groups: dict[str, list[float]] = {"hot": [], "cold": [], "other": []}
    for _, addr, heat in pixels:
        if heat == "NaN":
            continue
        a = int(addr)
        key = "hot" if h0 <= a < h1 else "cold" if c0 <= a < c1 else "other"
        groups[key].append(float(heat))
    hot, cold, other = (float(np.mean(groups[k])) for k in ("hot", "cold", "other"))
    assert hot > 5 * cold and hot > 5 * other, (hot, cold, other)


def test_png_heatmap_of_the_vaddr_record(hotcold, tmp_path):
    path, ranges = hotcold
    png = str(tmp_path / "heatmap.png")
    assert report.main(["heatmap", "-i", path, "--output", png]) == 0
    with open(png, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    assert struct.unpack(">II", head[16:24]) == heatmap_png.SIZE_PX
    # the matrix plotted: the default range is the mmap area holding both mappings
    (series,) = group_series(read_record(path))
    hm = heatmap.build(series.snapshots, 500, 500)
    (h0, h1), (c0, c1) = ranges["hot"], ranges["cold"]
    assert hm.selection == "hottest" and hm.offset_of(h0) is not None
    hot_cols, cold_cols = hm.columns_of(h0, h1), hm.columns_of(c0, c1)
    hot_cols = range(hot_cols.start + 1, hot_cols.stop - 1)  # cells fully inside
    cold_cols = range(cold_cols.start + 1, cold_cols.stop - 1)
    hot = np.nanmean(hm.values[:, hot_cols])
    cold = np.nanmean(hm.values[:, cold_cols])
    assert hot > 5 * cold, (hot, cold)
    # and in the rendered pixels: brighter (inferno: luminance grows with the value)
    import matplotlib.image

    img = matplotlib.image.imread(png)[:, :, :3]
    box = heatmap_png.axes_box_px()

    def brightness(lo: int, hi: int) -> float:
        scale = (box.right - box.left) / hm.total_bytes
        x0 = int(box.left + hm.offset_of(lo) * scale) + 2
        x1 = int(box.left + hm.offset_of(hi) * scale) - 2
        return float(img[int(box.top) + 2:int(box.bottom) - 2, x0:x1].sum(axis=2).mean())

    assert brightness(h0, h1) > 2 * brightness(c0, c1)


def test_sigkill_keeps_what_was_flushed(tmp_path, capsys):
    path = tmp_path / "killed.data"
    proc = subprocess.Popen([*RECORD, "--ops", "sim", "-o", str(path), "--flush-interval",
                             "0.3", "--quiet"], stderr=subprocess.PIPE)
    seen = []
    deadline = time.monotonic() + 20
    try:
        while len(set(seen)) < 3:  # the initial file, then at least two flushes with more
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
            if path.exists():
                seen.append(len(read_record(path)))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    snaps = read_record(path)
    assert len(snaps) >= max(seen) > 0
    assert damo("report", "access", "--input", str(path), "--raw_form").count(
        "monitoring_start:") == len(snaps)
    for argv in (["wss", "--exclude-samples", "0"], ["access"], ["heatmap"],
                 ["heatmap", "--output", str(tmp_path / "k.png")]):
        assert report.main([*argv, "-i", str(path)]) == 0, argv
    assert "0x7f0000000000" in capsys.readouterr().out


def test_sigint_ends_the_recording_normally(tmp_path):
    path = tmp_path / "int.data"
    path.write_text("previous")
    proc = subprocess.Popen([*RECORD, "--ops", "sim", "-o", str(path), "--output-type", "json",
                             "--output-permission", "640"],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "interrupted by SIGINT" in err
    assert (tmp_path / "int.data.old").read_text() == "previous"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert path.read_text().startswith("[")
    assert len(read_record(path)) >= 5


@pytest.mark.parametrize(("args", "status", "message"), [
    (["--", "/nonexistent/command"], 1, "cannot run '/nonexistent/command': No such file"),
    (["--pid", "999999999"], 1, "no process with pid 999999999"),
    ([], 2, "vaddr monitors a process: give a COMMAND or --pid"),
    (["--ops", "fvaddr", "--pid", "1"], 2, "fvaddr monitors fixed ranges"),
    (["--pid", "1", "--", "true"], 2, "give one of: a COMMAND, --pid, or --socket/--kdamond"),
])
def test_errors(tmp_path, args, status, message):
    out = tmp_path / "x.data"
    proc = subprocess.run([*RECORD, "-o", str(out), *args], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == status
    assert proc.stderr.startswith("damond record: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and not out.exists()


def test_a_short_command_ends_the_recording(tmp_path):
    out = tmp_path / "short.data"
    proc = subprocess.run([*RECORD, "-o", str(out), "--", *WORKLOAD[:3], "reader",
                           "--hot", "4M", "--seconds", "1.5"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "monitoring ended (every target is gone)" in proc.stderr
    # 1.5 s at 100 ms aggregations; each sample's window is a whole 5 ms plus the smaps check,
    # which a busy machine stretches (4 snapshots were seen with a guest kernel running beside)
    assert len(read_record(out)) >= 3


def test_a_failing_command_is_reported(tmp_path):
    proc = subprocess.run([*RECORD, "-o", str(tmp_path / "f.data"), "--", *WORKLOAD[:3],
                           "no-such-mode"], capture_output=True, text=True, timeout=30)
    assert "the command exited with status 2" in proc.stderr


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline") as f:
        return f.read().split("\0")[0]


def _child_running(pid: int, name: str) -> int | None:
    """A child of ``pid`` running ``name`` (children that end meanwhile are passed over)."""
    for kid in _children(pid):
        try:
            if _cmdline(kid) == name:
                return kid
        except FileNotFoundError:
            continue
    return None


def test_the_recorded_command_dies_with_a_sigkilled_recorder(tmp_path):
    proc = subprocess.Popen([*RECORD, "-o", str(tmp_path / "k.data"), "--quiet", "--",
                             "sleep", "1000"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        # the child may not have exec'd yet (its cmdline reads empty in between)
        while (sleep_pid := _child_running(proc.pid, "sleep")) is None:
            assert time.monotonic() < deadline and proc.poll() is None, _children(proc.pid)
            time.sleep(0.05)
        time.sleep(0.5)  # recording
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while not _gone(sleep_pid):
            assert time.monotonic() < deadline, "the recorded command outlived the recorder"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_full_disk_ends_the_recording_without_leaving_a_temporary_file(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk (write fails with EFBIG instead of ENOSPC)."""
    import resource

    limit = 32 << 10

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "full.data"
    proc = subprocess.run([*RECORD, "--ops", "sim", "-o", str(out), "--output-type", "json",
                           "--flush-interval", "0.2", "--timeout", "30"],
                          capture_output=True, text=True, timeout=60, preexec_fn=small_disk)
    assert proc.returncode != 0
    assert "writing " + str(out) + " failed: File too large" in proc.stderr, proc.stderr
    assert "stopped by the write failure" in proc.stderr
    assert os.listdir(tmp_path) == ["full.data"]
    assert len(read_record(out)) > 0
