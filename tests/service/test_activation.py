"""Socket activation: listening sockets passed as fd 3.. (``LISTEN_FDS``, ``LISTEN_PID``,
``LISTEN_FDNAMES``) are served and left in place; the variables are consumed."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request

import pytest

from damond.service.systemd import ListenedSocket, listen_fds, pick_socket
from tests.control.conftest import Conn
from tests.service.conftest import base_env


def _listening_unix(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    return s


def _as_fds(*socks: socket.socket):
    """A preexec_fn putting ``socks`` at fd 3, 4, ... of the child (as systemd does)."""
    fds = [s.fileno() for s in socks]

    def place() -> None:
        # dup everything out of the way first: a source may sit where a target goes
        moved = [os.dup(fd) for fd in fds]
        for i, fd in enumerate(moved):
            os.dup2(fd, 3 + i)  # dup2's copy is inheritable

    return place


@pytest.mark.parametrize("fdnames", ["control", None])
def test_passed_unix_socket_is_served_and_not_unlinked(serve, notify, sockdir, fdnames):
    path = os.path.join(sockdir, "activated.sock")
    listener = _listening_unix(path)
    env = base_env(LISTEN_FDS="1", NOTIFY_SOCKET=notify.address)
    if fdnames:
        env["LISTEN_FDNAMES"] = fdnames
    else:  # a .socket unit without FileDescriptorName= names its sockets after itself
        env["LISTEN_FDNAMES"] = "damond.socket"
    d = serve(socket=False, env=env, shell_prefix="export LISTEN_PID=$$; ",
              preexec_fn=_as_fds(listener), close_fds=False)
    listener.close()
    _, ready = notify.wait_for(lambda f: "READY" in f)
    assert path in ready["STATUS"]
    with Conn(path) as c:
        assert c.ok("pwd") == ["/sys/kernel/mm/damon/admin"]
        c.ok("echo 1 > kdamonds/nr_kdamonds")
    d.signal(signal.SIGTERM)
    assert d.wait() == 0, d.stderr()
    # the socket is the service manager's: it stays where it is
    assert os.path.exists(path)


def test_control_and_metrics_sockets_by_name(serve, notify, sockdir):
    path = os.path.join(sockdir, "control.sock")
    control = _listening_unix(path)
    http = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http.bind(("127.0.0.1", 0))
    http.listen(16)
    port = http.getsockname()[1]
    env = base_env(LISTEN_FDS="2", LISTEN_FDNAMES="metrics:control",
                   NOTIFY_SOCKET=notify.address)
    serve(socket=False, env=env, shell_prefix="export LISTEN_PID=$$; ",
          preexec_fn=_as_fds(http, control), close_fds=False)
    control.close()
    http.close()
    notify.wait_for(lambda f: "READY" in f)
    with Conn(path) as c:
        assert c.ok("pwd") == ["/sys/kernel/mm/damon/admin"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert b"damond_build_info" in r.read()


def test_sockets_for_another_pid_are_not_taken():
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "control"}
    assert listen_fds(env) == []
    assert env == {}  # consumed all the same: children must not see them


def test_garbage_listen_fds_is_ignored():
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"}
    assert listen_fds(env) == []
    assert env == {}


def test_pick_socket_by_name_then_by_family():
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        passed = [ListenedSocket(3, "metrics", tcp), ListenedSocket(4, "damond.socket", unix)]
        assert pick_socket(passed, "metrics") is tcp
        assert pick_socket(passed, "control") is None
        assert pick_socket(passed, "control", fallback_family=socket.AF_UNIX,
                           others=("metrics",)) is unix
        assert pick_socket([ListenedSocket(3, "metrics", unix)], "control",
                           fallback_family=socket.AF_UNIX, others=("metrics",)) is None
    finally:
        unix.close()
        tcp.close()
