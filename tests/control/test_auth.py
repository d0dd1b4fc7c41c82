"""Authorization by the peer's credentials (SO_PEERCRED): root and the admin group may write,
everyone else who can reach the socket may only read."""

from __future__ import annotations

import grp
import os
import subprocess

import pytest

NOBODY = 65534
#: the venv's interpreter lives under /root (mode 0700): run the client with the system one
SYSTEM_PYTHON = "/usr/bin/python3"
USERS_GID = grp.getgrnam("users").gr_gid

CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read())
s.shutdown(socket.SHUT_WR)
out = b""
while chunk := s.recv(65536):
    out += chunk
sys.stdout.buffer.write(out)
"""


def run_as(uid: int, gid: int, groups: list[int], path: str, lines: list[str]) -> list[str]:
    def drop() -> None:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)

    proc = subprocess.run([SYSTEM_PYTHON, "-c", CLIENT, path], preexec_fn=drop, cwd="/",
                          input="".join(line + "\n" for line in lines).encode(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().splitlines()


pytestmark = pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK),
                                reason=f"{SYSTEM_PYTHON} is needed to run a client as nobody")


def reachable(d) -> None:
    """Let other users connect (the daemon makes its socket 0660 in a 0750 directory)."""
    os.chmod(os.path.dirname(d.path), 0o755)
    os.chmod(d.path, 0o666)


def test_socket_mode_is_0660(damond):
    assert os.stat(damond.path).st_mode & 0o777 == 0o660


def test_unprivileged_client_reads_but_may_not_write(damond):
    reachable(damond)
    with damond.conn() as c:
        c.ok("echo 1 > kdamonds/nr_kdamonds")
    out = run_as(NOBODY, NOBODY, [], damond.path, [
        "cat kdamonds/nr_kdamonds", "echo 2 > kdamonds/nr_kdamonds",
        "write kdamonds/nr_kdamonds 3", "set kdamonds/0/state on",
        "cat kdamonds/nr_kdamonds > kdamonds/0/contexts/nr_contexts",
        "ls kdamonds", "cd kdamonds/0", "cat state", "echo hello", "status",
    ])
    assert out[:3] == ["1", "OK", "ERR EPERM kdamonds/nr_kdamonds: this client may only read "
                                  "(root or the admin group may write)"]
    assert out[3].startswith("ERR EPERM kdamonds/nr_kdamonds:")
    assert out[4].startswith("ERR EPERM kdamonds/0/state:")
    assert out[5].startswith("ERR EPERM kdamonds/0/contexts/nr_contexts:")
    assert out[6:12] == ["0/", "nr_kdamonds", "OK", "OK", "off", "OK"]
    assert out[12:14] == ["hello", "OK"]
    assert out[-1] == "OK"
    with damond.conn() as c:
        assert c.value("kdamonds/nr_kdamonds") == "1"
        assert c.value("kdamonds/0/contexts/nr_contexts") == "0"


@pytest.mark.parametrize("how", ["supplementary", "primary"])
def test_admin_group_members_may_write(start_damond, how):
    d = start_damond("--admin-group", "users")
    reachable(d)
    if how == "supplementary":
        out = run_as(NOBODY, NOBODY, [USERS_GID], d.path, ["echo 2 > kdamonds/nr_kdamonds"])
    else:
        out = run_as(NOBODY, USERS_GID, [], d.path, ["echo 2 > kdamonds/nr_kdamonds"])
    assert out == ["OK"]
    # others stay read-only
    assert run_as(NOBODY, NOBODY, [], d.path, ["echo 3 > kdamonds/nr_kdamonds"])[0].startswith(
        "ERR EPERM")
    with d.conn() as c:
        assert c.value("kdamonds/nr_kdamonds") == "2"


def test_unknown_admin_group_refuses_to_start(sockdir):
    from tests.control.conftest import DAMOND

    path = os.path.join(sockdir, "x.sock")
    proc = subprocess.run([DAMOND, "serve", "--socket", path, "--admin-group",
                           "no-such-group-here"], capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"no group named" in proc.stderr
    assert not os.path.exists(path)
