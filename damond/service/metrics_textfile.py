"""The metrics as a file for node_exporter's textfile collector.

The file is replaced by writing a temporary file and renaming it over the old one, so the
collector never reads half a file; it is rewritten every interval and a last time when the
daemon stops.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING

import structlog
import trio

from damond.service.metrics import render_metrics

if TYPE_CHECKING:
    from damond.service.daemon import Daemon

log = structlog.get_logger("damond.service.metrics_textfile")


def write_textfile(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a reader sees the old or the new file.

    The temporary file is in the same directory (rename is atomic only within a file system),
    starts with a dot and does not end in ``.prom``, so the collector never picks it up. It is
    made by ``mkstemp`` (``O_CREAT|O_EXCL``, a random name): the collector directory is often
    writable by others, and a symlink planted under a predictable name must never be followed
    (root would truncate and chmod its target). The mode is set on the descriptor, for the
    same reason. The file is removed again if anything fails (a full disk leaves nothing).
    """
    directory, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    try:
        # not subject to the umask: node_exporter runs as another user
        os.fchmod(fd, 0o644)
        with open(fd, "w", encoding="utf-8", closefd=False) as f:
            f.write(text)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def textfile_exporter(daemon: Daemon, path: str, interval_s: float,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
    """Write the metrics to ``path`` now and every ``interval_s``; a last time when cancelled
    (so the file does not claim kdamonds run after the daemon stopped).

    The first write happens before reporting started: a path that cannot be written is a
    startup error. Later failures are logged (once per distinct error) and retried.
    """
    await trio.to_thread.run_sync(write_textfile, path, render_metrics(daemon))
    task_status.started()
    last_error = None
    try:
        while True:
            await trio.sleep(interval_s)
            try:
                await trio.to_thread.run_sync(write_textfile, path, render_metrics(daemon))
                last_error = None
            except OSError as e:
                if str(e) != last_error:
                    log.warning("metrics textfile not written", path=path, error=str(e))
                    last_error = str(e)
    finally:
        with trio.CancelScope(shield=True):
            try:
                write_textfile(path, render_metrics(daemon))
            except OSError as e:
                log.warning("metrics textfile not written", path=path, error=str(e))


