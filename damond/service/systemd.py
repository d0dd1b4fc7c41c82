"""systemd's service-manager protocols, hand-rolled: sd_notify and socket activation.

Both are stable, documented protocols (sd_notify(3), sd_listen_fds(3)); speaking them
directly costs a few lines and avoids a C dependency (libsystemd / systemd-python).

* :class:`Notifier` sends ``KEY=value`` datagrams to ``$NOTIFY_SOCKET`` (a path, or an
  abstract name written ``@name``). Without that variable every call is a no-op, so the daemon
  code notifies unconditionally. Failures are logged once and never raised: a service manager
  that went away must not take the daemon down.
* :func:`watchdog_interval` says how often to send ``WATCHDOG=1`` (half of ``WATCHDOG_USEC``,
  as sd_watchdog_enabled(3) recommends), and :func:`watchdog` sends it from a trio task: the
  pings stop when the event loop stops running tasks, which is the failure the watchdog is for.
* :func:`listen_fds` takes the sockets a ``.socket`` unit passed (``LISTEN_FDS`` from fd 3,
  ``LISTEN_PID`` must be ours, ``LISTEN_FDNAMES`` names them) and removes the variables so
  that child processes do not believe the sockets are theirs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import structlog
import trio

log = structlog.get_logger("damond.service.systemd")

#: sd_listen_fds(3): inherited sockets start at this descriptor
SD_LISTEN_FDS_START = 3
#: the activation variables, removed once read
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: the watchdog variables, removed once read (children must not ping for us)
WATCHDOG_VARIABLES = ("WATCHDOG_USEC", "WATCHDOG_PID")
#: the name of a passed socket when LISTEN_FDNAMES does not name it
UNNAMED_FD = "unknown"


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock ``MONOTONIC_USEC=`` is read against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _address(value: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` as a ``sendto`` address: ``@name`` is the abstract name ``\\0name``."""
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    return value


def format_message(fields: Mapping[str, object]) -> bytes:
    """``KEY=value`` lines. A value is one line: line breaks would start a new assignment
    (a STATUS= quoting a broken config could otherwise inject ``READY=1``)."""
    lines = []
    for key, value in fields.items():
        text = str(value).replace("\r", " ").replace("\n", " ")
        lines.append(f"{key}={text}")
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


class Notifier:
    """Sends sd_notify messages to the service manager, if there is one.

    ``address`` defaults to ``$NOTIFY_SOCKET``; :meth:`from_environment` also removes the
    variable, so processes the daemon starts cannot notify in its name.
    """

    def __init__(self, address: str | None = None) -> None:
        self.address = address or None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, *,
                         unset: bool = True) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        if unset:
            env.pop("NOTIFY_SOCKET", None)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: object) -> bool:
        """Send one message made of ``fields`` (e.g. ``READY=1, STATUS="serving"``); True if
        it was sent. Never raises."""
        if self.address is None or not fields:
            return False
        data = format_message(fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # a full manager queue must not block the event loop: drop and log instead
                self._sock.setblocking(False)
            self._sock.sendto(data, _address(self.address))
        except OSError as e:
            if not self._failed:  # once: a gone manager would otherwise flood the log
                log.warning("sd_notify failed", socket=self.address, error=str(e))
                self._failed = True
            return False
        self._failed = False
        return True

    # -- the messages the daemon sends -------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        return self._with_status({"READY": 1}, status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with the ``MONOTONIC_USEC=`` systemd (``Type=notify-reload``) needs
        to tell this reload from an earlier one; follow with :meth:`ready`."""
        return self._with_status({"RELOADING": 1, "MONOTONIC_USEC": monotonic_usec()}, status)

    def stopping(self, status: str | None = None) -> bool:
        return self._with_status({"STOPPING": 1}, status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def _with_status(self, fields: dict[str, object], status: str | None) -> bool:
        if status is not None:
            fields["STATUS"] = status
        return self.notify(**fields)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: MutableMapping[str, str] | None = None, *,
                      unset: bool = True) -> float | None:
    """Seconds between two ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when the
    watchdog is off or meant for another process (``WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if unset:
        for name in WATCHDOG_VARIABLES:
            env.pop(name, None)
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec) if usec is not None else 0
    except ValueError:
        log.warning("WATCHDOG_USEC is not a number; watchdog off", value=usec)
        return None
    if value <= 0:
        return None
    return value / 2 / 1e6


async def watchdog(notifier: Notifier, interval_s: float,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Ping the watchdog every ``interval_s`` until cancelled (the first ping at once)."""
    task_status.started()
    while True:
        notifier.watchdog()
        await trio.sleep(interval_s)


# --------------------------------------------------------------------------------------------
# Socket activation
# --------------------------------------------------------------------------------------------


@dataclass
class ListenedSocket:
    """One socket passed by the service manager."""

    fd: int
    name: str
    sock: socket.socket


def listen_fds(environ: MutableMapping[str, str] | None = None, *,
               unset: bool = True) -> list[ListenedSocket]:
    """The sockets passed by socket activation (empty when there are none, or when
    ``LISTEN_PID`` names another process). Each gets close-on-exec, as sd_listen_fds(3) does.
    The variables are removed (``unset``) whatever they said."""
    env = os.environ if environ is None else environ
    pid, count, names = (env.get(name) for name in LISTEN_VARIABLES)
    if unset:
        for name in LISTEN_VARIABLES:
            env.pop(name, None)
    if pid is None or pid.strip() != str(os.getpid()):
        return []
    try:
        nfds = int(count or "0")
    except ValueError:
        log.warning("LISTEN_FDS is not a number; ignoring passed sockets", value=count)
        return []
    labels = names.split(":") if names else []
    passed = []
    for i in range(max(nfds, 0)):
        fd = SD_LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as e:
            log.warning("passed file descriptor is not a socket; ignored", fd=fd, error=str(e))
            continue
        name = labels[i] if i < len(labels) and labels[i] else UNNAMED_FD
        passed.append(ListenedSocket(fd, name, sock))
    return passed


def pick_socket(passed: list[ListenedSocket], name: str, *,
                fallback_family: int | None = None,
                others: tuple[str, ...] = ()) -> socket.socket | None:
    """The passed socket named ``name``. With ``fallback_family``, else the first socket of
    that family whose name is not in ``others`` (the names of the other roles): a unit without
    ``FileDescriptorName=`` names its sockets after itself (``damond.socket``)."""
    for ls in passed:
        if ls.name == name:
            return ls.sock
    if fallback_family is None:
        return None
    for ls in passed:
        if ls.name not in others and ls.sock.family == fallback_family:
            return ls.sock
    return None
