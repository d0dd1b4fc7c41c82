"""``damond serve``: the daemon in the foreground, as systemd (or a shell) runs it.

:func:`serve_main` is the daemon's main coroutine. Its life has four phases:

1. **Before anything starts**: read the environment systemd prepared (``NOTIFY_SOCKET``,
   ``WATCHDOG_USEC``, ``LISTEN_FDS``), then read and completely validate the ``--config`` file.
   A bad file ends the daemon here with exit status 1 and a message naming the problem.
2. **Starting**: one root nursery; each component is started with ``nursery.start`` and
   reports when it is really up: the watchdog pings, the scheduler, the control socket
   (listening), the configuration's kdamonds (running), the metrics exporters (first file
   written, HTTP listening). Only then ``READY=1`` goes to the service manager.
3. **Serving**: SIGHUP reloads the configuration (``RELOADING=1`` + ``MONOTONIC_USEC``, then
   ``READY=1``; a broken file is refused and reported in ``STATUS=``, see
   :mod:`damond.service.config`).
4. **Stopping**: SIGINT or SIGTERM sends ``STOPPING=1``, stops every kdamond (within
   ``STOP_GRACE_S``), removes the socket the daemon bound itself (never an inherited one)
   and returns 0.

Signals are received from the very start, so a SIGTERM during startup still stops cleanly
(it is handled once startup completes).
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
from dataclasses import dataclass
from functools import partial

import structlog
import trio

from damond.control_socket import serve_control
from damond.core.budget import DEFAULT_CPU_BUDGET
from damond.errors import DamonError
from damond.service import logs
from damond.service.config import (
    ConfigManager,
    DaemonSettings,
    ReloadResult,
    check_config,
    read_config,
)
from damond.service.daemon import Daemon
from damond.service.metrics_http import serve_metrics_http
from damond.service.metrics_textfile import textfile_exporter
from damond.service.systemd import Notifier, listen_fds, pick_socket, watchdog, watchdog_interval

log = structlog.get_logger("damond.service.serve")

#: how long stopping the kdamonds may take at shutdown before the nursery is cancelled anyway
STOP_GRACE_S = 10.0
#: LISTEN_FDNAMES of the passed sockets (FileDescriptorName= in the .socket units)
CONTROL_FD_NAME = "control"
METRICS_FD_NAME = "metrics"
DEFAULT_LOG_LEVEL = "info"
#: node_exporter scrapes every 15-60 s; a fresher file only costs writes
DEFAULT_METRICS_INTERVAL_S = 15.0
#: how long cleaning up after a killed previous daemon's offload may delay startup
RECOVER_TIMEOUT_S = 10.0
#: how often STATUS= is brought up to date when kdamonds stop or start on their own
STATUS_REFRESH_S = 2.0


@dataclass
class ServeOptions:
    """What ``damond serve`` was asked to do."""

    socket: str | None = None
    admin_group: str | None = None
    seed: int | None = None
    #: damo kdamonds JSON/YAML to start from (and reload on SIGHUP)
    config: str | None = None
    #: an explicit level wins over the configuration's ``damond.log_level``
    log_level: str | None = None
    log_format: str = "auto"
    metrics_textfile: str | None = None
    metrics_interval: float = DEFAULT_METRICS_INTERVAL_S
    metrics_listen: str | None = None
    #: also serve the sysfs files at this directory (FUSE, in-process)
    mount: str | None = None
    #: each kdamond's monitoring budget, a share of one CPU (0 disables it)
    cpu_budget: float = DEFAULT_CPU_BUDGET
    #: ``auto``: contexts whose operation set the kernel's DAMON has run there; ``never``
    offload: str = "auto"
    #: ``auto``: operation sets with a batch sampler sample each aggregation in a worker thread
    #: (natively where they can); ``per-sample``: every sample on the event loop
    sampler: str = "auto"


def _freeze_startup_objects() -> None:
    """Move everything allocated at startup (modules, numpy, the registry) out of the cyclic
    garbage collector's reach: a full collection then walks only what was created since, so
    it costs a kdamond far less lateness when control traffic triggers one."""
    gc.collect()
    gc.freeze()


class _Service:
    """One run of the daemon: the components, the service manager, the configuration."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        # systemd's variables are read (and removed) before anything can start a child
        self.notifier = Notifier.from_environment()
        self.watchdog_s = watchdog_interval()
        self.passed = listen_fds()
        self.daemon = Daemon(seed=options.seed, cpu_budget=options.cpu_budget,
                             offload=options.offload, sampler=options.sampler)
        self.manager = ConfigManager(
            self.daemon, options.config, on_settings=self._apply_settings,
            on_reload_start=self._reload_started, on_reload_done=self._reload_done)
        self.daemon.config_manager = self.manager  # for the reload command and the metrics
        self.socket_path: str | None = None
        self.log_level = options.log_level or DEFAULT_LOG_LEVEL
        #: the outcome of the last reload, kept in STATUS= until the next one
        self.note = ""
        self.last_status: str | None = None

    async def run(self, signals, task_status: trio.TaskStatus[str]) -> int:
        try:
            return await self._run(signals, task_status)
        except BaseException as e:
            cause = _startup_error(e)
            if cause is not None:
                self.notifier.notify(STATUS=f"failed: {cause}",
                                     ERRNO=getattr(cause, "errno", None) or 1)
            raise
        finally:
            self.notifier.close()

    async def _run(self, signals, task_status: trio.TaskStatus[str]) -> int:
        self.notifier.status("loading the configuration" if self.options.config
                             else "starting")
        config = await self.manager.load() if self.options.config else None
        if config is not None:
            self._apply_settings(config.settings)  # the log level before anything logs
        async with trio.open_nursery() as nursery:
            if self.watchdog_s is not None:
                await nursery.start(watchdog, self.notifier, self.watchdog_s)
            # kernel kdamonds a killed previous daemon left (its state file says which)
            # (bounded: a kernel write that hangs must not keep the daemon from serving)
            with trio.move_on_after(RECOVER_TIMEOUT_S):
                await trio.to_thread.run_sync(self.daemon.offload.recover,
                                              abandon_on_cancel=True)
            await nursery.start(self.daemon.scheduler.serve)
            self.socket_path = await nursery.start(partial(
                serve_control, self.daemon, path=self.options.socket,
                sock=self._control_socket(), admin_group=self.options.admin_group))
            if config is not None:
                await self.manager.start(config)
            await self._start_metrics(nursery)
            if self.options.mount:
                # imported here: pyfuse3 (libfuse3) is needed only by daemons that mount
                from damond.interfaces.fuse.backend import VfsBackend
                from damond.interfaces.fuse.session import serve_fuse

                await nursery.start(serve_fuse, VfsBackend(self.daemon.vfs), self.options.mount)
            _freeze_startup_objects()
            log.info("damond serving", socket=self.socket_path, pid=os.getpid(),
                     config=self.options.config, kdamonds=self._running(),
                     cpu_budget=self.options.cpu_budget)
            self.notifier.ready(self._status())
            if self.notifier.enabled:
                nursery.start_soon(self._refresh_status)
            task_status.started(self.socket_path)
            async with trio.open_nursery() as reloads:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        # in a task of its own: SIGTERM must be heard while a reload runs
                        # (reloads queue on the manager's lock)
                        reloads.start_soon(self.manager.reload)
                        continue
                    log.info("damond stopping", signal=signal.Signals(signum).name)
                    self.notifier.stopping(f"stopping ({signal.Signals(signum).name})")
                    break
                reloads.cancel_scope.cancel()  # shutdown never waits for a reload
            with trio.move_on_after(STOP_GRACE_S):
                await self.daemon.stop_all()
            nursery.cancel_scope.cancel()
        log.info("damond stopped")
        return 0

    # -- components ---------------------------------------------------------------------------

    def _control_socket(self) -> socket.socket | None:
        if self.options.socket is not None:
            return None  # an explicit --socket wins over a passed one
        return pick_socket(self.passed, CONTROL_FD_NAME, fallback_family=socket.AF_UNIX,
                           others=(METRICS_FD_NAME,))

    async def _start_metrics(self, nursery: trio.Nursery) -> None:
        o = self.options
        if o.metrics_textfile:
            await nursery.start(textfile_exporter, self.daemon, o.metrics_textfile,
                                o.metrics_interval)
        sock = pick_socket(self.passed, METRICS_FD_NAME)
        if o.metrics_listen or sock is not None:
            await nursery.start(partial(serve_metrics_http, self.daemon,
                                        listen=o.metrics_listen, sock=sock))

    # -- status and reload ----------------------------------------------------------------

    def _running(self) -> int:
        return sum(1 for k in self.daemon.sysfs.kdamonds if k.running)

    def _status(self) -> str:
        """The STATUS= text: what runs, and how the last reload went."""
        total = len(self.daemon.sysfs.kdamonds)
        text = f"serving on {self.socket_path}; {self._running()} of {total} kdamonds running"
        if self.options.config:
            text += f" (config {self.options.config})"
        self.last_status = text + self.note
        return self.last_status

    async def _refresh_status(self) -> None:
        """kdamonds also stop on their own (their processes exit) or by ``state`` writes:
        keep ``systemctl status`` truthful."""
        while True:
            await trio.sleep(STATUS_REFRESH_S)
            previous = self.last_status
            if self._status() != previous:
                self.notifier.status(self.last_status)

    def _reload_started(self, path: str) -> None:
        self.notifier.reloading(f"reloading {path}" if path else "reloading")

    def _reload_done(self, result: ReloadResult) -> None:
        if result.ok:
            self.note = f"; reloaded: {result.message}"
        elif result.report is None:
            self.note = f"; reload failed: {result.message}"
        else:
            self.note = f"; reload partly failed: {result.message}"
        self.notifier.ready(self._status())

    def _apply_settings(self, settings: DaemonSettings) -> None:
        level = self.options.log_level or settings.log_level or DEFAULT_LOG_LEVEL
        if level != self.log_level:
            logs.configure(level, fmt=self.options.log_format)
            log.info("log level changed", log_level=level)
            self.log_level = level


async def serve_main(options: ServeOptions,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> int:
    """Run the daemon until SIGINT or SIGTERM; return the exit status."""
    # receive signals first: a SIGTERM during startup must still stop cleanly
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        return await _Service(options).run(signals, task_status)


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


def check_config_file(path: str) -> int:
    """``damond serve --config FILE --check``: validate as startup would, start nothing. The
    verdict is for a person at a terminal (or a packaging script): plain lines, the refusal
    on standard error, not log records."""
    try:
        config = read_config(path)
        check_config(Daemon(), config)
    except DamonError as e:
        print(f"damond serve: configuration refused: {e.why} ({e.errno_name})", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"damond serve: warning: {path}: {warning}", file=sys.stderr)
    print(f"{path}: OK ({len(config.specs)} kdamonds)")
    return 0
