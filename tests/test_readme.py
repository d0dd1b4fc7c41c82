"""The README's and docs' examples work as written (with the socket path moved to a temp dir),
after ./quickstart has put ``damond`` on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.control.conftest import damond, sockdir, start_damond  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))


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
    assert lines[7] == "OK" and lines[-2:] == ["OK", "OK"]   # trace's end, then 'off'
    events = [line for line in lines[8:-2] if not line.startswith("# ")]
    assert len(events) == 3 and all("damon:damon_aggregated: target_id=0" in e for e in events)
    # the ctl example, and the rest in order: test_readme_control_examples_in_order


def _daemon_pid(d) -> int:
    return d.proc.pid


def _code_blocks(path: Path, lang: str = r"\w*") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


def test_examples_run_python_as_the_venv_python():
    """A bare ``python`` (or ``python3``) is some other interpreter, without damond: examples
    that run a damond module call ``.venv/bin/python``, which ./quickstart created."""
    bare = re.compile(r"(?<![\w/.-])python3? -m damond")
    offenders = [f"{path.name}: {line.strip()}"
                 for path in [README, *DOCS]
                 for block in _code_blocks(path)
                 for line in block.splitlines() if bare.search(line)]
    offenders += [f"{path.name}: {m}" for path in [README, *DOCS]
                  for m in re.findall(r"`[^`\n]*`", path.read_text()) if bare.search(m)]
    assert offenders == []


def _install_launcher(bin_dir: Path) -> subprocess.CompletedProcess:
    """Runs quickstart's own install_launcher (not the whole quickstart: no apt-get, no pip)."""
    script = (REPO / "quickstart").read_text()
    function = re.search(r"^install_launcher\(\) \{\n.*?^\}\n", script, re.S | re.M)
    assert function, "quickstart has no install_launcher()"
    return subprocess.run(["bash", "-c", function.group(0) + "install_launcher"], cwd=REPO,
                          env={**os.environ, "DAMOND_BIN_DIR": str(bin_dir)},
                          capture_output=True, text=True, timeout=30)


def test_quickstart_puts_damond_on_path(tmp_path):
    out = _install_launcher(tmp_path)
    link = tmp_path / "damond"
    assert out.returncode == 0, out.stderr
    assert os.readlink(link) == str(REPO / ".venv" / "bin" / "damond")
    assert f"installed {link} -> " in out.stdout
    # run again (a second quickstart): the link is replaced, not refused
    assert _install_launcher(tmp_path).returncode == 0 and link.is_symlink()


def test_quickstart_leaves_a_foreign_damond_alone_and_says_how_otherwise(tmp_path):
    (tmp_path / "damond").write_text("#!/bin/sh\n")
    out = _install_launcher(tmp_path)
    assert out.returncode == 0 and "left alone" in out.stdout
    assert not (tmp_path / "damond").is_symlink()

    out = _install_launcher(tmp_path / "missing")   # not writable: say how to use PATH
    assert out.returncode == 0 and 'export PATH="' in out.stdout
    assert not (tmp_path / "missing").exists()


def test_api_doc_example_prints_results_quietly(tmp_path):
    """docs/api.md's blocks are one script: run as printed, it shows aggregations and scheme
    statistics, and the library prints no log lines of its own."""
    script = tmp_path / "example.py"
    script.write_text("\n".join(_code_blocks(REPO / "docs" / "api.md", "python")))
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    head, *lines = out.stdout.splitlines()
    assert re.fullmatch(r"[1-9]\d* aggregations; the last one:", head), head
    regions = [line for line in lines if "damon:damon_aggregated: target_id=0" in line]
    assert regions and lines[-1].startswith("pageout scheme: SchemeStats(nr_tried=")
    assert len(lines) == len(regions) + 1   # nothing else: no log lines


# -- the control examples exactly as printed, in order, on a fresh daemon ------------------------

CONTROL_EXAMPLES = ("**With socat**", "**With `damond ctl`**", 'scheme="4096 8192')


def _example(marker: str) -> str:
    if marker.startswith("scheme="):  # the debugfs block starts with its first line
        text = README.read_text()
        start = text.rindex("```sh\n", 0, text.index(marker))
        return text[start + len("```sh\n"):].split("```", 1)[0]
    return _block_after(marker)


def _run_example(marker: str, d) -> subprocess.CompletedProcess:
    """Run the README's block as printed; only the socket path is the test's own."""
    out = _run(_example(marker), d.path)
    assert out.returncode == 0, (marker, out.stdout, out.stderr)
    return out


def _kill_example_workload(d) -> None:
    """The ctl example's 'sleep 600 &' outlives its shell: end it."""
    import contextlib

    from tests.control.conftest import Conn

    with Conn(d.path) as c:
        pid = int(c.value("kdamonds/0/contexts/0/targets/0/pid_target"))
        c.cmd("echo off > kdamonds/0/state")
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def test_readme_ctl_example_alone_on_a_fresh_daemon(damond):  # noqa: F811
    try:
        out = _run_example("**With `damond ctl`**", damond)
        assert out.stdout.strip().splitlines() == [str(_daemon_pid(damond))]
    finally:
        _kill_example_workload(damond)


def test_readme_control_examples_in_order(damond):  # noqa: F811
    try:
        outs = [_run_example(marker, damond) for marker in CONTROL_EXAMPLES]
    finally:
        _kill_example_workload(damond)
    socat, ctl, debugfs = outs
    assert socat.stdout.splitlines()[-2:] == ["OK", "OK"]
    assert ctl.stdout.strip().splitlines() == [str(_daemon_pid(damond))]
    # a full scheme line is installed (and read back with its five statistics), no note
    assert debugfs.stdout.splitlines() == [
        "4096 8192 0 5 10 20 2 10 1073741824 1000 0 0 100 1 5000000 600 500 300 0 0 0 0 0"]
    assert "# " not in debugfs.stderr
