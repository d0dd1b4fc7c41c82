"""``pidfd_open(2)`` and ``process_madvise(2)``: acting on another process's memory.

DAMOS actions on virtual address spaces (``pageout``, ``cold``, ``willneed``, ``collapse``) become
``process_madvise`` calls on a pidfd. The pidfd pins the *process*, not the pid number, so a pid
reused after the target exits can never be advised by mistake, and polling it tells exit
reliably (:func:`pidfd_alive`).

Kernel facts that shape this module:

* ``pidfd_open`` is 5.3+ (Python's ``os.pidfd_open``); the pid must be a thread-group leader.
* ``process_madvise`` is 5.10+ (``CONFIG_ADVISE_SYSCALLS``); glibc wraps it since 2.36, otherwise
  it is called through ``syscall(2)`` with the per-architecture number below.
* Privilege: 5.10-5.11 PTRACE_MODE_ATTACH; **5.12+ PTRACE_MODE_READ plus CAP_SYS_NICE** (EPERM
  otherwise). Since 6.13 a process advising itself needs neither.
* Advice allowed on another process: only **MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT and
  MADV_COLLAPSE** (6.1+); anything else (MADV_HUGEPAGE, MADV_NOHUGEPAGE, ...) fails with EINVAL,
  checked before the capability. Since 6.13 any advice is accepted when the pidfd is the caller.
* At most IOV_MAX (1024) ranges per call. Ranges are processed in order; when one fails after
  others succeeded the call returns the bytes of the ranges fully done (a range's own length,
  not rounded to pages), and the failed range's errno is lost unless the call is repeated from
  that range, which :func:`process_madvise` does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import select
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from damond.errors import DamonError
from damond.platform.pagesize import PAGE_SIZE

MADV_WILLNEED = 3
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_COLLAPSE = 25

REMOTE_ADVICE = frozenset({MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT, MADV_COLLAPSE})
IOV_MAX = 1024

# process_madvise joined the unified syscall table (424+) in 5.10: 440 everywhere but alpha.
_NR_PROCESS_MADVISE = {
    "x86_64": 440, "aarch64": 440, "arm64": 440, "armv7l": 440, "armv8l": 440, "i386": 440,
    "i686": 440, "riscv64": 440, "ppc64le": 440, "ppc64": 440, "s390x": 440,
    "loongarch64": 440, "mips64": 440, "alpha": 550,
}

# Errors that concern the whole call rather than one range: stop instead of skipping ahead.
_FATAL = {"ESRCH", "EPERM", "EBADF", "ENOSYS", "EFAULT", "EINTR"}


def pidfd_open(pid: int) -> int:
    """A pidfd for ``pid`` (close it with ``os.close``). ESRCH if there is no such process,
    EINVAL if ``pid`` is a thread rather than a process, ENOSYS before 5.3."""
    try:
        return os.pidfd_open(pid, 0)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        why = {"ESRCH": f"no process {pid}",
               "EINVAL": f"{pid} is not a thread-group leader (or bad flags)",
               "ENOSYS": "pidfd_open(2) needs Linux 5.3+"}.get(name, exc.strerror or name)
        raise DamonError(name, f"pidfd_open({pid}): {why}") from None
    except AttributeError:
        raise DamonError("ENOSYS", "this Python has no os.pidfd_open") from None


def pidfd_alive(pidfd: int) -> bool:
    """True while the process behind ``pidfd`` has not exited (zombies count as exited).

    A pidfd becomes readable when its process exits; this polls with a zero timeout, so it
    never blocks. It cannot be fooled by pid reuse: the fd refers to the original process.
    """
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    events = poller.poll(0)
    if not events:
        return True
    if events[0][1] & select.POLLNVAL:
        raise DamonError("EBADF", f"pidfd {pidfd} is not an open file descriptor")
    return False


def pidfd_unreaped(pidfd: int) -> bool:
    """True until the process behind ``pidfd`` is reaped by its parent: zombies count.

    This is the kernel's idea of a valid vaddr target (``damon_va_target_valid()`` finds the
    task through its pid, which a zombie keeps until ``release_task()``). A parent that reads
    DAMON's files in a ``while proc.poll() is None`` loop (the kernel's selftests do) relies on
    it: the kdamond must not stop between its child's exit and its own ``waitpid()``.
    """
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; whether we may signal it does not matter here
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise DamonError("EBADF", f"pidfd {pidfd} is not an open file descriptor") from None
        raise
    return True


@dataclass(frozen=True, slots=True)
class MadviseResult:
    """What :func:`process_madvise` achieved.

    ``advised`` is the sum of the kernel's return values: bytes of ranges it fully advised.
    ``failed`` holds the indices (into the caller's ``ranges``) of ranges it refused; a range
    refused with ENOMEM (it had unmapped holes) may still have been advised where mapped.
    ``error`` is the first error met (None when every range succeeded); for errors that concern
    the whole call (ESRCH, EPERM, EBADF, ENOSYS, and EINVAL on the very first range for advice
    outside :data:`REMOTE_ADVICE`, taken to be the remote allow-list refusing it) all remaining
    ranges are in ``failed`` and no further call was made.
    """

    advised: int
    requested: int
    failed: tuple[int, ...] = ()
    error: DamonError | None = field(default=None)

    @property
    def complete(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error


def _load_call():
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "process_madvise", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                       ctypes.c_uint]
        fn.restype = ctypes.c_ssize_t
        return lambda pidfd, iov, n, advice: fn(pidfd, iov, n, advice, 0)
    nr = _NR_PROCESS_MADVISE.get(platform.machine())
    if nr is None:
        return None
    sc = libc.syscall
    sc.argtypes = [ctypes.c_long] * 6
    sc.restype = ctypes.c_long
    return lambda pidfd, iov, n, advice: sc(nr, pidfd, iov, n, advice, 0)


_CALL = _load_call()


def process_madvise(
    pidfd: int, ranges: Sequence[tuple[int, int]] | np.ndarray, advice: int
) -> MadviseResult:
    """Apply ``advice`` to ``ranges`` (``(start, length)`` pairs) of the process behind ``pidfd``.

    Ranges go to the kernel ``IOV_MAX`` at a time, in order. When the kernel stops at a range
    it reports the bytes done so far; the call is repeated from that range to learn its errno,
    the range is recorded as failed, and the remaining ranges are still advised. Errors about
    the whole call stop everything (see :class:`MadviseResult`). Raises DamonError EINVAL only
    for arguments rejected locally (an unaligned start, a negative length) and ENOSYS when this
    architecture's syscall number is unknown.
    """
    iov, index = _iovecs(ranges)
    requested = int(iov[:, 1].sum()) if iov.size else 0
    if _CALL is None:
        raise DamonError("ENOSYS", f"process_madvise: no syscall number for {platform.machine()}")
    advised, failed, error, i = 0, [], None, 0
    while i < len(iov):
        batch = iov[i : i + IOV_MAX]
        ret = _CALL(pidfd, batch.ctypes.data, len(batch), advice)
        if ret >= 0:
            advised += ret
            done = _ranges_done(batch[:, 1], ret)
            if done == 0:  # no progress and no errno: never loop on it
                error = error or DamonError("EIO", "process_madvise: no progress on a range")
                failed.append(int(index[i]))
                done = 1
            i += done
            continue
        err = _call_error(ctypes.get_errno(), advice, pidfd)
        error = error or err
        if err.errno_name in _FATAL or (err.errno_name == "EINVAL" and advice not in
                                        REMOTE_ADVICE and advised == 0 and i == 0):
            failed.extend(index[i:].tolist())
            break
        failed.append(int(index[i]))
        i += 1
    return MadviseResult(advised, requested, tuple(failed), error)


def _iovecs(ranges: Sequence[tuple[int, int]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A C-contiguous (n, 2) uint64 array laid out as ``struct iovec[]`` (64-bit ABI), without
    zero-length ranges, and the caller's index of each row."""
    arr = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    if (arr[:, 1] < 0).any():
        raise DamonError("EINVAL", "process_madvise: negative range length")
    if (arr[:, 0] % PAGE_SIZE).any():
        raise DamonError("EINVAL", f"process_madvise: range start not {PAGE_SIZE}-byte aligned")
    keep = np.flatnonzero(arr[:, 1] > 0)
    return np.ascontiguousarray(arr[keep].astype(np.uint64)), keep


def _ranges_done(lengths: np.ndarray, ret: int) -> int:
    """How many leading ranges ``ret`` bytes cover (all of them when the batch completed)."""
    cum = np.cumsum(lengths)
    return len(lengths) if ret >= int(cum[-1]) else int(np.searchsorted(cum, ret, side="right"))


def _call_error(code: int, advice: int, pidfd: int) -> DamonError:
    name = errno.errorcode.get(code, "EIO")
    why = {
        "ESRCH": "the target process has exited",
        "EPERM": "needs CAP_SYS_NICE and ptrace-read access to the target (Linux 5.12+)",
        "EBADF": f"pidfd {pidfd} is not an open pidfd",
        "ENOSYS": "process_madvise(2) needs Linux 5.10+ with CONFIG_ADVISE_SYSCALLS",
        "ENOMEM": "range not fully mapped (mapped parts may have been advised)",
        "EAGAIN": "transient kernel resource shortage",
    }.get(name)
    if name == "EINVAL":
        why = (f"advice {advice} not allowed on another process (only WILLNEED, COLD, PAGEOUT,"
               " COLLAPSE)" if advice not in REMOTE_ADVICE else
               f"advice {advice} not applicable to this range (locked, PFN-mapped, hugetlb, or"
               " unsupported by this kernel)")
    return DamonError(name, f"process_madvise: {why or os.strerror(code)}")
