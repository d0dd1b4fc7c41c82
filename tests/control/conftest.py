"""A real ``damond serve`` per test, and small blocking clients that speak its protocol.

The daemon runs as a subprocess exactly as a user starts it (``damond serve --socket PATH
--seed N``); every test talks to it over the real unix socket. Teardown sends SIGTERM and
checks the promised shutdown: exit status 0 and the socket file removed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

DAMOND = os.path.join(os.path.dirname(sys.executable), "damond")
START_TIMEOUT_S = 20.0
STATUS = re.compile(r"^(OK|ERR [A-Z0-9]+ .*: .*)$")


def is_status(line: str) -> bool:
    return line == "OK" or line.startswith("ERR ")


class Conn:
    """One blocking connection. ``cmd(line)`` sends one single-command line and returns
    ``(data_lines, status_line)``."""

    def __init__(self, path: str, timeout: float = 20.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def readline(self) -> str:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unterminated: {self._buf!r}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def read_until(self, marker: bytes) -> bytes:
        """Raw bytes up to and including ``marker`` (for prompts, which end no line)."""
        while marker not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unterminated: {self._buf!r}")
            self._buf += chunk
        head, self._buf = self._buf.split(marker, 1)
        return head + marker

    def read_reply(self) -> tuple[list[str], str]:
        data = []
        while True:
            line = self.readline()
            if is_status(line):
                return data, line
            data.append(line)

    def cmd(self, line: str) -> tuple[list[str], str]:
        self.send(line + "\n")
        return self.read_reply()

    def ok(self, line: str) -> list[str]:
        """Run a command that must succeed; its data lines (notes removed)."""
        data, status = self.cmd(line)
        assert status == "OK", f"{line!r} -> {status} {data}"
        return [d for d in data if not d.startswith("# ")]

    def value(self, path: str) -> str:
        lines = self.ok(f"cat {path}")
        return "\n".join(lines)

    def err(self, line: str) -> str:
        """Run a command that must fail; its errno name."""
        data, status = self.cmd(line)
        assert status.startswith("ERR "), f"{line!r} -> {status} {data}"
        assert STATUS.match(status), status
        return status.split()[1]


def transcript(path: str, data: bytes | str, timeout: float = 20.0) -> list[str]:
    """Send everything, half-close, and return every line the daemon answered until it
    closed the connection."""
    with Conn(path, timeout) as c:
        c.send(data)
        c.sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := c.sock.recv(65536):
            out += chunk
    text = out.decode()
    assert text == "" or text.endswith("\n"), text[-200:]
    return text.split("\n")[:-1]


class DamondProcess:
    """A running ``damond serve``."""

    def __init__(self, path: str, args: list[str], *, env: dict | None = None,
                 preexec_fn=None, pass_fds=()) -> None:
        self.path = path
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the daemon
        self.proc = subprocess.Popen(
            [DAMOND, "serve", *args], stdout=self.log, stderr=subprocess.STDOUT,
            env=env, preexec_fn=preexec_fn, pass_fds=pass_fds)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"damond serve exited {self.proc.returncode}: {self.output()}")
            try:
                with Conn(self.path, timeout=2) as c:
                    assert c.cmd("pwd")[1] == "OK"
                return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
        raise RuntimeError(f"damond serve did not listen on {self.path}: {self.output()}")

    def conn(self) -> Conn:
        return Conn(self.path)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        with self.conn() as c:
            return c.cmd("pwd") == (["/sys/kernel/mm/damon/admin"], "OK")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def sockdir() -> Iterator[str]:
    """A short directory for sockets (sun_path is limited to 108 bytes)."""
    d = tempfile.mkdtemp(prefix="damond-t-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_damond(sockdir):
    """``start_damond(*extra_args, seed=1, **popen) -> DamondProcess``; every daemon is
    stopped with SIGTERM at teardown, which must exit 0 and remove its socket."""
    started: list[DamondProcess] = []

    def start(*extra: str, seed: int = 1, path: str | None = None,
              **kwargs) -> DamondProcess:
        path = path or os.path.join(sockdir, f"d{len(started)}.sock")
        d = DamondProcess(path, ["--socket", path, "--seed", str(seed), *extra], **kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        alive = d.proc.poll() is None
        code = d.stop()
        if alive:
            assert code == 0, f"damond exited {code}: {d.output()}"
            assert not os.path.exists(d.path), "the socket was not removed at exit"
        assert "Traceback" not in d.output(), d.output()


@pytest.fixture
def damond(start_damond) -> DamondProcess:
    return start_damond()


@pytest.fixture
def conn(damond) -> Iterator[Conn]:
    with damond.conn() as c:
        yield c


def start_sim_kdamond(c: Conn, index: int = 0) -> None:
    """One kdamond on the ``sim`` set with default attributes, running."""
    c.ok(f"echo {index + 1} > kdamonds/nr_kdamonds")
    k = f"kdamonds/{index}"
    c.ok(f"echo 1 > {k}/contexts/nr_contexts")
    c.ok(f"echo sim > {k}/contexts/0/operations")
    c.ok(f"echo 1 > {k}/contexts/0/targets/nr_targets")
    c.ok(f"echo on > {k}/state")


@pytest.fixture
def child_pids() -> Iterator[list[int]]:
    """Pids of two live child processes (the documentation's ``<workload>``, 42 and 4242)."""
    procs = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    yield [p.pid for p in procs]
    for p in procs:
        p.kill()
        p.wait()


def walk_files(c: Conn, root: str) -> list[str]:
    """Every file below ``root`` (absolute paths), found through ``ls``."""
    files = []
    for name in c.ok(f"ls {root}"):
        if name.endswith("/"):
            files += walk_files(c, f"{root}/{name[:-1]}")
        else:
            files.append(f"{root}/{name}")
    return files


def dump(c: Conn, roots=("/sys/kernel/mm/damon/admin", "/sys/kernel/debug/damon")) -> dict:
    """Every readable file's reply (data lines and status) below ``roots``."""
    out = {}
    for root in roots:
        for path in walk_files(c, root):
            out[path] = c.cmd(f"cat {path}")
    return out


def avail_operations() -> list[str]:
    from damond.ops.registry import OperationsRegistry

    return OperationsRegistry().avail_operations()


needs_vaddr = pytest.mark.xfail("vaddr" not in avail_operations(),
                                reason="vaddr not implemented yet", strict=False)
