"""``damond serve``: the daemon in the foreground, driven through its control socket.

:func:`serve_main` is the daemon's main coroutine: it owns the root nursery, starts the
scheduler and the control server with ``nursery.start`` (each reports readiness), and on
SIGINT or SIGTERM stops every kdamond, removes the socket and returns 0. Later additions
(sd_notify readiness, configuration files, SIGHUP reload) belong here, between "started" and
"stopping".
"""

from __future__ import annotations

import gc
import os
import signal
import socket
from dataclasses import dataclass
from functools import partial

import structlog
import trio

from damond.control_socket import serve_control
from damond.daemon import Daemon
from damond.errors import DamonError

log = structlog.get_logger("damond.serve")

#: how long stopping the kdamonds may take at shutdown before the nursery is cancelled anyway
STOP_GRACE_S = 10.0
#: sd_listen_fds(3): inherited sockets start at this descriptor
SD_LISTEN_FDS_START = 3


@dataclass
class ServeOptions:
    """What ``damond serve`` was asked to do."""

    socket: str | None = None
    admin_group: str | None = None
    seed: int | None = None


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed (``LISTEN_PID``/``LISTEN_FDS``), if any. The
    variables are removed so that children do not believe the socket is theirs."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        nfds = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if nfds < 1:
        return None
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def _freeze_startup_objects() -> None:
    """Move everything allocated at startup (modules, numpy, the registry) out of the cyclic
    garbage collector's reach: a full collection then walks only what was created since, so
    it costs a kdamond far less lateness when control traffic triggers one."""
    gc.collect()
    gc.freeze()


async def serve_main(options: ServeOptions,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> int:
    """Run the daemon until SIGINT or SIGTERM; return the exit status."""
    # receive signals first: a SIGTERM during startup must still stop cleanly
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        daemon = Daemon(seed=options.seed)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.scheduler.serve)
            sock = inherited_socket() if options.socket is None else None
            path = await nursery.start(partial(
                serve_control, daemon, path=options.socket, sock=sock,
                admin_group=options.admin_group))
            _freeze_startup_objects()
            log.info("damond serving", socket=path, pid=os.getpid())
            task_status.started(path)
            async for signum in signals:
                log.info("damond stopping", signal=signal.Signals(signum).name)
                break
            with trio.move_on_after(STOP_GRACE_S):
                await daemon.stop_all()
            nursery.cancel_scope.cancel()
    log.info("damond stopped")
    return 0


def _startup_error(exc: BaseException) -> BaseException | None:
    """The OSError/ValueError/DamonError that made startup fail, if that is what happened."""
    if isinstance(exc, OSError | ValueError | DamonError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _startup_error(inner)
            if found is not None:
                return found
    return None


def run_serve(options: ServeOptions) -> int:
    """``damond serve``: 0 after a signal, 1 if the daemon could not start."""
    try:
        return trio.run(serve_main, options)
    except BaseException as e:
        cause = _startup_error(e)
        if cause is None:
            raise
        log.error("damond could not start", error=str(cause))
        return 1
