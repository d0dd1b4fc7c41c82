"""Linux 6.18's DAMON selftests, unmodified, run against damond under ``damond exec``.

The files in ``selftests/v6.18/`` are ``tools/testing/selftests/damon`` of Linux 6.18.15 as
Debian ships its source (see ``selftests/README.md``). ``sysfs.sh`` checks the whole 6.18 sysfs
tree, file by file, with the kernel's errnos. The Python tests start real ``access_memory``
processes and judge damond by what its files report while they run.

The daemon of the Python tests runs with ``--cpu-budget 0``: they check the kernel's timing
(a quota reset every 100 ms, max_nr_regions met within 300 ms of a commit), which damond's CPU
budget would stretch on purpose on a host whose only access check is ``smaps``. Three tests
need page-level access checks (``page_idle``): on a host without it they are skipped here, with
the reason, and run in the guest kernel lane (``test_guest_selftests.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from damond.ops.access_check import availability
from tests.fuse.conftest import needs_fuse, run_exec, start_daemon

pytestmark = [needs_fuse, pytest.mark.slow]

V618 = os.path.join(os.path.dirname(__file__), "selftests", "v6.18")
#: run where the check is per VMA (smaps) as well as per page
ANY_CHECK = ["damos_quota.py", "damos_quota_goal.py", "damon_nr_regions.py",
             "sysfs_update_schemes_tried_regions_hang.py"]
#: need to tell a hot half of one mapping from its cold half: per-page checks only
PAGE_CHECK = ["damos_apply_interval.py", "damos_tried_regions.py",
              "sysfs_update_schemes_tried_regions_wss_estimation.py"]


def stage_v618(where) -> str:
    """The 6.18 scripts with ``access_memory`` and ``access_memory_even`` built, as the
    kselftest install has them (``TEST_GEN_FILES``)."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build the selftests' access_memory programs")
    for name in os.listdir(V618):
        shutil.copy(os.path.join(V618, name), where)
    for prog in ("access_memory", "access_memory_even"):
        subprocess.run(["gcc", "-O2", "-o", os.path.join(where, prog),
                        os.path.join(where, prog + ".c")], check=True)
    return str(where)


def run_selftest(workdir: str, staged: str, script: str, timeout: float = 300):
    """A fresh daemon (budget off) and one script under ``damond exec``; its output."""
    daemon = start_daemon(workdir, "--cpu-budget", "0")
    try:
        cmd = ("bash", script) if script.endswith(".sh") else ("python3", script)
        out = run_exec(daemon.socket, *cmd, cwd=staged, timeout=timeout)
        assert daemon.proc.poll() is None, "the daemon died"
    finally:
        daemon.stop()
    return out


@pytest.fixture
def staged(tmp_path) -> str:
    return stage_v618(tmp_path)


def test_sysfs_sh_618(daemon, staged):
    out = run_exec(daemon.socket, "bash", "sysfs.sh", cwd=staged, timeout=300)
    # kselftest: 0 pass, 1 fail, 4 skip (a skip would mean damond's files were not found)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "damon sysfs not found" not in out.stdout


def test_sysfs_sh_618_fails_on_a_wrong_tree(daemon, staged):
    """The script does judge: a tree that lacks a 6.18 file fails it."""
    bad = os.path.join(staged, "sysfs_bad.sh")
    with open(os.path.join(staged, "sysfs.sh")) as f:
        text = f.read()
    # ask for a file damond does not have, in the script's own words
    text = text.replace('ensure_file "$kdamond_dir/state" "exist" "600"',
                        'ensure_file "$kdamond_dir/no_such_file" "exist" "600"', 1)
    assert "no_such_file" in text
    with open(bad, "w") as f:
        f.write(text)
    out = run_exec(daemon.socket, "bash", "sysfs_bad.sh", cwd=staged, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr


@pytest.mark.parametrize("script", ANY_CHECK)
def test_python_selftest_618(workdir, staged, script):
    out = run_selftest(workdir, staged, script)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script", PAGE_CHECK)
def test_page_level_selftest_618(workdir, staged, script):
    ok, why = availability()["page_idle"]
    if not ok:
        pytest.skip(f"needs page-level access checks, and page_idle is unavailable here ({why});"
                    " smaps sees a mapping as a whole. Runs in the guest kernel lane.")
    out = run_selftest(workdir, staged, script)
    assert out.returncode == 0, out.stdout + out.stderr
