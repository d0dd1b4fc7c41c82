"""``damond serve`` run as systemd runs it: a real sd_notify listener, passed sockets, config
files and signals.

There is no systemd here, so the tests play the service manager: they bind the datagram
socket named in ``NOTIFY_SOCKET`` and read what the daemon sends, pass listening sockets as
fd 3.. with ``LISTEN_PID`` set to the daemon's own pid (a shell that execs the daemon knows it
as ``$$``), and send the signals ``systemctl stop``/``reload`` would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.control.conftest import DAMOND, Conn, dump, sockdir  # noqa: F401 - fixture

START_TIMEOUT_S = 20.0


class NotifyListener:
    """The service manager's end of sd_notify: a bound datagram socket."""

    def __init__(self, address: str) -> None:
        self.address = address  # what goes into NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to: str | bytes = ("\0" + address[1:]).encode() if address.startswith("@") \
            else address
        self.sock.bind(bind_to)
        #: (CLOCK_MONOTONIC µs at receipt, fields) per message, in order
        self.messages: list[tuple[int, dict[str, str]]] = []

    def close(self) -> None:
        self.sock.close()

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        self.messages.append((time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000, fields))
        return True

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], *, after: int = 0,
                 timeout: float = START_TIMEOUT_S) -> tuple[int, dict[str, str]]:
        """The first message from index ``after`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        i = after
        while True:
            while i < len(self.messages):
                if predicate(self.messages[i][1]):
                    return self.messages[i]
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such sd_notify message; got {self.messages}")
            self._receive(left)

    def drain(self, seconds: float) -> None:
        """Collect whatever arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)

    def fields(self, key: str) -> list[str]:
        return [f[key] for _, f in self.messages if key in f]


class Served:
    """A ``damond serve`` process started without waiting for it (the tests decide what
    "ready" means: the notify message, a connection...)."""

    def __init__(self, args: list[str], *, env: dict[str, str], socket_path: str | None,
                 shell_prefix: str = "", pass_fds=(), preexec_fn=None,
                 close_fds: bool = True, err_file=None) -> None:
        self.socket_path = socket_path
        #: standard error goes to this file (``err_file``: the caller's, e.g. to know its inode)
        self.err = err_file or tempfile.NamedTemporaryFile(prefix="damond-stderr-")  # noqa: SIM115
        argv = [DAMOND, "serve", *args]
        if shell_prefix:  # e.g. 'export LISTEN_PID=$$; ' before exec-ing the daemon
            quoted = " ".join(_sh_quote(a) for a in argv)
            argv = ["/bin/sh", "-c", f"{shell_prefix}exec {quoted}"]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.err, pass_fds=pass_fds,
                                     preexec_fn=preexec_fn, close_fds=close_fds)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        with open(self.err.name, errors="replace") as f:
            return f.read()

    def conn(self) -> Conn:
        assert self.socket_path
        return Conn(self.socket_path)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"damond exited {self.proc.returncode}: {self.stderr()}")
            try:
                with self.conn() as c:
                    if c.cmd("pwd")[1] == "OK":
                        return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
        raise RuntimeError(f"damond did not listen: {self.stderr()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()


def _sh_quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def base_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything systemd-ish it might have inherited."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                        "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM")}
    env.update(extra)
    return env


@pytest.fixture
def notify(sockdir) -> Iterator[NotifyListener]:  # noqa: F811
    listener = NotifyListener(os.path.join(sockdir, "notify"))
    yield listener
    listener.close()


@pytest.fixture
def serve(sockdir) -> Iterator[Callable[..., Served]]:  # noqa: F811
    """``serve(*args, config=None, env=None, socket=True, **popen)``: start ``damond serve``
    (with ``--socket`` in the test's directory unless ``socket=False``); every process still
    running at teardown is stopped with SIGTERM and must exit 0 without a traceback."""
    started: list[Served] = []

    def start(*args: str, config: str | None = None, env: dict[str, str] | None = None,
              socket: bool = True, **kwargs: Any) -> Served:
        argv = list(args)
        path = None
        if socket:
            path = os.path.join(sockdir, f"d{len(started)}.sock")
            argv = ["--socket", path, *argv]
        if config is not None:
            argv += ["--config", config]
        s = Served(argv, env=env if env is not None else base_env(), socket_path=path,
                   **kwargs)
        started.append(s)
        return s

    yield start
    for s in started:
        alive = s.proc.poll() is None
        code = s.stop()
        if alive:
            assert code == 0, f"damond exited {code}: {s.stderr()}"
        assert "Traceback" not in s.stderr(), s.stderr()


# --------------------------------------------------------------------------------------------
# Configuration files
# --------------------------------------------------------------------------------------------


def sim_kdamond(*, sample: str = "5 ms", aggr: str = "100 ms", update: str = "1 s",
                min_regions: Any = 10, max_regions: Any = 1000, seed: int = 0,
                schemes: list[dict] | None = None) -> dict:
    """One kdamond on the ``sim`` operation set, in damo's kdamonds format."""
    return {"contexts": [{
        "ops": "sim",
        "targets": [{"pid": None, "regions": [], "damond_ops_args": {"seed": seed}}],
        "intervals": {"sample_us": sample, "aggr_us": aggr, "ops_update_us": update},
        "nr_regions": {"min": min_regions, "max": max_regions},
        "schemes": schemes or [],
    }]}


#: page out what was not accessed for a while: sz_tried/nr_applied grow on the sim workload
PAGEOUT_COLD = {"action": "pageout", "access_pattern": {
    "sz_bytes": {"min": "0 B", "max": "max"}, "nr_accesses": {"min": "0 %", "max": "0 %"},
    "age": {"min": "200 ms", "max": "max"}}}


def write_config(path: str, kdamonds: list[dict], *, damond: dict | None = None,
                 fmt: str = "yaml") -> str:
    doc: dict[str, Any] = {}
    if damond is not None:
        doc["damond"] = damond
    doc["kdamonds"] = kdamonds
    text = json.dumps(doc, indent=2) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


@pytest.fixture
def config_path(tmp_path) -> str:
    return str(tmp_path / "damond.yaml")


_STATUS_LINE = re.compile(r"^(kdamond\.\d+)\.(\w+): (.*)$")


def kdamond_status(c: Conn) -> dict[str, dict[str, str]]:
    """``status`` as {kdamond name: {key: value}} for the running kdamonds."""
    out: dict[str, dict[str, str]] = {}
    for line in c.ok("status"):
        m = _STATUS_LINE.match(line)
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return out


def samples(c: Conn, kdamond: int = 0) -> int:
    return int(kdamond_status(c)[f"kdamond.{kdamond}"]["samples"])


def tree_files(c: Conn) -> dict[str, tuple[list[str], str]]:
    """Every sysfs file's reply (data lines and status), by path."""
    return dump(c, roots=("/sys/kernel/mm/damon/admin",))
