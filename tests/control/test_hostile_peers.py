"""Peers that are not root cannot lock root out, nor monitor what they could not read.

Real peers: a client process running as ``nobody`` (or as a member of ``--admin-group``), real
root-owned and nobody-owned processes as targets, a real daemon over its real socket.
"""

from __future__ import annotations

import grp
import json
import os
import subprocess

import pytest

from tests.control.conftest import start_sim_kdamond

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
USERS_GID = grp.getgrnam("users").gr_gid
HOLD = 600

pytestmark = pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK),
                                reason=f"{SYSTEM_PYTHON} is needed to run a client as nobody")

#: opens N idle connections, reports how many the daemon kept (a refused one gets one ERR
#: EAGAIN line and is closed), then holds them until its stdin closes
HOLDER = """
import json, select, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    socks.append(s)
time.sleep(2.0)
refused = []
for s in socks:
    r, _, _ = select.select([s], [], [], 0)
    if r:
        refused.append(s.recv(4096).decode())
print(json.dumps({"held": n - len(refused), "refusals": sorted(set(refused))[:3]}), flush=True)
sys.stdin.read()
"""

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


def _as(uid: int, gid: int, groups: list[int]):
    def drop() -> None:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)

    return drop


def reachable(d) -> None:
    os.chmod(os.path.dirname(d.path), 0o755)
    os.chmod(d.path, 0o666)


def test_root_is_served_while_a_reader_holds_600_idle_connections(damond):
    reachable(damond)
    with damond.conn() as c:
        start_sim_kdamond(c)
    holder = subprocess.Popen([SYSTEM_PYTHON, "-c", HOLDER, damond.path, str(HOLD)],
                              preexec_fn=_as(NOBODY, NOBODY, []), cwd="/",
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        report = json.loads(holder.stdout.readline())
        # the reader was served (reads work for it), but not with every slot
        assert 0 < report["held"] < HOLD, report
        assert all(r.startswith("ERR EAGAIN connection: ") for r in report["refusals"]), report
        with damond.conn() as c:
            c.ok("echo off > kdamonds/0/state")
            assert c.value("kdamonds/0/state") == "off"
            status = dict(line.split(": ", 1) for line in c.ok("status"))
            assert int(status["daemon.control_read_only_clients"]) == report["held"]
            assert int(status["daemon.control_refused"]) >= HOLD - report["held"]
        # a second root client and a writer are served as well
        conns = [damond.conn() for _ in range(20)]
        try:
            for c in conns:
                assert c.ok("pwd") == ["/sys/kernel/mm/damon/admin"]
        finally:
            for c in conns:
                c.close()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def _run_as(uid, gid, groups, path, lines):
    proc = subprocess.run([SYSTEM_PYTHON, "-c", CLIENT, path], preexec_fn=_as(uid, gid, groups),
                          cwd="/", input="".join(line + "\n" for line in lines).encode(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().splitlines()


def test_admin_group_member_may_not_monitor_a_root_owned_process(start_damond):
    d = start_damond("--admin-group", "users")
    reachable(d)
    root_owned = subprocess.Popen(["sleep", "600"])
    own = subprocess.Popen(["sleep", "600"], preexec_fn=_as(NOBODY, USERS_GID, [USERS_GID]))
    try:
        setup = ["echo 1 > kdamonds/nr_kdamonds", "echo 1 > kdamonds/0/contexts/nr_contexts",
                 "echo 1 > kdamonds/0/contexts/0/targets/nr_targets"]
        out = _run_as(NOBODY, USERS_GID, [USERS_GID], d.path, [
            *setup,
            f"echo {root_owned.pid} > kdamonds/0/contexts/0/targets/0/pid_target",
            f"echo {os.getpid()} > kdamonds/0/contexts/0/targets/0/pid",
            f"echo {own.pid} > kdamonds/0/contexts/0/targets/0/pid_target",
            "cd <debugfs>/damon", f"echo {root_owned.pid} > target_ids",
            f"echo {own.pid} > target_ids",
        ])
        statuses = [line for line in out if line == "OK" or line.startswith("ERR ")]
        assert statuses[:3] == ["OK"] * 3, out
        assert statuses[3].startswith("ERR EPERM kdamonds/0/contexts/0/targets/0/pid_target: "
                                      f"process {root_owned.pid} belongs to uid 0"), out
        assert statuses[4].startswith("ERR EPERM kdamonds/0/contexts/0/targets/0/pid: "), out
        assert statuses[5:7] == ["OK", "OK"], out
        assert statuses[7].startswith("ERR EPERM target_ids: "), out
        assert statuses[8] == "OK", out
        with d.conn() as c:
            assert c.value("kdamonds/0/contexts/0/targets/0/pid_target") == str(own.pid)
            # root may name any process
            c.ok(f"echo {root_owned.pid} > kdamonds/0/contexts/0/targets/0/pid_target")
    finally:
        for p in (root_owned, own):
            p.kill()
            p.wait()
