"""The command a recording runs and monitors (``damond record -- COMMAND ARGS``).

The command is an ordinary child process: it inherits the terminal, and a Ctrl-C reaches it as
well as the recorder. If it outlives the recording (``--timeout``, a signal to the recorder
only), it is terminated, and killed if it does not exit within ``COMMAND_GRACE_S``.
"""

from __future__ import annotations

import subprocess

import trio

from damond.tools.record.errors import RecordError

#: how long a terminated command may take to exit before it is killed
COMMAND_GRACE_S = 3.0
#: how often an async wait checks whether the command exited (its exit needs no sample)
POLL_S = 0.1


def start_command(command: list[str]) -> subprocess.Popen:
    """Start ``command``; a RecordError if it cannot run."""
    try:
        return subprocess.Popen(command)
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
