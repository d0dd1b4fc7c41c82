"""damo 3.4.3, unmodified, drives damond under ``damond exec`` on a real workload."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.fuse.conftest import needs_fuse, run_exec

pytestmark = [needs_fuse, pytest.mark.slow]

DAMO = shutil.which("damo", path=os.path.dirname(sys.executable))
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"

if DAMO is None:
    pytestmark.append(pytest.mark.skip(reason="damo (a test dependency) is not installed"))


@pytest.fixture
def workload():
    """The hot/cold workload: its pid and address ranges."""
    proc = subprocess.Popen([sys.executable, "-m", "damond.tools.workload", "hotcold"],
                            stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    yield info
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def env(daemon):
    """damo's environment: its own HOME (damo keeps a feature cache there)."""
    home = os.path.join(daemon.workdir, "home")
    os.makedirs(home)
    return {**os.environ, "HOME": home, "PATH": f"{os.path.dirname(sys.executable)}:"
            f"{os.environ.get('PATH', '/usr/bin:/bin')}"}


def damo_exec(daemon, env, script: str) -> subprocess.CompletedProcess:
    return run_exec(daemon.socket, "bash", "-c", script, env=env, timeout=180)


def test_damo_features_lists_what_damond_offers(daemon, env):
    out = damo_exec(daemon, env, "damo features")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert lines["interface/damon_sysfs"] == "Supported"
    assert lines["interface/damon_debugfs"] == "Supported"
    assert lines["sysfs/vaddr"] == "Supported"
    assert lines["sysfs/schemes"] == "Supported"
    assert lines["debugfs/schemes"] == "Supported"


def test_damo_start_tune_stop_on_a_workload(daemon, env, workload):
    pid = workload["pid"]
    out = damo_exec(daemon, env, f"""
        set -e
        damo start {pid}
        cat {ADMIN}/0/state {ADMIN}/0/contexts/0/targets/0/pid_target
        damo tune --sample 10000 --aggr 200000 {pid}
        cat {ADMIN}/0/state {ADMIN}/0/contexts/0/monitoring_attrs/intervals/sample_us
        damo stop
        cat {ADMIN}/0/state
    """)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split() == ["on", str(pid), "on", "10000", "off"]


def test_damo_start_from_a_kdamonds_file_with_pageout(daemon, env, workload):
    with open(os.path.join(FIXTURES, "damo_kdamonds_vaddr_pageout.json")) as f:
        config = json.load(f)
    config["kdamonds"][0]["contexts"][0]["targets"][0]["pid"] = workload["pid"]
    path = os.path.join(daemon.workdir, "kdamonds.json")
    with open(path, "w") as f:
        json.dump(config, f)
    scheme = f"{ADMIN}/0/contexts/0/schemes/0"
    out = damo_exec(daemon, env, f"""
        set -e
        damo start {path}
        cat {ADMIN}/0/state {scheme}/action {scheme}/access_pattern/age/min
        damo stop
    """)
    assert out.returncode == 0, out.stdout + out.stderr
    state, action, min_age = out.stdout.split()
    assert (state, action) == ("on", "pageout")
    # 30 s in aggregation intervals of 100 ms, as damo writes it
    assert int(min_age) == 300


def test_damo_report_access_reads_live_snapshots(daemon, env, workload):
    pid = workload["pid"]
    probe = damo_exec(daemon, env, f"""
        echo 1 > {ADMIN}/nr_kdamonds && echo 1 > {ADMIN}/0/contexts/nr_contexts &&
        echo 1 > {ADMIN}/0/contexts/0/schemes/nr_schemes &&
        test -d {ADMIN}/0/contexts/0/schemes/0/tried_regions; r=$?
        echo 0 > {ADMIN}/nr_kdamonds; exit $r""")
    if probe.returncode != 0:
        pytest.skip("damond's sysfs tree has no tried_regions directories yet (the Linux 6.2+ "
                    "modern-interface part): damo report access needs them")
    out = damo_exec(daemon, env, f"""
        set -e
        damo start {pid}
        sleep 3
        damo report access
        damo stop
    """)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "total size:" in out.stdout, out.stdout
    # the workload's hot mapping is seen accessed in the snapshot
    assert re.search(r"access [1-9][0-9,]* hz", out.stdout), out.stdout


def test_damo_record_snapshots_through_tried_regions(daemon, env, workload, tmp_path):
    """``damo record --snapshot DELAY COUNT --do_record access`` takes its access data from
    ``tried_regions`` snapshots (``update_schemes_tried_regions``), never from the tracepoint:
    with a tracer merely present on PATH (damo insists on finding one, but runs it only for
    the tracepoint and cpu_profile modes) it records damond's monitoring of the workload."""
    if not (shutil.which("perf", path=env["PATH"]) or shutil.which("trace-cmd", path=env["PATH"])):
        pytest.skip("damo record insists on perf or trace-cmd on PATH (quickstart test "
                    "installs trace-cmd)")
    out_file = tmp_path / "rec.data"
    pid = workload["pid"]
    out = damo_exec(daemon, env, f"""
        set -e
        damo record {pid} --snapshot 1s 2 --do_record access -o {out_file}
        echo "nr_kdamonds=$(cat {ADMIN}/nr_kdamonds)"
        damo report access -i {out_file}
    """)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out_file.exists()
    assert not (tmp_path / "rec.data.profile").exists()  # no profiler ran
    # damo took the kdamond it set up away again, as it found the tree
    assert "nr_kdamonds=0\n" in out.stdout, out.stdout
    # two snapshots, each with the workload's hot mapping seen accessed
    snapshots = out.stdout.split("recorded for")[1:]
    assert len(snapshots) == 2, out.stdout
    for snap in snapshots:
        assert "total size:" in snap, snap
        assert re.search(r"access [1-9][0-9,]* hz", snap), snap


def test_damo_record_needs_perf_or_trace_cmd(daemon, env, workload, tmp_path):
    """damo 3.4.3's record checks for perf or trace-cmd before anything else, even in its
    --snapshot mode (which reads tried_regions, not the tracepoint): without them it stops."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "cat", "uname", "which", "env", "sh"):
        found = shutil.which(tool)
        if found:
            (bare / tool).symlink_to(found)
    no_tracers = {**env, "PATH": f"{os.path.dirname(sys.executable)}:{bare}"}
    out = damo_exec(daemon, no_tracers,
                    f"damo record --snapshot 1s 2 -o {tmp_path}/rec.data {workload['pid']}")
    assert "Please install trace-cmd or perf and retry" in out.stdout + out.stderr
    assert not (tmp_path / "rec.data").exists()
