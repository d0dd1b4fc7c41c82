"""The running kernel's own DAMON: its sysfs admin tree and the tracefs files that carry its
``damon:damon_aggregated`` events.

Thin wrappers only: paths, reads, writes and the kernel's errnos as ``OSError``. Deciding
whether damond may use the kernel's DAMON (the tree may belong to someone else) is the offload
service's job (``damond.service.offload``); this module never decides, it reports.

Facts this module relies on (Linux 6.12, checked in the guest kernel; same in 6.18):

* ``kdamonds/nr_kdamonds`` writes remove *every* kdamond directory and create N fresh ones, and
  are refused while any kdamond runs (``damon_sysfs_kdamonds_busy()``); so a tree holding
  kdamonds of another user can never be grown without destroying their directories.
* ``avail_operations`` exists only inside a context directory (v5.19+).
* A kdamond thread is named ``kdamond.N`` where N counts the kdamonds running at its start,
  not its sysfs index: events are told apart by the thread's pid, never by that name.
* Each tracefs instance has its own ring buffer, event enables, filters and ``trace_clock``;
  with ``trace_clock`` ``mono`` the event time stamps are CLOCK_MONOTONIC, as damond's are.
* ``trace_pipe`` can be polled; since Linux 6.1 its poll waits until the ring buffer is
  ``buffer_percent`` full (default 50), so a reader that wants each event soon sets it to 0.
  Opening the instance's ``trace`` file with ``O_TRUNC`` empties its ring buffer.
* A kdamond thread can be watched with a pidfd (Linux 5.3+): it polls readable once the
  thread has exited, so nobody needs to poll ``state`` to learn that the kdamond stopped.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

ADMIN = "/sys/kernel/mm/damon/admin"
#: where tracefs is found (the second: the old debugfs mount point)
TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENT_DIR = "events/damon/damon_aggregated"
#: a trace_pipe read returns at most this much (the kernel fills up to a page per read call)
PIPE_READ_SIZE = 1 << 16


class KernelDamonTree:
    """``/sys/kernel/mm/damon/admin`` (or a copy of its layout at ``admin``, for tests)."""

    def __init__(self, admin: str = ADMIN) -> None:
        self.admin = admin
        self.kdamonds = os.path.join(admin, "kdamonds")

    # -- reading -------------------------------------------------------------------------

    def present(self) -> bool:
        """Whether the kernel has DAMON's sysfs interface at all."""
        return os.path.isfile(os.path.join(self.kdamonds, "nr_kdamonds"))

    def path(self, rel: str) -> str:
        return os.path.join(self.kdamonds, rel)

    def read(self, rel: str) -> str:
        with open(self.path(rel)) as f:
            return f.read().strip()

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def nr_kdamonds(self) -> int:
        return int(self.read("nr_kdamonds"))

    def state(self, index: int) -> str:
        return self.read(f"{index}/state")

    def pid(self, index: int) -> int:
        return int(self.read(f"{index}/pid"))

    def running(self) -> list[int]:
        """Indices of the kdamonds whose ``state`` reads ``on``."""
        return [i for i in range(self.nr_kdamonds()) if self.state(i) == "on"]

    def avail_operations(self) -> list[str] | None:
        """The operation sets the kernel's DAMON has, read from the first context directory
        there is; None when the tree has no context directory to read it from."""
        for i in range(self.nr_kdamonds()):
            rel = f"{i}/contexts/0/avail_operations"
            if self.exists(rel):
                return self.read(rel).split()
        return None

    def listing(self) -> dict[str, str]:
        """Every readable file of the tree and its content (what "left as found" compares)."""
        out: dict[str, str] = {}
        for dirpath, _dirs, files in os.walk(self.admin):
            for name in sorted(files):
                p = os.path.join(dirpath, name)
                try:
                    with open(p) as f:
                        out[p] = f.read()
                except OSError as e:
                    out[p] = f"<{errno.errorcode.get(e.errno, e.errno)}>"
        return out

    # -- writing -------------------------------------------------------------------------

    def write(self, rel: str, value: str | int) -> None:
        """One ``write(2)`` of ``value`` and a newline; the kernel's refusal as ``OSError``."""
        fd = os.open(self.path(rel), os.O_WRONLY)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)

    def set_nr_kdamonds(self, nr: int) -> None:
        self.write("nr_kdamonds", nr)


def kernel_thread_cpu_ns(pid: int) -> int | None:
    """utime + stime of thread ``pid`` (a kdamond) in nanoseconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def open_pidfd(pid: int) -> int | None:
    """A pidfd of thread ``pid`` (readable once it has exited), or None where the kernel or
    Python has no pidfd (Linux < 5.3); ``ProcessLookupError`` when the thread is gone."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
            return None
        raise


def find_tracefs() -> str | None:
    """The tracefs mount that has DAMON's events, or None."""
    for root in TRACEFS_ROOTS:
        if os.path.isdir(os.path.join(root, "instances")) and os.path.isdir(
                os.path.join(root, EVENT_DIR)):
            return root
    return None


class TraceInstance:
    """A tracefs instance of damond's own (``instances/NAME``): its own ring buffer, so that
    enabling, filtering and consuming ``damon_aggregated`` there disturbs no other tracer."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self.dir = os.path.join(root, "instances", name)
        self._fd: int | None = None
        self._rest = b""

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def create(self) -> None:
        """Make the instance, CLOCK_MONOTONIC time stamps, the event off; a poll of its
        ``trace_pipe`` wakes at the first event (``buffer_percent`` 0, where the kernel has
        it); lines without the irq-flags column (what the parsers skip anyway)."""
        os.mkdir(self.dir)
        self._write("trace_clock", "mono")
        if os.path.exists(os.path.join(self.dir, "buffer_percent")):
            self._write("buffer_percent", "0")
        if os.path.exists(os.path.join(self.dir, "options", "irq-info")):
            self._write("options/irq-info", "0")  # no flags column: less for the kernel to print

    def _write(self, rel: str, value: str) -> None:
        fd = os.open(os.path.join(self.dir, rel), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)

    def enable(self, pids: list[int]) -> None:
        """Record ``damon_aggregated`` of the kdamond threads ``pids`` only."""
        self._write(f"{EVENT_DIR}/filter",
                    " || ".join(f"common_pid == {p}" for p in pids) if pids else "0")
        self._write(f"{EVENT_DIR}/enable", "1")

    def disable(self) -> None:
        self._write(f"{EVENT_DIR}/enable", "0")

    def read_available(self) -> Iterator[str]:
        """Lines consumed from ``trace_pipe`` now, without waiting (O_NONBLOCK: EAGAIN when
        the buffer is empty). A partial last line is kept for the next call."""
        return iter(self.read_block().decode(errors="replace").splitlines())

    def pipe_fd(self) -> int:
        """The instance's ``trace_pipe``, opened non-blocking (once): poll it for events."""
        if self._fd is None:
            self._fd = os.open(os.path.join(self.dir, "trace_pipe"),
                               os.O_RDONLY | os.O_NONBLOCK)
            self._rest = b""
        return self._fd

    def read_block(self) -> bytes:
        """Every complete line ``trace_pipe`` holds now, as one block of bytes, read in
        ``PIPE_READ_SIZE`` calls without waiting; a partial last line is kept for the next
        call. Cheaper than :meth:`read_available` for a reader that parses in bulk."""
        fd = self.pipe_fd()
        chunks = [self._rest]
        while True:
            try:
                data = os.read(fd, PIPE_READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        text = b"".join(chunks)
        cut = text.rfind(b"\n") + 1
        self._rest = text[cut:]
        return text[:cut]

    def close_pipe(self) -> None:
        """Close ``trace_pipe`` (a later read opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._rest = b""

    def clear(self) -> None:
        """Empty the instance's ring buffer (events recorded and not yet read are lost)."""
        os.close(os.open(os.path.join(self.dir, "trace"), os.O_WRONLY | os.O_TRUNC))
        self._rest = b""

    def remove(self) -> None:
        """Close the pipe and remove the instance (its buffer and enables go with it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.exists():
            with contextlib.suppress(OSError):
                self.disable()
            os.rmdir(self.dir)
