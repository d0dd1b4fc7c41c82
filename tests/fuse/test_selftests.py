"""The kernel's own DAMON selftests, unmodified, run against damond under ``damond exec``.

The scripts in ``selftests/`` are Linux's ``tools/testing/selftests/damon`` as of v5.18 (and
v5.19's sysfs.sh); see ``selftests/README.md`` for their origin and license. A fresh daemon
per script: debugfs and sysfs contexts exclude each other, as in the kernel.
"""

from __future__ import annotations

import os

import pytest

from tests.fuse.conftest import needs_fuse, run_exec

pytestmark = [needs_fuse, pytest.mark.slow]

HERE = os.path.join(os.path.dirname(__file__), "selftests")
SCRIPTS = [
    ("v5.18", "sysfs.sh"),
    ("v5.19", "sysfs.sh"),
    ("v5.18", "debugfs_attrs.sh"),
    ("v5.18", "debugfs_schemes.sh"),
    ("v5.18", "debugfs_target_ids.sh"),
    ("v5.18", "debugfs_empty_targets.sh"),
    ("v5.18", "debugfs_duplicate_context_creation.sh"),
]


@pytest.mark.parametrize(("version", "script"), SCRIPTS, ids=[f"{v}/{s}" for v, s in SCRIPTS])
def test_kernel_selftest_passes(daemon, version, script):
    out = run_exec(daemon.socket, "bash", script, cwd=os.path.join(HERE, version))
    # kselftest: 0 pass, 1 fail, 4 skip (a skip would mean damond's files were not found)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "expected" not in out.stdout, out.stdout
