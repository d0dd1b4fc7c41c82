"""What monitoring costs the monitored: a real program's throughput with and without damond.

A target program rewrites SIZE bytes (200 MiB by default, 4 KiB pages) in a loop and counts its
passes. The bench starts a real ``damond serve`` (``--cpu-budget`` as given: the default budget,
or 0 for the behaviour before the budget existed) and alternates runs of the same length:
unmonitored, monitored by one ``vaddr`` kdamond at the default attributes, unmonitored, ...
(side by side in one run, so that a machine busy with something else slows both kinds alike).
Each monitored run is compared with the mean of the unmonitored runs just before and after it,
and the slowdown is the median over the rounds. A monitored run starts counting once the
kdamond has settled (its first budget decision, or ``--settle`` seconds): the steady state is
what a long-running daemon costs; the settling phase (about 20 samples at the configured
interval) is reported on its own line.

Then it monitors an idle ``sleep`` and reads the daemon's whole CPU share from
``/proc/PID/stat`` (user + system, every thread).

The last two lines::

    target_slowdown=<1 - monitored passes per second / unmonitored passes per second>
    idle_target_cpu=<damond's CPU share (of one CPU) while monitoring an idle sleep>

Run: ``.venv/bin/python bench/perturbation.py [--cpu-budget 0] [--rounds 3] [--seconds 8]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

DAMOND = os.path.join(os.path.dirname(sys.executable), "damond")
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: The target: maps and fills SIZE bytes, says "ready", then rewrites them until SECONDS pass
#: (counted from the first pass) and prints how many passes it completed and in how long.
TARGET = r"""
import mmap, sys, time
size, seconds = int(sys.argv[1]), float(sys.argv[2])
m = mmap.mmap(-1, size)
chunk = b"\x01" * (1 << 20)
for off in range(0, size, len(chunk)):
    m[off:off + len(chunk)] = chunk
print("ready", flush=True)
sys.stdin.readline()  # go
passes, t0 = 0, time.monotonic()
while (t := time.monotonic() - t0) < seconds:
    for off in range(0, size, len(chunk)):
        m[off:off + len(chunk)] = chunk
    passes += 1
print(passes, time.monotonic() - t0, flush=True)
"""


class Daemon:
    """A ``damond serve`` on a private socket, spoken to in its line protocol."""

    def __init__(self, budget: str | None, sampler: str = "auto") -> None:
        self.dir = tempfile.mkdtemp(prefix="damond-bench-")
        self.path = os.path.join(self.dir, "d.sock")
        args = [DAMOND, "serve", "--socket", self.path, "--log-level", "warning",
                "--sampler", sampler]
        if budget is not None:
            args += ["--cpu-budget", budget]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("damond serve did not start") from None
                time.sleep(0.05)
        self.file = self.sock.makefile("rwb")

    def cmd(self, line: str) -> list[str]:
        self.file.write(line.encode() + b"\n")
        self.file.flush()
        out = []
        while True:
            reply = self.file.readline().decode().rstrip("\n")
            if reply == "OK":
                return out
            if reply.startswith("ERR ") or not reply:
                raise RuntimeError(f"{line}: {reply}")
            out.append(reply)

    def monitor(self, pid: int) -> None:
        k = "kdamonds/0"
        self.cmd("echo 1 > kdamonds/nr_kdamonds")
        self.cmd(f"echo 1 > {k}/contexts/nr_contexts")
        self.cmd(f"echo vaddr > {k}/contexts/0/operations")
        self.cmd(f"echo 1 > {k}/contexts/0/targets/nr_targets")
        self.cmd(f"echo {pid} > {k}/contexts/0/targets/0/pid_target")
        self.cmd(f"echo on > {k}/state")

    def decided(self) -> bool:
        """Whether the budget of kdamond 0 took its first decision."""
        for line in self.cmd("status"):
            if line.startswith("kdamond.0.budget.changes: "):
                return int(line.split(": ", 1)[1]) > 0
        return False

    def unmonitor(self) -> dict[str, str]:
        prefix = "kdamond.0."
        status = {line.removeprefix(prefix).split(": ", 1)[0]:
                  line.removeprefix(prefix).split(": ", 1)[1]
                  for line in self.cmd("status") if line.startswith(prefix)}
        self.cmd("echo off > kdamonds/0/state")
        return status

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def close(self) -> None:
        self.file.close()
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(timeout=20)
        os.rmdir(self.dir)


def one_run(daemon: Daemon | None, size: int, seconds: float,
            settle: float) -> tuple[float, dict, float]:
    """Passes per second of one target run, monitored by ``daemon`` or not, and how long the
    kdamond took to settle."""
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(size), str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().strip() == "ready"
        status: dict = {}
        settled = 0.0
        if daemon is not None:
            t0 = time.monotonic()
            daemon.monitor(target.pid)
            while time.monotonic() - t0 < settle and not daemon.decided():
                time.sleep(0.05)
            settled = time.monotonic() - t0
        target.stdin.write("go\n")
        target.stdin.flush()
        passes, elapsed = target.stdout.readline().split()
        if daemon is not None:
            status = daemon.unmonitor()
        return int(passes) / float(elapsed), status, settled
    finally:
        target.kill()
        target.wait()


def idle_share(daemon: Daemon, seconds: float) -> tuple[float, dict]:
    """The daemon's CPU share monitoring an idle ``sleep`` (after a settling second)."""
    sleeper = subprocess.Popen(["sleep", str(int(seconds) + 30)])
    try:
        daemon.monitor(sleeper.pid)
        time.sleep(min(5.0, seconds / 2))  # the budget's first decisions
        c0, t0 = daemon.cpu_s(), time.monotonic()
        time.sleep(seconds)
        share = (daemon.cpu_s() - c0) / (time.monotonic() - t0)
        return share, daemon.unmonitor()
    finally:
        sleeper.kill()
        sleeper.wait()


def _intervals(status: dict) -> str:
    return (f"effective sample {status.get('effective_sample_us')} us, aggr "
            f"{status.get('effective_aggr_us')} us, charged share "
            f"{status.get('budget.charged_share')}, overruns {status.get('overruns')}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-budget", default=None, help="damond serve's --cpu-budget "
                    "(default: damond's default; 0: no budget)")
    ap.add_argument("--sampler", choices=["auto", "per-sample"], default="auto",
                    help="damond serve's --sampler (per-sample: as before batch sampling)")
    ap.add_argument("--size", type=int, default=200, help="target size in MiB (default 200)")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    ap.add_argument("--rounds", type=int, default=3, help="pairs of runs (default 3)")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=3.0,
                    help="longest wait for the kdamond's first budget decision (default 3 s)")
    args = ap.parse_args(argv)
    size = args.size << 20
    daemon = Daemon(args.cpu_budget, args.sampler)
    try:
        rate, _, _ = one_run(None, size, args.seconds, 0)
        plain, watched, settles = [rate], [], []
        print(f"unmonitored {rate:.2f} passes/s", flush=True)
        for _ in range(args.rounds):
            rate, status, settled = one_run(daemon, size, args.seconds, args.settle)
            watched.append(rate)
            settles.append(settled)
            print(f"monitored   {rate:.2f} passes/s after settling {settled:.1f} s "
                  f"(access check {status.get('ops_status.targets.0.access_check')}; "
                  f"{_intervals(status)})", flush=True)
            rate, _, _ = one_run(None, size, args.seconds, 0)
            plain.append(rate)
            print(f"unmonitored {rate:.2f} passes/s", flush=True)
        share, status = idle_share(daemon, args.idle_seconds)
        print(f"idle sleep: damond CPU share {share:.4f} ({_intervals(status)})")
    finally:
        daemon.close()
    ratios = [m / ((plain[i] + plain[i + 1]) / 2) for i, m in enumerate(watched)]
    slowdown = 1 - statistics.median(ratios)
    print(f"budget={args.cpu_budget if args.cpu_budget is not None else 'default'} "
          f"size_mib={args.size} rounds={args.rounds} seconds={args.seconds} "
          f"settling_s={statistics.mean(settles):.2f} "
          f"slowdowns={','.join(f'{1 - r:.3f}' for r in ratios)}")
    print(f"target_slowdown={slowdown:.4f}")
    print(f"idle_target_cpu={share:.4f}")


if __name__ == "__main__":
    main()
