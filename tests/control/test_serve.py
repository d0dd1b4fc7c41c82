"""``damond serve`` as a process: its socket, its signals, and an inherited socket."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess

import pytest

from tests.control.conftest import DAMOND, Conn, start_sim_kdamond


def test_sigint_stops_kdamonds_and_removes_the_socket(start_damond):
    d = start_damond()
    with d.conn() as c:
        start_sim_kdamond(c)
    assert d.stop(signal.SIGINT) == 0
    assert not os.path.exists(d.path)
    assert "kdamond stopped" in d.output()


def test_stale_socket_is_replaced_live_one_is_not(start_damond, sockdir):
    path = os.path.join(sockdir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    d = start_damond(path=path)
    assert d.alive()
    # a second daemon on the same path refuses to start and leaves the first one alone
    proc = subprocess.run([DAMOND, "serve", "--socket", path], capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"another daemon is listening" in proc.stderr
    assert d.alive()


def test_refuses_to_replace_a_file_that_is_not_a_socket(sockdir):
    path = os.path.join(sockdir, "file")
    with open(path, "w") as f:
        f.write("keep me")
    proc = subprocess.run([DAMOND, "serve", "--socket", path], capture_output=True, timeout=30)
    assert proc.returncode == 1
    with open(path) as f:
        assert f.read() == "keep me"


@pytest.mark.parametrize("where", ["sockdir", "/nonexistent"])
def test_a_given_socket_path_in_a_missing_directory_is_refused_and_nothing_created(
        sockdir, where):
    """A mistyped --socket must not create directories: exit 1, one line saying why."""
    top = os.path.join(sockdir, "run") if where == "sockdir" else where
    if os.path.lexists(top):
        pytest.skip(f"{top} exists on this machine")
    path = os.path.join(top, "dir", "x.sock")
    out = subprocess.run([DAMOND, "serve", "--socket", path], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) == 1 and "directory does not exist" in lines[0], lines
    assert os.path.dirname(path) in lines[0]
    assert not os.path.lexists(top)


def test_only_the_default_directory_is_created_0750(sockdir):
    from damond.control_socket import bind_control_socket

    path = os.path.join(sockdir, "run", "damond", "damond.sock")
    sock = bind_control_socket(path, create_directory=True)
    try:
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o750
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        sock.close()


def test_socket_activation(sockdir):
    """systemd passes a listening socket as fd 3 with LISTEN_PID/LISTEN_FDS."""
    path = os.path.join(sockdir, "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    fd = listener.fileno()

    def as_fd3() -> None:
        # runs before Popen closes descriptors: hence close_fds=False (Python's own
        # descriptors are close-on-exec anyway; the dup2 copy is inheritable)
        os.dup2(fd, 3)

    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="control")
    # LISTEN_PID must be the daemon's pid: set it in a shell that then execs damond
    proc = subprocess.Popen(["/bin/sh", "-c", f'export LISTEN_PID=$$; exec "{DAMOND}" serve'],
                            env=env, preexec_fn=as_fd3, close_fds=False,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    listener.close()
    try:
        with Conn(path) as c:
            assert c.ok("pwd") == ["/sys/kernel/mm/damon/admin"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    # the socket belongs to the service manager: it is left in place
    assert os.path.exists(path)


def test_sigterm_with_busy_and_stuck_clients(start_damond):
    d = start_damond()
    with d.conn() as c:
        start_sim_kdamond(c)
    idle = Conn(d.path)
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.connect(d.path)
    stuck.sendall(b"trace\n")  # and never read
    half = Conn(d.path)
    half.send('echo "open quote')
    try:
        assert d.stop() == 0
        assert not os.path.exists(d.path)
    finally:
        for s in (idle.sock, stuck, half.sock):
            s.close()
