"""The kernel's selftests that judge by the kernel log or need page-level access checks, run
under ``damond exec`` inside the guest kernel (``pytest -m guest``, one qemu boot).

Linux 6.18's ``damos_tried_regions.py`` tells a hot part of one mapping from its cold part,
which only page_idle can do (the host's ``smaps`` sees the mapping as a whole);
``sysfs_update_removed_scheme_dir.sh`` clears the kernel log.

``debugfs_huge_count_read_write.sh`` starts with ``dmesg -C`` and fails on a kernel ``WARNING``:
on the host that would clear the host kernel's log, in the throw-away guest it harms nothing.
The guest kernel (6.12) has FUSE built in (``CONFIG_FUSE_FS=y``), ``/dev/fuse`` from devtmpfs
and the host's ``fusermount3`` and venv on its read-only root, so ``damond exec`` works there
as on the host. The script only reads the kernel log; the test also checks what the log cannot
say: that the helper really ran over damond's files (not the guest kernel's own DAMON debugfs
files under the mount), and that the daemon survived the 4 GiB-count reads and writes with its
state intact.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import tests.fuse.conftest as fuse_conftest
from damond.ops.access_check import availability
from tests.fuse.conftest import needs_fuse, run_exec
from tests.fuse.test_selftests_v618 import PAGE_CHECK, run_selftest, stage_v618

pytestmark = [needs_fuse, pytest.mark.guest]

# the daemon and the FUSE mount start ~10x slower under emulation
fuse_conftest.START_TIMEOUT_S = max(fuse_conftest.START_TIMEOUT_S, 120.0)

V518 = os.path.join(os.path.dirname(__file__), "selftests", "v5.18")
DBGFS = "/sys/kernel/debug/damon"
# the files of Linux 5.18's DAMON debugfs directory, as damond serves them
DBGFS_FILES = ("attrs", "init_regions", "kdamond_pid", "mk_contexts", "monitor_on",
               "rm_contexts", "schemes", "target_ids")


@pytest.fixture
def staged(tmp_path) -> str:
    """The v5.18 scripts with their helper program built, as the kselftest install has them."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build the selftest's huge_count_read_write helper")
    for name in os.listdir(V518):
        shutil.copy(os.path.join(V518, name), tmp_path)
    subprocess.run(["gcc", "-o", str(tmp_path / "huge_count_read_write"),
                    str(tmp_path / "huge_count_read_write.c")], check=True)
    return str(tmp_path)


def test_debugfs_huge_count_read_write(daemon, staged):
    before = run_exec(daemon.socket, "cat", f"{DBGFS}/attrs", f"{DBGFS}/target_ids")
    assert before.returncode == 0, before.stderr
    # refuse to run over anything but damond's mount (the guest kernel has its own files there)
    out = run_exec(daemon.socket, "bash", "-c",
                   f'grep -q " {DBGFS} fuse.damond " /proc/self/mounts || exit 99\n'
                   "exec bash debugfs_huge_count_read_write.sh", cwd=staged, timeout=600)
    # kselftest: 0 pass, 1 fail (a kernel WARNING), 4 skip
    assert out.returncode == 0, out.stdout + out.stderr
    for name in DBGFS_FILES:
        assert f"write_read_with_huge_count {DBGFS}/{name}\n" in out.stdout, out.stdout
    assert daemon.proc.poll() is None, "the daemon died"
    after = run_exec(daemon.socket, "cat", f"{DBGFS}/attrs", f"{DBGFS}/target_ids")
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout


# -- Linux 6.18's selftests that need page-level access checks or clear the kernel log ------

def test_v618_sysfs_update_removed_scheme_dir(workdir, tmp_path):
    """Starts vaddr monitoring of its own shell, removes the scheme's directory and asks for
    stats and tried regions of it; fails on a kernel ``BUG`` in the log (``dmesg -C`` first,
    so guest-only). damond must refuse nothing here and stay up."""
    staged = stage_v618(tmp_path)
    out = run_selftest(workdir, staged, "sysfs_update_removed_scheme_dir.sh", timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


#: of ``PAGE_CHECK``, the ones the emulated guest is fast enough for. ``damos_apply_interval.py``
#: and the WSS estimation watch an ``access_memory`` that runs 4 s of CPU time, and their
#: ``kdamonds.start()`` (about 150 file operations through FUSE) takes 16.5 s here: one store
#: costs ~108 ms under emulation (2 ms on the host), so the program is gone before the first
#: look and the scripts fail on an empty list. They run on hosts with page_idle.
GUEST_PAGE_CHECK = ["damos_tried_regions.py"]
assert set(GUEST_PAGE_CHECK) <= set(PAGE_CHECK)


@pytest.mark.parametrize("script", GUEST_PAGE_CHECK)
def test_v618_page_level_selftest(workdir, tmp_path, script):
    ok, why = availability()["page_idle"]
    assert ok, f"the guest kernel should offer page_idle: {why}"
    staged = stage_v618(tmp_path)
    # 830 s measured in CI (stop 17): ~11 passes of reading every tried region's files, each
    # file a path walk of FUSE requests at 40-80 ms apiece under emulation
    out = run_selftest(workdir, staged, script, timeout=1500)
    assert out.returncode == 0, out.stdout + out.stderr
