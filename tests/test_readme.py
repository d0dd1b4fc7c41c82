"""The README's examples work as written (with the socket path moved to a temp dir)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.control.conftest import damond, sockdir, start_damond  # noqa: F401 - fixtures

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(marker: str) -> str:
    text = README.read_text()
    start = text.index(marker)
    m = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert m, marker
    return m.group(1)


def _run(script: str, sock: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", script.replace("/tmp/damond.sock", sock)],
                          capture_output=True, text=True, env=env, timeout=60)


def test_readme_opens_with_the_two_quickstart_commands():
    first_block = README.read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line for line in first_block.splitlines() if line.strip()]
    assert [line.split("#")[0].strip() for line in lines] == ["./quickstart demo",
                                                             "./quickstart test"]


def test_readme_socat_and_ctl_examples(damond):  # noqa: F811
    out = _run(_block_after("**With socat**"), damond.path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:5] == ["OK"] * 5
    assert lines[5:7] == ["on", "OK"]
    assert lines[7] == "OK" and lines[-1] == "OK"
    events = [line for line in lines[8:-1] if not line.startswith("# ")]
    assert len(events) == 3 and all("damon:damon_aggregated: target_id=0" in e for e in events)

    script = _block_after("**With `damond ctl`**").replace("sleep 600", "sleep 30")
    out = _run(script, damond.path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(_daemon_pid(damond))


def _daemon_pid(d) -> int:
    return d.proc.pid
