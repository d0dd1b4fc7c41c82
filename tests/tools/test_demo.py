"""``damond demo`` as the quickstart runs it (shorter): a real program recorded, its
description readable (not the workload's raw JSON line), three reports."""

from __future__ import annotations

import re
import subprocess

from tests.control.conftest import DAMOND


def test_demo_prints_readable_output(tmp_path):
    out = tmp_path / "demo.data"
    proc = subprocess.run([DAMOND, "demo", "--seconds", "3", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("{")], proc.stdout
    assert re.search(r"^workload pid \d+: hot \[0x[0-9a-f]+, 0x[0-9a-f]+\) \(16 MiB\); "
                     r"cold \[0x[0-9a-f]+, 0x[0-9a-f]+\) \(64 MiB\)$", proc.stdout, re.M)
    for title in ("== the last snapshot", "== working set size", "== where and when"):
        assert any(line.startswith(title) for line in lines), title
    assert out.exists()
