"""The ways users reach the socket: socat, ``damond ctl`` with arguments or standard input."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.control.conftest import DAMOND

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")


def socat(path: str, text: str) -> str:
    proc = subprocess.run(["socat", "-", f"UNIX-CONNECT:{path}"], input=text.encode(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


def ctl(path: str, *commands: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DAMOND, "ctl", "--socket", path, *commands], input=stdin,
                          capture_output=True, timeout=30)


def test_protocol_example_through_socat(damond):
    # protocol.md's example, verbatim apart from the socket path
    out = socat(damond.path, "echo 1 > kdamonds/nr_kdamonds\ncat kdamonds/0/state\n"
                             "echo bogus > kdamonds/0/state\n")
    assert out.splitlines() == [
        "OK", "off", "OK",
        "ERR EINVAL kdamonds/0/state: 'bogus' is not one of on, off, commit, "
        "commit_schemes_quota_goals, update_schemes_stats, update_schemes_tried_bytes, "
        "update_schemes_tried_regions, clear_schemes_tried_regions, "
        "update_schemes_effective_quotas, update_tuned_intervals"]


def test_socat_chains(damond):
    out = socat(damond.path, "cat kdamonds/nr_kdamonds; cat nosuch && pwd; pwd\n")
    lines = out.splitlines()
    assert lines[:2] == ["0", "OK"]
    assert lines[2].startswith("ERR ENOENT nosuch: ")
    assert lines[3:] == ["/sys/kernel/mm/damon/admin", "OK"]


def test_ctl_arguments_stdout_stderr_and_exit_status(damond):
    ok = ctl(damond.path, "echo 1 > kdamonds/nr", "cat kdamonds/nr_kdamonds", "ls kdamonds/0")
    assert ok.returncode == 0
    assert ok.stdout.decode().splitlines() == ["1", "contexts/", "pid", "refresh_ms", "state"]
    assert ok.stderr.decode().splitlines() == [
        "# 'nr' is accepted as 'nr_kdamonds' (the kernel's file name)"]
    bad = ctl(damond.path, "cat kdamonds/nr_kdamonds", "echo bogus > kdamonds/0/state", "pwd")
    assert bad.returncode == 1
    assert bad.stdout.decode().splitlines() == ["1", "/sys/kernel/mm/damon/admin"]
    assert bad.stderr.decode().startswith("ERR EINVAL kdamonds/0/state: ")


def test_ctl_unescapes_data_lines(damond):
    out = ctl(damond.path, "echo OK", "echo 'ERR x'", "echo '# not a note'", r"echo '\x'")
    assert out.returncode == 0
    assert out.stdout.decode().splitlines() == ["OK", "ERR x", "# not a note", "\\x"]
    assert out.stderr == b""


def test_ctl_stdin_paste_and_trace(damond):
    paste = b"""\
    # cd /sys/kernel/mm/damon/admin/
    # echo 1 > kdamonds/nr && echo 1 > kdamonds/0/contexts/nr
    # echo sim > kdamonds/0/contexts/0/operations
    # echo 1 > kdamonds/0/contexts/0/targets/nr
    # echo on > kdamonds/0/state
    # trace 5
    # cat kdamonds/0/state
"""
    out = ctl(damond.path, stdin=paste)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 6 and lines[-1] == "on"
    assert all("damon:damon_aggregated" in line for line in lines[:5])


def test_ctl_without_daemon(sockdir):
    out = ctl(f"{sockdir}/nothing.sock", "pwd")
    assert out.returncode == 2
    assert b"cannot connect" in out.stderr


@pytest.mark.parametrize("pipeline", ["'trace 100' | head -1", "'trace 1000' | head -3",
                                      "'tree /' 'tree /' 'tree /' | head -1"])
def test_ctl_into_a_closed_pipe_exits_quietly(damond, pipeline):
    """``damond ctl ... | head`` ends like a Unix tool whose reader left: status 0 or 141
    (SIGPIPE), nothing on stderr; it is not "daemon cannot be reached" (2)."""
    from tests.control.conftest import start_sim_kdamond

    with damond.conn() as c:
        if c.value("kdamonds/nr_kdamonds") == "0":
            start_sim_kdamond(c)
    out = subprocess.run(["bash", "-c", f"set -o pipefail; {DAMOND} ctl --socket "
                          f"{damond.path} {pipeline}; echo status=$? >&2"],
                         capture_output=True, text=True, timeout=60)
    *stderr, last = out.stderr.splitlines()
    assert stderr == []
    assert last in ("status=0", "status=141"), out.stderr
    assert out.stdout.strip()
