"""``damond report`` on a small synthetic record (``synthetic.py``): exact expected output.

The numbers are chosen so that every cell and row can be checked by hand: 100 %, 50 % and
30 % access rates, ranges of 128 KiB, aggregations of 100 ms.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from damond.formats.damo.record import read_record
from damond.tools import report
from damond.tools.report import heatmap
from damond.tools.report.source import group_series
from tests.tools import synthetic

DAMO = os.path.join(os.path.dirname(sys.executable), "damo")


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> str:
    return synthetic.write(tmp_path_factory.mktemp("syn") / "damon.data")


def run_report(capsys, *argv: str) -> str:
    assert report.main(list(argv)) == 0
    out = capsys.readouterr()
    return out.out


def test_heatmap_text_all_ranges(record, capsys):
    out = run_report(capsys, "heatmap", "-i", record, "--resol", "6", "16",
                     "--draw-range", "all")
    assert out == """\
9999000000003333
9999000000003333
9999000000003333
9999000055553333
9999000055553333
9999000055553333
# access_frequency: 0123456789 (0.0 % to 100.0 % access rate; blank: not monitored)
# x-axis: space 512.000 KiB in 2 monitored ranges, the gaps between them cut out:
#   columns 0-7: [0x10000, 0x50000) (256.000 KiB)
#   columns 8-15: [0x1000000, 0x1040000) (256.000 KiB)
# y-axis: time [0 ns, 2.400 s) (2.400 s)
# resolution: 16x6 (32.000 KiB and 400 ms for each character)
"""


def test_heatmap_text_hottest_range_by_default(record, capsys):
    out = run_report(capsys, "heatmap", "-i", record, "--resol", "2", "16")
    assert out == """\
9999999900000000
9999999900000000
# access_frequency: 0123456789 (0.0 % to 100.0 % access rate; blank: not monitored)
# x-axis: space [0x10000, 0x50000) (256.000 KiB; the hottest of 2 monitored ranges)
# y-axis: time [0 ns, 2.400 s) (2.400 s)
# resolution: 16x2 (16.000 KiB and 1.200 s for each character)
"""


def test_heatmap_text_zoomed(record, capsys):
    out = run_report(capsys, "heatmap", "-i", record, "--resol", "3", "8", "--address-range",
                     "0x20000", "0x1010000", "--time-range", "1200ms", "2400ms",
                     "--style", "shades")
    assert out == """\
@@....++
@@....++
@@....++
# access_frequency: .,:-=+*#%@ (0.0 % to 100.0 % access rate; blank: not monitored)
# x-axis: space 256.000 KiB in 2 monitored ranges, the gaps between them cut out:
#   columns 0-5: [0x20000, 0x50000) (192.000 KiB)
#   columns 6-7: [0x1000000, 0x1010000) (64.000 KiB)
# y-axis: time [1.200 s, 2.400 s) (1.200 s)
# resolution: 8x3 (32.000 KiB and 400 ms for each character)
"""


def test_heatmap_raw(record, capsys):
    out = run_report(capsys, "heatmap", "-i", record, "--resol", "2", "4", "--output", "raw",
                     "--draw-range", "all")
    assert out == "".join(f"{t}\t{a}\t{v}\n" for t, row in (
        (0, (100, 0, 0, 30)), (1_200_000_000, (100, 0, 50, 30)))
        for a, v in zip((0x10000, 0x30000, 0x1000000, 0x1020000), row, strict=True))


def test_heatmap_matrix_averages_partial_cells(record):
    """A cell half over a 100 % region and half over a 0 % one shows 50 %; a row spanning the
    switch of the warm range shows the time average."""
    (series,) = group_series(read_record(record))
    hm = heatmap.build(series.snapshots, 3, 3, draw_range="hottest")
    assert hm.ranges == [(0x10000, 0x50000)]
    # 256 KiB in 3 columns: the middle one is [85.3, 170.7) KiB, half hot, half cold
    assert hm.values[:, 1] == pytest.approx([50.0] * 3)
    hm = heatmap.build(series.snapshots, 3, 1, address_range=synthetic.WARM)
    assert hm.values[:, 0] == pytest.approx([0.0, 25.0, 50.0])  # 1.2 s is mid row 1


def test_wss_matches_damo(record, capsys):
    out = run_report(capsys, "wss", "-i", record, "--exclude-samples", "0")
    assert out == """\
# target_id\t0
# <percentile> <wss>
# avr:\t320.000 KiB
  0     256.000 KiB |***************************************                    |
 25     256.000 KiB |***************************************                    |
 50     384.000 KiB |********************************************************** |
 75     384.000 KiB |********************************************************** |
100     384.000 KiB |********************************************************** |
"""
    damo = subprocess.run([DAMO, "report", "wss", "--input", record, "--exclude_samples", "0"],
                          capture_output=True, text=True, env=_damo_env(), check=True)
    assert damo.stdout == out
    # damo's default skips 20 snapshots: the same numbers with --exclude-samples 20 (damond's
    # own default skips at most a quarter of a record: see the test below)
    twenty = run_report(capsys, "wss", "-i", record, "--raw-number", "--sortby", "time",
                        "--exclude-samples", "20")
    damo = subprocess.run([DAMO, "report", "wss", "--input", record, "--raw_number",
                           "--sortby", "time"],
                          capture_output=True, text=True, env=_damo_env(), check=True)
    assert damo.stdout == twenty
    assert "# avr:\t393216" in twenty


def test_wss_default_never_discards_a_short_record(tmp_path, capsys):
    """damo's fixed default of 20 left an 18-snapshot record with only ``# no snapshot``."""
    path = synthetic.write(tmp_path / "short.data", nr_snapshots=18)
    assert len(read_record(path)) == 18
    assert report.main(["wss", "-i", path, "--raw-number", "--all-wss", "--sortby", "time"]) == 0
    out = capsys.readouterr()
    sizes = [line for line in out.out.splitlines() if not line.startswith("#")]
    assert len(sizes) == 18 - 4  # a quarter, rounded down, is skipped
    assert out.err == ("damond report: skipped the first 4 of 18 snapshots (monitoring's "
                       "start; damo skips 20, damond at most a quarter); --exclude-samples N "
                       "chooses, 0 keeps all\n")
    # the user's own number is obeyed, and an empty result says why and what to do
    assert report.main(["wss", "-i", path, "--exclude-samples", "20"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[-1] == ("# no snapshot: all 18 snapshots were skipped by "
                                        "--exclude-samples 20; --exclude-samples 0 keeps them")
    assert out.err == ""
    assert report.main(["wss", "-i", path, "--exclude-samples", "0"]) == 0
    assert capsys.readouterr().err == ""


def test_wss_per_target_and_collapsed(tmp_path, capsys):
    path = synthetic.write(tmp_path / "two.data", targets=2)
    out = run_report(capsys, "wss", "-i", path, "--exclude-samples", "0", "--raw-number",
                     "--range", "0", "101", "50")
    assert out.splitlines() == [
        "# target_id\t0", "# <percentile> <wss>", "# avr:\t655360",
        f"  0 {524288:>15} |{'*' * 39}{' ' * 20}|",
        f" 50 {786432:>15} |{'*' * 58} |",  # damo's bar rounding: 59 * x / x = 58.99...
        f"100 {786432:>15} |{'*' * 58} |",
    ]
    out = run_report(capsys, "wss", "-i", path, "--exclude-samples", "0", "--raw-number",
                     "--per-target", "--range", "50", "51", "1")
    assert [line for line in out.splitlines() if not line.startswith("#")] == [
        f" 50 {393216:>15} |{'*' * 58} |"] * 2


def test_access_latest_snapshot(record, capsys):
    out = run_report(capsys, "access", "-i", record)
    assert out == """\
# kdamond 0, context 0, target 0: snapshot 23 (0-based, of 24), time [2.300 s, 2.400 s) \
(100 ms) since the recording started
# intervals: sample 5 ms, aggr 100 ms (20 samples per aggregation)
#  start           end                    size  access  samples      age  aggrs
0  0x000000010000  0x000000030000  128.000 KiB   100 %       20  2.300 s     23
1  0x000000030000  0x000000050000  128.000 KiB     0 %        0  2.300 s     23
2  0x000001000000  0x000001020000  128.000 KiB    50 %       10  1.100 s     11
3  0x000001020000  0x000001040000  128.000 KiB    30 %        6  2.300 s     23
# 4 regions, 512.000 KiB; accessed: 384.000 KiB
"""


def test_access_chosen_snapshot_of_each_target(tmp_path, capsys):
    path = synthetic.write(tmp_path / "two.data", targets=2)
    out = run_report(capsys, "access", "-i", path, "--snapshot", "0")
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    assert blocks[1].splitlines()[0].startswith("# kdamond 0, context 0, target 1: snapshot 0 ")
    assert "0  0x000100010000  0x000100030000  128.000 KiB   100 %       20  0 ns      0" in out
    assert report.main(["access", "-i", path, "--snapshot", "24", "--target", "1"]) == 1
    assert "no snapshot 24: target 1 has 24" in capsys.readouterr().err


def test_every_output_type_reports_the_same(tmp_path, capsys):
    paths = {t: synthetic.write(tmp_path / t, t) for t in ("json_compressed", "json",
                                                           "perf_script")}
    access = {t: run_report(capsys, "access", "-i", p, "--snapshot", "5")
              for t, p in paths.items()}
    assert access["json"] == access["json_compressed"]
    # perf_script carries no intervals: samples and ages in aggregations only
    assert "0  0x000000010000  0x000000030000  128.000 KiB       -       20    -      5" in (
        access["perf_script"])
    grids = {t: run_report(capsys, "heatmap", "-i", p, "--resol", "2", "16", "--draw-range",
                           "all").splitlines()[:2] for t, p in paths.items()}
    assert grids["json"] == grids["perf_script"] == ["9999000000003333", "9999000055553333"]


def test_errors_are_one_line(tmp_path, capsys):
    assert report.main(["wss", "-i", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("damond report: cannot read ") and err.count("\n") == 1
    bad = tmp_path / "bad"
    bad.write_text("[{\"snapshots\": 5}]")
    assert report.main(["access", "-i", str(bad)]) == 1
    assert "not a damo record file" in capsys.readouterr().err
    assert report.main(["access", "-i", "/etc/passwd"]) == 1
    assert capsys.readouterr().err == (
        "damond report: /etc/passwd is not a damo record file: text without a single "
        "damon:damon_aggregated trace line\n")
    path = synthetic.write(tmp_path / "ok")
    assert report.main(["heatmap", "-i", path, "--output", str(tmp_path / "x.bmp")]) == 1
    assert "unsupported image type 'bmp'" in capsys.readouterr().err
    assert report.main(["heatmap", "-i", path, "--address-range", "0x2000000", "0x3000000"]) == 1
    assert "nothing was monitored in [0x2000000, 0x3000000)" in capsys.readouterr().err


def test_monitored_ranges_merge_touching_and_overlapping():
    class S:  # the two fields monitored_ranges reads
        def __init__(self, regions):
            self.start = np.array([r[0] for r in regions], dtype=np.uint64)
            self.end = np.array([r[1] for r in regions], dtype=np.uint64)

    snaps = [S([(10, 20), (20, 30), (100, 110)]), S([(25, 40), (200, 210)]), S([(5, 10)])]
    assert heatmap.monitored_ranges(snaps) == [(5, 40), (100, 110), (200, 210)]


def _damo_env() -> dict:
    import tempfile

    return {**os.environ, "HOME": tempfile.mkdtemp(prefix="damo-home-")}
