"""The whole-process access checks skip samples in which the process did not run
(``damond.ops.access_check.IdleSkip``), on real processes and their real ``/proc`` files.

``smaps`` works on every host; the same rule serves ``soft_dirty`` where the kernel has it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from damond.ops.access_check import SmapsCheck
from damond.platform.proc_cpu import process_cpu_ns

#: A child that maps 4 MiB, touches all of it, prints the mapping's start, then touches it all
#: again each time a line arrives on its standard input.
CHILD = r"""
import mmap, sys, ctypes
size = 4 << 20
m = mmap.mmap(-1, size)
def touch():
    for off in range(0, size, 4096):
        m[off] = (m[off] + 1) & 0xff
touch()
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
for _line in sys.stdin:
    touch()
    print("done", flush=True)
"""


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    start = int(proc.stdout.readline())
    yield proc, start
    proc.kill()
    proc.wait()


def _settle(pid: int) -> None:
    """Wait until the child's CPU clock stops moving (it blocks on its input)."""
    last = process_cpu_ns(pid)
    for _ in range(100):
        time.sleep(0.02)
        now = process_cpu_ns(pid)
        if now == last:
            return
        last = now
    pytest.skip("the child never went idle (a loaded machine?)")


def test_the_cpu_clock_of_another_process_moves_only_when_it_runs(child):
    proc, _ = child
    _settle(proc.pid)
    idle0 = process_cpu_ns(proc.pid)
    time.sleep(0.05)
    assert process_cpu_ns(proc.pid) == idle0
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    assert process_cpu_ns(proc.pid) > idle0


def test_a_sleeping_process_is_not_checked_and_a_woken_one_is(child):
    proc, start = child
    addrs = np.array([start + 4096 * i for i in range(0, 1024, 100)], dtype=np.uint64)
    check = SmapsCheck(str(proc.pid), np.random.default_rng(0), proc.pid)
    _settle(proc.pid)
    # idle: after the first clearing, every sample is skipped and nothing is accessed
    for _ in range(5):
        check.prepare(addrs)
        time.sleep(0.01)
        assert not check.check(addrs).any()
    assert check.idle.skipped >= 4
    skipped = check.idle.skipped
    # woken during the interval: it touched the whole mapping, the check must see it
    check.prepare(addrs)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    assert check.check(addrs).all()
    assert check.idle.skipped == skipped
    # and the next sample clears again (the bits were set): an idle interval finds nothing
    _settle(proc.pid)
    check.prepare(addrs)
    time.sleep(0.01)
    assert not check.check(addrs).any()


def test_without_a_pid_every_sample_is_checked(child):
    proc, start = child
    addrs = np.array([start], dtype=np.uint64)
    check = SmapsCheck(str(proc.pid), np.random.default_rng(0))
    _settle(proc.pid)
    for _ in range(3):
        check.prepare(addrs)
        check.check(addrs)
    assert check.idle.skipped == 0


def test_a_gone_process_is_checked_and_fails_as_before(child):
    proc, start = child
    check = SmapsCheck(str(proc.pid), np.random.default_rng(0), proc.pid)
    proc.kill()
    proc.wait()
    assert process_cpu_ns(proc.pid) is None
    with pytest.raises(Exception) as e:
        check.prepare(np.array([start], dtype=np.uint64))
    assert "ESRCH" in str(e.value)
