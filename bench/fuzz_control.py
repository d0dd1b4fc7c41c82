"""Fuzz a real ``damond serve`` over its unix socket: valid and invalid commands, many clients.

Starts its own daemon (``damond serve --socket <tmp>/fuzz.sock``), then sends ``--lines``
request lines over ``--connections`` connections (``--parallel`` at a time): a mix of
commands that work, commands with bad arguments, shell syntax the protocol refuses, huge
numbers, binary garbage, NUL bytes, invalid UTF-8 and over-long lines. Each connection sends
its lines, half-closes and reads every answer (or gives up after ``--read-timeout``).

It reports what the issue asks for: replies ``ERR EIO`` (an internal error: a bug), tracebacks
in the daemon's log, and whether the daemon died; all three must be 0. The run is bounded by
``--max-seconds`` (it stops sending new connections then). Only the loopback unix socket is
used. Writes that would monitor or act on real processes are left out: the operation set is
always ``sim`` and ``monitor_on`` is never switched on.

    .venv/bin/python bench/fuzz_control.py                  # the issue's 100,000 lines
    .venv/bin/python bench/fuzz_control.py --lines 5000 --connections 200
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAMOND = os.path.join(os.path.dirname(sys.executable), "damond")

ADMIN = "/sys/kernel/mm/damon/admin"
FILES = [
    "kdamonds/nr_kdamonds", "kdamonds/0/state", "kdamonds/0/pid", "kdamonds/1/state",
    "kdamonds/0/contexts/nr_contexts", "kdamonds/0/contexts/0/operations",
    "kdamonds/0/contexts/0/avail_operations",
    "kdamonds/0/contexts/0/monitoring_attrs/intervals/sample_us",
    "kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us",
    "kdamonds/0/contexts/0/monitoring_attrs/intervals/update_us",
    "kdamonds/0/contexts/0/monitoring_attrs/nr_regions/min",
    "kdamonds/0/contexts/0/monitoring_attrs/nr_regions/max",
    "kdamonds/0/contexts/0/targets/nr_targets", "kdamonds/0/contexts/0/targets/0/pid_target",
    "kdamonds/0/contexts/0/targets/0/regions/nr_regions",
    "kdamonds/0/contexts/0/targets/0/regions/0/start",
    "kdamonds/0/contexts/0/targets/0/regions/0/end",
    "kdamonds/0/contexts/0/schemes/nr_schemes", "kdamonds/0/contexts/0/schemes/0/action",
    "kdamonds/0/contexts/0/schemes/0/access_pattern/sz/min",
    "kdamonds/0/contexts/0/schemes/0/quotas/ms", "kdamonds/0/contexts/0/schemes/0/quotas/bytes",
    "kdamonds/0/contexts/0/schemes/0/watermarks/metric",
    "kdamonds/0/contexts/0/schemes/0/stats/nr_tried",
    "<debugfs>/damon/attrs", "<debugfs>/damon/schemes", "<debugfs>/damon/init_regions",
    "<debugfs>/damon/kdamond_pid", "<debugfs>/damon/mk_contexts", "<debugfs>/damon/rm_contexts",
    "<debugfs>/damon/monitor_on", "nonexistent", "kdamonds/99/state", "../../../etc/passwd",
    "/", "kdamonds", "kdamonds/0",
]
WORDS = ["on", "off", "commit", "update_schemes_stats", "sim", "vaddr", "pageout", "cold",
         "free_mem_rate", "none", "bogus", "", "0", "1", "2", "3", "10", "-1", "0x10", "010",
         "4096", "65536", "5000", "1000000", "18446744073709551615", "18446744073709551616",
         "9" * 30, "9" * 5000, "1 2 3", "4096 8192 0 5 10 20 2", "é", "\u202e", "o", "of"]
COMMANDS = ["ls", "ls kdamonds", "ls /", "tree", "tree /", "cd kdamonds", "cd /", "cd ..",
            "cd nonexistent", "pwd", "status", "lateness", "lateness 1 100", "lateness x",
            "metrics", "features", "plugins", "help", "help echo", "help nope", "version",
            "dump", "dump yaml", "dump xml", "prompt on", "prompt off", "prompt", "trace 1",
            "trace 0", "trace -5", "trace " + "1" * 5000, "reload", "quit", "exit"]
GARBAGE = ["a | b", "a || b", "a & b", "a < b", "a >> b", "2> x", "(ls)", "{ ls; }", "if true",
           "x=1", "`ls`", "$(ls)", "'unclosed", '"unclosed', "\\", "echo > ", "cat", "echo",
           ";;", "&&", "ls && ls && ls", "cat kdamonds/nr_kdamonds; pwd", "# comment",
           "$ ls", "# # nested", "echo a > b > c", "write", "write x", "set", "read", "get"]

#: the operation sets the fuzzer may name: only sim (it touches no real process)
SAFE_OPS = {"sim"}


def _word(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.7:
        return rng.choice(WORDS)
    if r < 0.85:
        return str(rng.choice([rng.randrange(0, 100), rng.randrange(0, 1 << 64),
                               rng.randrange(-(1 << 40), 0)]))
    return "".join(chr(rng.randrange(0x20, 0x250)) for _ in range(rng.randrange(1, 12)))


#: the only process a kdamond may target: a sleeper the fuzzer starts (set by run())
SLEEPER = [0]


def _safe_write(path: str, value: str) -> tuple[str, str]:
    """Writes that could monitor or act on a real process are redirected: operations are
    ``sim`` (or the kernel's default, vaddr, on the fuzzer's own sleeper), targets name only
    the sleeper, debugfs monitoring is never switched on."""
    if path.endswith("operations") and value not in SAFE_OPS:
        return path, "sim"
    if path.endswith("pid_target"):
        return path, rng_free_choice([str(SLEEPER[0]), "0", "-1", value if not
                                      value.strip().lstrip("+-").isdigit() else "1" * 30])
    if path.endswith("monitor_on") or path.endswith("target_ids"):
        return "kdamonds/0/pid", value
    return path, value


_pick = random.Random(0)


def rng_free_choice(options: list[str]) -> str:
    return _pick.choice(options)


def request(rng: random.Random) -> bytes:
    """One request line (with its newline)."""
    r = rng.random()
    if r < 0.35:
        path = rng.choice(FILES)
        return f"cat {path}\n".encode()
    if r < 0.65:
        path, value = _safe_write(rng.choice(FILES), _word(rng))
        quote = rng.choice(["", '"', "'"])
        if quote and quote in value:
            quote = ""
        text = f"echo {quote}{value}{quote} > {path}\n"
        return text.encode("utf-8", "surrogateescape")
    if r < 0.85:
        return (rng.choice(COMMANDS) + "\n").encode()
    if r < 0.95:
        return (rng.choice(GARBAGE) + "\n").encode()
    kind = rng.random()
    if kind < 0.3:
        return bytes(rng.randrange(0, 256) for _ in range(rng.randrange(1, 64))) + b"\n"
    if kind < 0.5:
        return b"cat kdamonds/\x00nr\n"
    if kind < 0.7:
        return b"echo \xff\xfe > kdamonds/0/state\n"
    if kind < 0.9:
        return b"echo " + b"x" * rng.randrange(60_000, 70_000) + b"\n"
    return b"\n"


SETUP = [b"echo 2 > kdamonds/nr_kdamonds\n", b"echo 1 > kdamonds/0/contexts/nr_contexts\n",
         b"echo sim > kdamonds/0/contexts/0/operations\n",
         b"echo 1 > kdamonds/0/contexts/0/targets/nr_targets\n", b"echo on > kdamonds/0/state\n"]


@dataclass
class Tally:
    lines: int = 0
    connections: int = 0
    replies: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    eio: list[str] = field(default_factory=list)
    timeouts: int = 0
    trace_hangups: int = 0
    refused: int = 0

    def add(self, other: Tally) -> None:
        self.lines += other.lines
        self.connections += other.connections
        self.replies += other.replies
        self.ok += other.ok
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.eio += other.eio
        self.timeouts += other.timeouts
        self.trace_hangups += other.trace_hangups
        self.refused += other.refused


#: a connection that asked for ``trace`` gets its events only while a kdamond runs (the fuzz
#: may have stopped them all): it waits this long, then hangs up, as a user would
TRACE_WAIT_S = 3.0


def one_connection(path: str, lines: list[bytes], read_timeout: float) -> Tally:
    t = Tally(lines=len(lines), connections=1)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tracing = any(line.startswith(b"trace") for line in lines)
    s.settimeout(min(read_timeout, TRACE_WAIT_S) if tracing else read_timeout)
    out = b""
    try:
        s.connect(path)
        s.sendall(b"".join(lines))
        s.shutdown(socket.SHUT_WR)
        while chunk := s.recv(1 << 20):
            out += chunk
    except TimeoutError:
        if tracing:
            t.trace_hangups += 1
        else:
            t.timeouts += 1
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
        t.refused += 1
    finally:
        s.close()
    for line in out.split(b"\n"):
        if line == b"OK":
            t.replies += 1
            t.ok += 1
        elif line.startswith(b"ERR "):
            t.replies += 1
            name = line.split(b" ", 2)[1].decode(errors="replace")
            t.errors[name] = t.errors.get(name, 0) + 1
            if name == "EIO":
                t.eio.append(line.decode(errors="replace")[:300])
    return t


def run(lines: int, connections: int, parallel: int, seed: int, max_seconds: float,
        read_timeout: float) -> dict:
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="damond-fuzz-")
    path = os.path.join(tmp, "fuzz.sock")
    log_path = os.path.join(tmp, "daemon.log")
    sleeper = subprocess.Popen(["sleep", str(int(max_seconds) + 120)])
    SLEEPER[0] = sleeper.pid
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([DAMOND, "serve", "--socket", path, "--seed", str(seed)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("damond serve did not start: " + Path(log_path).read_text())
            time.sleep(0.05)
        one_connection(path, SETUP, read_timeout)
        per_conn = max(1, lines // connections)
        jobs = [[request(rng) for _ in range(per_conn)] for _ in range(connections)]
        total = Tally()
        t0 = time.monotonic()
        stopped_early = False
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            pending = set()
            for job in jobs:
                if time.monotonic() - t0 > max_seconds:
                    stopped_early = True
                    break
                pending.add(pool.submit(one_connection, path, job, read_timeout))
                if len(pending) >= parallel * 2:
                    done, pending = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for f in done:
                        total.add(f.result())
            for f in concurrent.futures.as_completed(pending):
                total.add(f.result())
        elapsed = time.monotonic() - t0
        alive = proc.poll() is None and one_connection(path, [b"pwd\n"], 10).ok == 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sleeper.kill()
        sleeper.wait()
        with open(log_path, errors="replace") as f:
            log_text = f.read()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "lines_sent": total.lines, "connections": total.connections, "replies": total.replies,
        "ok": total.ok, "errors_by_errno": dict(sorted(total.errors.items())),
        "err_eio": len(total.eio), "err_eio_examples": total.eio[:5],
        "tracebacks": log_text.count("Traceback"),
        "internal_errors_logged": log_text.count("control command failed"),
        "deaths": 0 if alive else 1, "exit_status": proc.returncode,
        "read_timeouts": total.timeouts, "trace_hangups": total.trace_hangups,
        "refused_connections": total.refused,
        "seconds": round(elapsed, 1), "stopped_early": stopped_early,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=2_000)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--read-timeout", type=float, default=120.0)
    a = ap.parse_args(argv)
    result = run(a.lines, a.connections, a.parallel, a.seed, a.max_seconds, a.read_timeout)
    print(json.dumps(result, indent=2))
    bad = result["err_eio"] + result["tracebacks"] + result["deaths"]
    return 1 if bad or result["exit_status"] not in (0, None) else 0


if __name__ == "__main__":
    sys.exit(main())
