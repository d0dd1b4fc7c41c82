"""``features`` tells the truth about the operation sets: a set it calls usable is accepted by
``on`` on this machine, one it calls unusable is refused, with the same reason. Checked
against a real daemon by trying ``on`` with each kernel operation set (before, ``features``
said ``operations paddr: yes`` on a kernel without idle page tracking, where ``on`` fails)."""

from __future__ import annotations

import subprocess

from damond.control.protocol import unescape_data_line
from tests.service.conftest import base_env


def _try_on(c, ops: str, pid: int) -> tuple[str, str]:
    c.ok("echo 1 > kdamonds/nr_kdamonds")
    c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
    c.ok(f"echo {ops} > kdamonds/0/contexts/0/operations")
    c.ok("echo 1 > kdamonds/0/contexts/0/targets/nr_targets")
    if ops != "paddr":
        c.ok(f"echo {pid} > kdamonds/0/contexts/0/targets/0/pid_target")
    if ops == "fvaddr":
        r = "kdamonds/0/contexts/0/targets/0/regions"
        c.ok(f"echo 1 > {r}/nr_regions")
        c.ok(f"echo 4096 > {r}/0/start")
        c.ok(f"echo 1048576 > {r}/0/end")
    _, status = c.cmd("echo on > kdamonds/0/state")
    if status == "OK":
        c.ok("echo off > kdamonds/0/state")
    c.ok("echo 0 > kdamonds/nr_kdamonds")
    return ops, status


def test_features_verdicts_match_what_on_does(serve, notify):
    d = serve(env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    target = subprocess.Popen(["sleep", "60"])
    try:
        with d.conn() as c:
            features = [unescape_data_line(line) for line in c.ok("features")]
            verdicts = {}
            for line in features:
                head, _, rest = line.partition(": ")
                if head.startswith("operations ") and head.count(" ") == 1:
                    verdicts[head.split(" ")[1]] = rest
            outcomes = dict(_try_on(c, ops, target.pid) for ops in ("vaddr", "fvaddr",
                                                                     "paddr"))
    finally:
        target.kill()
        target.wait()
    for ops, status in outcomes.items():
        verdict = verdicts[ops]
        if status == "OK":
            assert verdict.startswith("yes ("), (ops, verdict)
        else:
            assert verdict.startswith("no: not usable here, 'on' is refused ("), (ops, verdict)
            # the reason features gives is the one 'on' gives
            why = verdict.split("'on' is refused (", 1)[1].split(") (built-in", 1)[0]
            assert why.split(": ", 1)[-1] in status, (ops, why, status)
