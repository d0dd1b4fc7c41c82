"""Real daemons, real FUSE mounts, real damo.

Every test here starts ``damond serve`` as a subprocess on a private socket and mounts its files
with ``damond mount`` (or ``damond serve --mount``, or ``damond exec``) exactly as a user would.
They need root and ``/dev/fuse`` (and pyfuse3, built against libfuse3); without them they are
skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

DAMOND = os.path.join(os.path.dirname(sys.executable), "damond")
START_TIMEOUT_S = 20.0


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "FUSE mounts over sysfs paths and private mount namespaces need root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as e:
        return f"pyfuse3 is not installed ({e})"
    return None


REASON = _skip_reason()
needs_fuse = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def wait_for(predicate, timeout: float | None = None, what: str = "condition") -> None:
    # START_TIMEOUT_S is read at call time: the guest lane (10x slower) raises it
    deadline = time.monotonic() + (START_TIMEOUT_S if timeout is None else timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def fuse_mounts_under(path: str) -> list[str]:
    """damond's FUSE mounts at or below ``path`` (never stats the path: a hung mount would
    hang the test)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, right = line.partition(" - ")
            point = fields.split()[4]
            if (point == path or point.startswith(path + "/")) and \
                    right.split()[0] == "fuse.damond":
                found.append(point)
    return found


def fuse_mounted(path: str) -> bool:
    return path in fuse_mounts_under(path)


@dataclass
class Daemon:
    proc: subprocess.Popen
    socket: str
    workdir: str

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def start_daemon(workdir: str, *extra: str) -> Daemon:
    sock = os.path.join(workdir, "damond.sock")
    log = os.path.join(workdir, "serve.log")
    with open(log, "w") as stderr:
        proc = subprocess.Popen([DAMOND, "serve", "--socket", sock, "--seed", "1", *extra],
                                stdout=subprocess.DEVNULL, stderr=stderr)
    wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, what="the socket")
    if proc.poll() is not None:
        with open(log) as f:
            raise RuntimeError(f"damond serve exited with {proc.returncode}: {f.read()}")
    return Daemon(proc, sock, workdir)


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="damond-fuse-test-")
    yield d
    for point in fuse_mounts_under(d):  # a failed test's mount: never walk into it
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(workdir: str) -> Iterator[Daemon]:
    d = start_daemon(workdir)
    yield d
    d.stop()


def _answers(path: str) -> bool:
    try:
        os.stat(path)  # a dead mount left at the path answers ENOTCONN
    except OSError:
        return False
    return True


def start_mount(sock: str, mountpoint: str, *extra: str) -> subprocess.Popen:
    # a directory, or a dead mount (whose stat fails, so exist_ok would not do)
    with contextlib.suppress(FileExistsError):
        os.makedirs(mountpoint)
    proc = subprocess.Popen([DAMOND, "mount", mountpoint, "--socket", sock, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (fuse_mounted(mountpoint) and _answers(mountpoint))
             or proc.poll() is not None, what="the mount")
    if proc.poll() is not None:
        raise RuntimeError(f"damond mount exited with {proc.returncode}: {proc.stderr.read()}")
    return proc


def stop_mount(proc: subprocess.Popen, mountpoint: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if fuse_mounted(mountpoint):
        subprocess.run(["umount", "-l", mountpoint], check=False)


@pytest.fixture
def mounted(daemon: Daemon) -> Iterator[str]:
    """The daemon's sysfs files at ``<workdir>/mnt`` (so ``mnt/admin/kdamonds/...``)."""
    mnt = os.path.join(daemon.workdir, "mnt")
    proc = start_mount(daemon.socket, mnt)
    yield mnt
    stop_mount(proc, mnt)


def run_exec(sock: str, *cmd: str, timeout: float = 120, cwd: str | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """``damond exec --socket SOCK -- CMD``: stdout and stderr text, never raises on status."""
    return subprocess.run([DAMOND, "exec", "--socket", sock, "--", *cmd], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)
