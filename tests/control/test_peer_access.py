"""The ptrace read-access rule damond applies to non-root writers, on real processes: a
process of another uid, one that changed credentials without exec (not dumpable), one with
capabilities the peer lacks, and the peer's own plain process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import pytest

from damond.control.peer_access import read_access_refusal

NOBODY = 65534
GONE = 0  # a peer pid with no /proc entry: its credentials come from SO_PEERCRED only


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture
def procs():
    started: list[subprocess.Popen | int] = []
    yield started
    for p in started:
        pid = p if isinstance(p, int) else p.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if isinstance(p, int):
            os.waitpid(p, 0)
        else:
            p.wait()


def test_own_plain_process_is_readable_others_are_not(procs):
    own = subprocess.Popen(["sleep", "60"], preexec_fn=_as_nobody)
    root = subprocess.Popen(["sleep", "60"])
    procs += [own, root]
    time.sleep(0.1)  # exec done
    assert read_access_refusal(own.pid, GONE, NOBODY, NOBODY) is None
    assert "belongs to uid 0" in read_access_refusal(root.pid, GONE, NOBODY, NOBODY)
    assert "belongs to uid" in read_access_refusal(own.pid, GONE, 1000, 1000)
    assert read_access_refusal(2 ** 22 + 12345, GONE, NOBODY, NOBODY) is None  # no process


def test_a_process_that_dropped_privileges_without_exec_is_not_dumpable(procs):
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            _as_nobody()  # the kernel makes it non-dumpable (suid_dumpable is 0)
            time.sleep(60)
        finally:
            os._exit(0)
    procs.append(pid)
    time.sleep(0.2)
    if os.stat(f"/proc/{pid}/status").st_uid == NOBODY:
        pytest.skip("fs.suid_dumpable keeps such processes dumpable on this machine")
    assert "not dumpable" in read_access_refusal(pid, GONE, NOBODY, NOBODY)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed")
def test_a_process_with_capabilities_the_peer_lacks_is_refused(procs):
    p = subprocess.Popen(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                          "--clear-groups", "--inh-caps", "+sys_nice", "--ambient-caps",
                          "+sys_nice", "sleep", "60"])
    procs.append(p)
    time.sleep(0.3)
    with open(f"/proc/{p.pid}/status") as f:
        prm = next(line for line in f if line.startswith("CapPrm:"))
    if int(prm.split()[1], 16) == 0:
        pytest.skip("ambient capabilities are not available here")
    assert "capabilities this client lacks" in read_access_refusal(p.pid, GONE, NOBODY, NOBODY)
