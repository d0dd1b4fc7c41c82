"""What offload costs on top of the kernel: damond relaying a kernel kdamond, versus the kernel
kdamond alone, on the same context (a vaddr target, the same attributes), one after the other.

Run it inside the guest kernel (it needs the kernel's DAMON vaddr and tracefs), e.g.::

    ../shared/guest-kernel/guest-run --mem 2G -- .venv/bin/python bench/offload.py

Side "kernel": the kernel's sysfs files written directly, the kdamond on for ``--seconds``;
its thread's CPU time (``/proc/PID/stat``). Side "offload": ``damond serve --offload auto``
with the same context through its socket, the damond process's CPU time plus its kernel
kdamond's. The two sides alternate ``--rounds`` times (under emulation a guest's CPU times
drift with the host's load, and one kdamond's CPU varies by tens of percent between windows),
each window after the same warm-up. Two figures:

* idle: no subscriber beyond what damond itself needs (no ``trace``, record or live report),
  so damond keeps the kernel's tracepoint off and only waits for the kdamond's end. This is
  the figure issue 10 defines, printed last as
  ``offload_cpu_ratio_vs_kernel=<(damond + its kdamond) / kdamond alone>``.
* with one ``trace`` client reading every event (the relay does all its work: tracepoint on,
  every event read, parsed, formatted and sent), printed as
  ``offload_cpu_ratio_vs_kernel_with_trace=...`` just before.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from damond.platform.kernel_damon import KernelDamonTree, kernel_thread_cpu_ns

DAMOND = os.path.join(os.path.dirname(sys.executable), "damond")
TREE = KernelDamonTree()


def start_workload() -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "damond.tools.workload", "hotcold",
                             "--hot", "8M", "--cold", "56M"], stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    time.sleep(0.5)
    return proc, info


def process_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def process_cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def kernel_side(pid: int, args) -> float:
    """CPU seconds of a kernel kdamond alone over ``args.seconds``."""
    TREE.set_nr_kdamonds(1)
    try:
        c = "0/contexts/0"
        TREE.write("0/contexts/nr_contexts", 1)
        TREE.write(f"{c}/operations", "vaddr")
        TREE.write(f"{c}/monitoring_attrs/intervals/sample_us", args.sample_us)
        TREE.write(f"{c}/monitoring_attrs/intervals/aggr_us", args.aggr_us)
        TREE.write(f"{c}/targets/nr_targets", 1)
        TREE.write(f"{c}/targets/0/pid_target", pid)
        TREE.write("0/state", "on")
        kpid = TREE.pid(0)
        time.sleep(2 * args.aggr_us / 1e6 + 1)  # past the start-up work, as the offload side
        c0 = kernel_thread_cpu_ns(kpid) or 0
        time.sleep(args.seconds)
        used = (kernel_thread_cpu_ns(kpid) or 0) - c0
        TREE.write("0/state", "off")
    finally:
        TREE.set_nr_kdamonds(0)
    return used / 1e9


class Client:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.f = self.sock.makefile("r")

    def cmd(self, line: str) -> list[str]:
        self.sock.sendall(line.encode() + b"\n")
        out = []
        while True:
            text = self.f.readline().rstrip("\n")
            if text == "OK":
                return out
            if text.startswith("ERR"):
                raise RuntimeError(f"{line}: {text}")
            out.append(text)


def _measure(daemon_pid: int, kpid: int, seconds: float) -> tuple[float, float]:
    """(damond process CPU s, its kdamond's CPU s) over ``seconds``."""
    d0, k0 = process_cpu_ns(daemon_pid), kernel_thread_cpu_ns(kpid) or 0
    time.sleep(seconds)
    d1, k1 = process_cpu_ns(daemon_pid), kernel_thread_cpu_ns(kpid) or 0
    return (d1 - d0) / 1e9, (k1 - k0) / 1e9


def offload_side(pid: int, args) -> dict:
    """Per round: the kernel kdamond alone, then damond's offloaded kdamond with no
    subscriber (each ``args.seconds``, each freshly started); then once with a trace client.
    CPU seconds summed over the rounds, and what ``status`` said."""
    d = tempfile.mkdtemp(prefix="dmb-")
    path = os.path.join(d, "s.sock")
    daemon = subprocess.Popen([DAMOND, "serve", "--socket", path, "--offload", "auto",
                               "--log-level", "warning"], stderr=subprocess.DEVNULL)
    out: dict = {"kernel": 0.0, "idle": (0.0, 0.0)}
    try:
        deadline = time.monotonic() + 180
        while not os.path.exists(path):
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError("damond did not start")
            time.sleep(0.2)
        c = Client(path)
        ctx = "kdamonds/0/contexts/0"
        for line in ("echo 1 > kdamonds/nr_kdamonds", "echo 1 > kdamonds/0/contexts/nr_contexts",
                     f"echo vaddr > {ctx}/operations",
                     f"echo {args.sample_us} > {ctx}/monitoring_attrs/intervals/sample_us",
                     f"echo {args.aggr_us} > {ctx}/monitoring_attrs/intervals/aggr_us",
                     f"echo 1 > {ctx}/targets/nr_targets",
                     f"echo {pid} > {ctx}/targets/0/pid_target"):
            c.cmd(line)
        warmup = 2 * args.aggr_us / 1e6 + 1  # past the start-up work
        for _ in range(args.rounds):
            out["kernel"] += kernel_side(pid, args)
            c.cmd("echo on > kdamonds/0/state")
            out["runs"] = next(x for x in c.cmd("status") if x.startswith("kdamond.0.runs:"))
            kpid = TREE.pid(0)
            time.sleep(warmup)
            dmn, kd = _measure(daemon.pid, kpid, args.seconds)
            out["idle"] = (out["idle"][0] + dmn, out["idle"][1] + kd)
            out["idle_events"] = next(x for x in c.cmd("status")
                                      if x.startswith("kdamond.0.events:"))
            c.cmd("echo off > kdamonds/0/state")
        c.cmd("echo on > kdamonds/0/state")
        kpid = TREE.pid(0)
        # a trace client that reads every event, as a recorder would
        reader = Client(path)
        reader.sock.sendall(b"trace\n")
        stop = threading.Event()
        lines = [0]

        def drain() -> None:
            while not stop.is_set():
                if not reader.f.readline():
                    return
                lines[0] += 1

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        time.sleep(warmup)
        u0, s0 = process_cpu_split(daemon.pid)
        out["traced"] = _measure(daemon.pid, kpid, args.seconds)
        u1, s1 = process_cpu_split(daemon.pid)
        out["traced_events"] = next(x for x in c.cmd("status")
                                    if x.startswith("kdamond.0.events:"))
        stop.set()
        c.cmd("echo off > kdamonds/0/state")
        out["lines"] = lines[0]
        out["traced_user_sys"] = (u1 - u0, s1 - s0)
        return out
    finally:
        daemon.terminate()
        daemon.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternations of kernel alone / offloaded idle (the guest's CPU times "
                         "drift with the host's load; alternating spreads the drift evenly)")
    ap.add_argument("--sample-us", type=int, default=5000)
    ap.add_argument("--aggr-us", type=int, default=100_000)
    args = ap.parse_args()
    if TREE.nr_kdamonds():
        sys.exit("the kernel's DAMON tree is not empty: run this where damond may use it")
    proc, _ = start_workload()
    try:
        off = offload_side(proc.pid, args)
    finally:
        proc.kill()
        proc.wait()
    n = args.rounds
    kernel = off["kernel"]
    print(f"attrs: sample_us={args.sample_us} aggr_us={args.aggr_us} seconds={args.seconds} "
          f"rounds={n}")
    print(f"kernel kdamond alone: cpu_s={kernel:.3f} (over {n} x {args.seconds} s)")
    print(off["runs"])
    (dmn, kd), (tdmn, tkd) = off["idle"], off["traced"]
    print(f"offload with one trace client: damond cpu_s={tdmn:.3f} its kdamond cpu_s={tkd:.3f} "
          f"over {args.seconds} s (user {off['traced_user_sys'][0]:.2f} system "
          f"{off['traced_user_sys'][1]:.2f}; trace lines relayed {off['lines']}; "
          f"{off['traced_events']})")
    print(f"offload idle (no subscriber): damond cpu_s={dmn:.3f} its kdamond cpu_s={kd:.3f} "
          f"(over {n} x {args.seconds} s; {off['idle_events']})")
    print(f"offload_cpu_ratio_vs_kernel_with_trace={n * (tdmn + tkd) / max(kernel, 1e-9):.3f}")
    print(f"offload_cpu_ratio_vs_kernel={(dmn + kd) / max(kernel, 1e-9):.3f}")


if __name__ == "__main__":
    main()
