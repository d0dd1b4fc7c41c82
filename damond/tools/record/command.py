"""The command a recording runs and monitors (``damond record -- COMMAND ARGS``).

The command is an ordinary child process: it inherits the terminal, and a Ctrl-C reaches it as
well as the recorder. If it outlives the recording (``--timeout``, a signal to the recorder
only), it is terminated, and killed if it does not exit within ``COMMAND_GRACE_S``.

If the recorder itself dies without a chance to clean up (SIGKILL, the OOM killer), the command
must not run on unwatched: it is started with ``PR_SET_PDEATHSIG`` = SIGKILL (``prctl(2)``), so
the kernel kills it when the recorder goes. The death signal is tied to the *thread* that forked
it, so the command is started from the main thread, before the recording's event loop; a
recorder that died between ``fork`` and ``prctl`` is caught by checking the parent afterwards.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading

import trio

from damond.tools.record.errors import RecordError

#: how long a terminated command may take to exit before it is killed
COMMAND_GRACE_S = 3.0
#: how often an async wait checks whether the command exited (its exit needs no sample)
POLL_S = 0.1


#: prctl(2) option (linux/prctl.h)
PR_SET_PDEATHSIG = 1


def _die_with_parent_hook():
    """A ``preexec_fn`` that makes the child die with this process. libc and its ``prctl`` are
    looked up here, before ``fork``: the child only calls them (nothing to import or load)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    parent = os.getpid()

    def hook() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(127)  # no death signal, or the recorder already died: do not run

    return hook


def start_command(command: list[str]) -> subprocess.Popen:
    """Start ``command`` (from the main thread: see the module's docstring); a RecordError if
    it cannot run."""
    assert threading.current_thread() is threading.main_thread()
    try:
        return subprocess.Popen(command, preexec_fn=_die_with_parent_hook())
    except OSError as e:
        raise RecordError(f"cannot run {command[0]!r}: {e.strerror or e}") from None


async def wait_exit(proc: subprocess.Popen) -> None:
    """Return once the command has exited."""
    while proc.poll() is None:
        await trio.sleep(POLL_S)


def end_command(proc: subprocess.Popen) -> None:
    """Terminate the recorded command if it outlives the recording (timeout, signal)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(COMMAND_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
