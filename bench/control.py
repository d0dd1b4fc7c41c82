"""What control traffic costs: command throughput, and the lateness it adds to a kdamond.

Starts a real ``damond serve``, runs one kdamond on the ``sim`` set with default attributes
(5 ms samples), then measures:

* commands per second on one connection (``cat kdamonds/0/state``, one at a time);
* commands per second with 50 connections doing the same concurrently;
* the kdamond's 99th-percentile sampling lateness over quiet windows and over 50-client
  windows. Windows are given as sample numbers (``lateness FIRST LAST``, a damond command),
  read before and after each window, so each percentile covers exactly its window. Quiet and
  loaded windows alternate ``--rounds`` times and the median of each kind is compared: on a
  shared machine the lateness is dominated by the operating system's scheduling of the
  daemon, which drifts over seconds. ``--nice N`` runs the daemon at that niceness, to see
  what is left of the lateness once other processes cannot preempt it.

``control_step_cpu_*`` (from ``status``) is the CPU time one step of control work held the
daemon's event loop: a bound on how late control work can make a sample inside the daemon;
the rest of the lateness is the operating system's (wakeup granularity, preemption).

The last two lines are ``cmds_per_s_50_clients=<number>`` and ``p99_lateness_added_ms=<number>``.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

DAMOND = os.path.join(os.path.dirname(sys.executable), "damond")
COMMAND = b"cat kdamonds/0/state\n"
REPLY_END = b"OK\n"


class Client:
    """A blocking connection for set-up and measurements."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def cmd(self, line: str) -> list[str]:
        self.sock.sendall(line.encode() + b"\n")
        lines = []
        while True:
            while b"\n" not in self.buf:
                self.buf += self.sock.recv(65536)
            raw, self.buf = self.buf.split(b"\n", 1)
            text = raw.decode()
            if text == "OK":
                return lines
            if text.startswith("ERR "):
                raise RuntimeError(f"{line}: {text}")
            lines.append(text)

    def samples(self) -> int:
        return int(re.search(r"samples=(\d+)", self.cmd("lateness")[0]).group(1))

    def p99_ms(self, first: int, last: int) -> float:
        line = self.cmd(f"lateness {first} {last}")[0]
        return float(re.search(r"p99_ms=([0-9.]+)", line).group(1))


def start_daemon(path: str, nice: int = 0) -> subprocess.Popen:
    proc = subprocess.Popen([DAMOND, "serve", "--socket", path, "--seed", "1",
                             "--log-level", "warning"],
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            Client(path).sock.close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("damond serve did not start")


def one_connection(path: str, seconds: float) -> float:
    c = Client(path)
    n = 0
    end = time.monotonic() + seconds
    t0 = time.monotonic()
    while time.monotonic() < end:
        c.sock.sendall(COMMAND)
        while not c.buf.endswith(REPLY_END):
            c.buf += c.sock.recv(4096)
        c.buf = b""
        n += 1
    return n / (time.monotonic() - t0)


def many_connections(path: str, clients: int, seconds: float) -> float:
    """``clients`` connections, each sending its next command as soon as it has its reply."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(clients):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [b""])
        socks.append(s)
    done = 0
    t0 = time.monotonic()
    end = t0 + seconds
    for s in socks:
        s.send(COMMAND)
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.1):
            buf = key.data
            buf[0] += key.fileobj.recv(65536)
            replies = buf[0].count(REPLY_END)
            if replies:
                done += replies
                buf[0] = b""
                key.fileobj.send(COMMAND)
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    return done / elapsed


def quiet_window(c: Client, seconds: float) -> float:
    first = c.samples() + 1
    time.sleep(seconds)
    return c.p99_ms(first, c.samples())


def loaded_window(c: Client, path: str, clients: int, seconds: float) -> tuple[float, float]:
    """(commands per second, p99 lateness in ms) of one window under ``clients`` clients."""
    first = c.samples() + 1
    rate = many_connections(path, clients, seconds)
    return rate, c.p99_ms(first, c.samples())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each window")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the daemon (negative: favoured by the OS; root only)")
    parser.add_argument("--client-nice", type=int, default=0,
                        help="niceness of this load generator (the daemon keeps its own)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="quiet/loaded window pairs (medians are compared)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="damond-bench-")
    path = os.path.join(tmp, "damond.sock")
    proc = start_daemon(path, args.nice)
    if args.client_nice:
        os.nice(args.client_nice)  # after the daemon started: it keeps its own niceness
    try:
        c = Client(path)
        for line in ("echo 1 > kdamonds/nr_kdamonds", "echo 1 > kdamonds/0/contexts/nr_contexts",
                     "echo sim > kdamonds/0/contexts/0/operations",
                     "echo 1 > kdamonds/0/contexts/0/targets/nr_targets",
                     "echo on > kdamonds/0/state"):
            c.cmd(line)
        time.sleep(1.0)  # let the kdamond settle (first aggregations, region splits)
        single = one_connection(path, min(args.seconds, 3.0))
        quiet, loaded, rates = [], [], []
        for _ in range(args.rounds):
            quiet.append(quiet_window(c, args.seconds))
            rate, p99 = loaded_window(c, path, args.clients, args.seconds)
            rates.append(rate)
            loaded.append(p99)
        quiet.append(quiet_window(c, args.seconds))
        p99_quiet, p99_load = statistics.median(quiet), statistics.median(loaded)
        print(f"cmds_per_s_1_client={single:.0f}")
        print("p99_lateness_quiet_windows_ms=" + ",".join(f"{v:.3f}" for v in quiet))
        print(f"p99_lateness_{args.clients}_clients_windows_ms="
              + ",".join(f"{v:.3f}" for v in loaded))
        print(f"p99_lateness_quiet_ms={p99_quiet:.3f}")
        print(f"p99_lateness_{args.clients}_clients_ms={p99_load:.3f}")
        steps = dict(line.split(": ", 1) for line in c.cmd("status"))
        print(f"control_step_cpu_p99_ms={float(steps['daemon.control_step_cpu_p99_ms']):.3f} "
              f"control_step_cpu_max_ms={float(steps['daemon.control_step_cpu_max_ms']):.3f}")
        print(f"cmds_per_s_{args.clients}_clients={statistics.median(rates):.0f}")
        print(f"p99_lateness_added_ms={p99_load - p99_quiet:.3f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
