"""Another process's CPU time, to the nanosecond, for the price of one system call.

``clock_gettime()`` on a process's CPU-time clock (``clock_getcpuclockid()``: the clock id
``~pid << 3 | CPUCLOCK_SCHED``) returns the CPU time of its whole thread group, io_uring
workers included, and Linux asks no permission for it. An access check uses it to learn that a
process did not run during a sampling interval: then it did not touch its memory through its
page tables, and the check (and the clearing before the next one) can be skipped.

The value moves when a thread is switched out and at every scheduler tick, so a process that
ran at all during an interval of a few milliseconds shows a change, unless it ran without a
tick on a ``nohz_full`` CPU for the whole interval (then the check is done anyway at the next
change).
"""

from __future__ import annotations

import time

_CPUCLOCK_SCHED = 2


def cpu_clock_id(pid: int) -> int:
    """The clock id of ``pid``'s process CPU-time clock (``MAKE_PROCESS_CPUCLOCK``)."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


def process_cpu_ns(pid: int) -> int | None:
    """CPU nanoseconds ``pid``'s threads have used so far, or None when the process is gone
    (or the clock cannot be read)."""
    try:
        return time.clock_gettime_ns(cpu_clock_id(pid))
    except OSError:
        return None
