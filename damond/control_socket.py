"""The control socket: a unix stream server speaking the line protocol (protocol.md).

Each client is one trio task that turns bytes into logical requests, has its
:class:`~damond.control.commands.Session` answer them in order, and streams ``trace`` output. The
meaning of a request is decided in ``damond.control.commands``; this module moves bytes, decides who
may write (``SO_PEERCRED``) and keeps clients from hurting the kdamonds or each other:

* kdamonds share the one trio thread with the clients, so a sample is late by whatever
  control work runs when it is due. All of a client's CPU work (decoding, assembling,
  executing, formatting trace lines) runs in small steps under one daemon-wide gate, a fair
  ``trio.Lock``: however many clients are busy, one step of control work at a time is
  runnable next to the kdamonds. Long input is consumed in slices for the same reason.
* Nothing blocks while holding the gate: replies are sent after it is released, so a client
  that does not read stalls only itself; a command that waits (a ``commit`` for the
  kdamond's next sample, a write for the lock of its kdamond, see ``damond.control.locks``,
  a ``reload``) gives the gate up meanwhile.
* ``ls``, ``tree`` and ``dump`` of a large tree (65,536 regions or schemes) run in a forked
  copy of the daemon (:func:`forked_walk`): the loop only moves their bytes.
* Connection slots are shared out so that a read-only peer holding hundreds of idle
  connections cannot lock root out (:meth:`ControlServer.admit`).
* ``trace`` buffers events per client in a bounded queue filled by a non-blocking subscriber
  (it runs inside the kdamond); what a slow client cannot take is dropped, counted and
  reported as ``# dropped N events``.

The wire text (status and note lines, escaping, framing, the socket's default path) is defined
in ``damond.control.protocol``, shared with the clients; the tracepoint lines in
``damond.interfaces.tracepoint``.
"""

from __future__ import annotations

import codecs
import errno
import gc
import grp
import os
import re
import select
import signal
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
import trio

from damond.control.commands import PeerCred, Reply, Session, Shared
from damond.control.protocol import (
    CONTINUATION_PROMPT,
    OK,
    PROMPT,
    default_socket_path,
    encode_lines,
    error_status,
    format_dropped_note,
    format_stopped_note,
)
from damond.control.syntax import MAX_REQUEST_BYTES, LineAssembler
from damond.core.events import AggregationEvent
from damond.errors import DamonError
from damond.interfaces import tracepoint

if TYPE_CHECKING:
    from damond.scheduler import Kdamond, Scheduler
    from damond.service.daemon import Daemon

log = structlog.get_logger("damond.control")

#: mode of a socket directory damond creates: the daemon's group may traverse it
SOCKET_DIR_MODE = 0o750
#: connect(2) needs write permission on the socket: owner and group may connect
SOCKET_MODE = 0o660
#: pending connections the kernel queues; clients connect briefly and often (scripts)
LISTEN_BACKLOG = 128
#: bytes read per receive: one maximal request fits
RECV_BYTES = 64 * 1024
#: most bytes of one unfinished line assembled per step; the lexer costs about a
#: microsecond per character, so this bounds one step of an over-long line to about 1 ms
INPUT_SLICE_BYTES = 1024
#: replies are sent once this much is pending even if more requests are ready
FLUSH_BYTES = 64 * 1024
#: trace events (tracepoint lines, i.e. regions) buffered per client before dropping
TRACE_BUFFER_LINES = 8192
#: tracepoint lines formatted per step of a trace stream
TRACE_LINES_PER_STEP = 256
#: while no event comes, how often a trace stream checks whether its client hung up
HANGUP_POLL_S = 0.5
#: connections served at once; more are told EAGAIN and closed (file descriptors are finite)
MAX_CLIENTS = 512
#: of those, kept for root and the daemon's own user: no one else can lock them out
OWNER_RESERVE = 32
#: of those, kept for peers who may write (the owners and --admin-group): read-only peers
#: together hold at most MAX_CLIENTS - ADMIN_RESERVE
ADMIN_RESERVE = 128
#: connections one uid other than the owners' may hold at once
MAX_CLIENTS_PER_UID = 64
#: forked tree walkers (``ls``, ``tree``, ``dump`` of a large tree) running at once
MAX_WALKERS = 2
#: a forked walker that takes longer is killed and its client told ETIMEDOUT
WALK_TIMEOUT_S = 120.0
#: control steps whose CPU time ``status`` summarises
STEP_HISTORY = 4096
#: Linux SO_PEERGROUPS (4.13+): the peer's supplementary groups at connect(2)
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_NGROUPS_MAX = 65536

_BAD_INPUT = re.compile("[\x00\udc80-\udcff]")
#: characters that can make a request continue past the end of its line
_CONTINUES = re.compile(r"""['"\\`$]""")


# --------------------------------------------------------------------------------------------
# The listening socket
# --------------------------------------------------------------------------------------------


def _refuse_live_socket(path: str) -> None:
    """A socket left by a dead daemon may be replaced; a live one or another file may not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket; not replacing it",
                              path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return  # nobody listens: stale
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another daemon is listening on it", path)


def bind_control_socket(path: str, *, create_directory: bool = False) -> socket.socket:
    """Create the listening socket at ``path`` (mode 0660), replacing a stale one.

    The socket is bound under a temporary name, given its mode, put in listening state and
    only then renamed to ``path``, so a client never finds a socket that refuses connections
    or has the wrong mode. A missing directory is created (mode 0750) only when
    ``create_directory`` is true, i.e. for the default path: a mistyped ``--socket`` must
    fail with ENOENT rather than create directories nobody asked for.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        if not create_directory:
            raise FileNotFoundError(
                errno.ENOENT, "the socket's directory does not exist (damond creates only its "
                "default directory; create it first)", directory)
        os.makedirs(directory, mode=SOCKET_DIR_MODE, exist_ok=True)
    _refuse_live_socket(path)
    tmp = f"{path}.{os.getpid()}.new"
    if len(os.fsencode(tmp)) >= 108:  # sun_path limit: bind in place
        tmp = path
        if os.path.lexists(path):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(tmp)
        finally:
            os.umask(old_umask)
        os.chmod(tmp, SOCKET_MODE)
        sock.listen(LISTEN_BACKLOG)
        if tmp != path:
            os.replace(tmp, path)
    except BaseException:
        sock.close()
        if tmp != path and os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return sock


def _unlink_if_ours(path: str, ident: tuple[int, int]) -> None:
    """Remove the socket file at exit unless someone replaced it meanwhile."""
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
    except OSError:
        pass


def _adopt(sock: Any) -> trio.socket.SocketType:
    """An already-listening socket (systemd socket activation): a trio socket, a stdlib
    socket or a file descriptor number."""
    if isinstance(sock, int):
        return trio.socket.fromfd(sock, socket.AF_UNIX, socket.SOCK_STREAM)
    if isinstance(sock, socket.socket):
        return trio.socket.from_stdlib_socket(sock)
    return sock


# --------------------------------------------------------------------------------------------
# Who is connecting
# --------------------------------------------------------------------------------------------


def peer_credentials(sock: socket.socket | trio.socket.SocketType) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the peer, as the kernel captured them at connect(2)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def peer_groups(sock: socket.socket | trio.socket.SocketType, pid: int) -> set[int]:
    """The peer's supplementary groups: ``SO_PEERGROUPS``, else its ``/proc`` status."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * _NGROUPS_MAX)
        return set(struct.unpack(f"{len(raw) // 4}I", raw))
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    return set()


def resolve_group(group: str | int | None) -> int | None:
    """A group name or number as a gid (ValueError if no such group)."""
    if group is None or group == "":
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise ValueError(f"no group named {group!r}") from None


# --------------------------------------------------------------------------------------------
# Bytes -> requests
# --------------------------------------------------------------------------------------------


class RequestReader:
    """Turns received bytes into logical requests, a bounded amount of work per step.

    Physical lines end with ``\\n`` (a ``\\r`` before it is dropped). A request that contains
    a NUL byte or invalid UTF-8 anywhere is answered with one refusal in its place; so is one
    longer than ``MAX_REQUEST_BYTES`` (by ``LineAssembler``, in constant memory). Refused
    bytes still count for quote tracking, so the next request starts where the client meant.
    """

    def __init__(self, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._assembler = LineAssembler(max_bytes)
        self._poison: DamonError | None = None
        self.eof = False
        self._closed = False
        #: the last step ended a physical line without completing a request (open quote)
        self.continued = False

    def push(self, data: bytes) -> None:
        if self._pos > len(self._buf) // 2:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def close(self) -> None:
        """The client sent its last byte."""
        self.eof = True

    @property
    def finished(self) -> bool:
        return self._closed

    def ready(self) -> bool:
        """Whether :meth:`step` can make progress without more input."""
        unread = len(self._buf) - self._pos
        if self.eof:
            return not self._closed
        return unread >= INPUT_SLICE_BYTES or self._buf.find(b"\n", self._pos) >= 0

    def step(self) -> list[str | DamonError]:
        """Consume one line (or one slice of a long line); return the requests it completed."""
        self.continued = False
        end = self._buf.find(b"\n", self._pos, self._pos + INPUT_SLICE_BYTES)
        if end >= 0:
            end += 1
        elif len(self._buf) - self._pos >= INPUT_SLICE_BYTES:
            end = self._pos + INPUT_SLICE_BYTES
        elif self.eof:
            end = len(self._buf)
        else:
            return []
        chunk = bytes(self._buf[self._pos:end])
        self._pos = end
        last = self.eof and self._pos == len(self._buf)
        text = self._decoder.decode(chunk, final=last)
        bad = _BAD_INPUT.search(text)
        if bad:
            if self._poison is None:
                self._poison = (DamonError("EINVAL", "NUL byte in the request")
                                if bad.group() == "\x00"
                                else DamonError("EILSEQ", "the request is not valid UTF-8"))
            text = _BAD_INPUT.sub("\ufffd", text)
        if (text.endswith("\n") and not self._assembler.pending
                and not _CONTINUES.search(text)):
            line = text[:-1]
            items: list[str | DamonError] = [line[:-1] if line.endswith("\r") else line]
        else:
            items = self._assembler.feed_chunk(text)
            if text.endswith("\n") and not items:
                self.continued = True
        if last:
            items += self._assembler.close()
            self._closed = True
            self.continued = False
        if items and self._poison is not None:
            items[0] = self._poison
            self._poison = None
        return items


# --------------------------------------------------------------------------------------------
# trace
# --------------------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client closed its connection (found while streaming)."""


class TraceFeed:
    """One trace client's bounded event queue, fed from every running kdamond and from the
    ones that start later. :meth:`push` runs inside the kdamonds and never blocks."""

    def __init__(self, limit_lines: int = TRACE_BUFFER_LINES) -> None:
        self.limit = limit_lines
        self.events: deque[AggregationEvent] = deque()
        self.lines = 0  # tracepoint lines (regions) buffered
        self.dropped = 0  # tracepoint lines dropped, ever
        self._wakeup = trio.Event()
        self._unsubscribes: list = []
        self._scheduler: Scheduler | None = None
        #: the kdamonds followed, until their stop has been reported
        self.followed: list[Kdamond] = []

    def push(self, event: AggregationEvent) -> None:
        n = event.nr_events
        if self.events and self.lines + n > self.limit:
            self.dropped += n
            return
        self.events.append(event)
        self.lines += n
        self._wakeup.set()

    def follow(self, kd: Kdamond) -> None:
        self._unsubscribes.append(kd.subscribe(self.push))
        self.followed.append(kd)

    def stopped(self) -> list[Kdamond]:
        """The followed kdamonds that stopped since the last call (each reported once; a
        waiting stream looks every ``HANGUP_POLL_S``)."""
        gone = [kd for kd in self.followed if kd.finished.is_set()]
        self.followed = [kd for kd in self.followed if not kd.finished.is_set()]
        return gone

    def attach(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        for kd in list(scheduler.running):
            self.follow(kd)
        scheduler.start_listeners.append(self.follow)

    def detach(self) -> None:
        if self._scheduler is not None and self.follow in self._scheduler.start_listeners:
            self._scheduler.start_listeners.remove(self.follow)
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes.clear()

    def pop(self) -> AggregationEvent:
        event = self.events.popleft()
        self.lines -= event.nr_events
        return event

    async def wait(self, timeout: float) -> bool:
        """Wait until an event is buffered (True) or ``timeout`` passes (False)."""
        if self.events:
            return True
        self._wakeup = trio.Event()
        with trio.move_on_after(timeout):
            await self._wakeup.wait()
        return bool(self.events)


def _stop_notes(feed: TraceFeed) -> list[str]:
    """``# kdamond.N stopped: <why>`` for each followed kdamond that stopped meanwhile: a
    client waiting for events learns why none come (e.g. its target process exited)."""
    return [format_stopped_note(kd.name, kd.stop_reason or "stopped") for kd in feed.stopped()]


def _hung_up(stream: trio.abc.Stream) -> bool:
    """Whether the peer closed (not merely half-closed) the connection."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), 0)  # POLLHUP and POLLERR are always reported
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))


# --------------------------------------------------------------------------------------------
# Large walks: in a forked snapshot
# --------------------------------------------------------------------------------------------


def _walk_child(fn: Callable[[], Reply], fd: int) -> None:
    """In the forked child: produce the reply, write ``<status>\n`` and then the reply's wire
    bytes to ``fd``. Never returns."""
    code = 0
    try:
        gc.disable()  # a collection would touch (and copy) every page of the snapshot
        # signals are the daemon's business: die of them; wake no trio loop
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        # hold no client's connection (or the listening socket) open while walking
        os.closerange(3, fd)
        os.closerange(fd + 1, _max_fd())
        try:
            reply = fn()
            status, wire = reply.status, encode_lines(reply.lines())
        except DamonError as e:
            status = error_status(e.errno_name, e.what or "walk", e.why)
            wire = encode_lines([status])
        except BaseException as e:  # noqa: BLE001 - report, never unwind into trio
            status = error_status("EIO", "walk", f"internal error in the walker "
                                  f"({type(e).__name__}: {str(e)[:200]})")
            wire = encode_lines([status])
            code = 1
        view = memoryview(status.encode("utf-8", "backslashreplace") + b"\n" + wire)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:  # noqa: BLE001
        code = 2
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


async def forked_walk(fn: Callable[[], Reply], limiter: trio.CapacityLimiter) -> Reply:
    """Run ``fn`` (a read of a large tree) in a forked copy of the daemon and return its
    reply, already encoded.

    The child sees a copy-on-write snapshot of the tree as it was at the fork, so it needs no
    lock and cannot see a write half done; the daemon meanwhile only moves the child's bytes
    through a pipe, a few microseconds per 64 KiB, so its kdamonds keep their sampling
    schedule and other clients are served (a thread would contend for the interpreter lock
    and let a garbage collection of the walk's objects stop everything)."""
    async with limiter:
        rfd, wfd = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:
            os.close(rfd)
            os.close(wfd)
            raise DamonError("EAGAIN", f"cannot fork a walker: {e.strerror}") from None
        if pid == 0:  # pragma: no cover - the child
            os.close(rfd)
            _walk_child(fn, wfd)
        os.close(wfd)
        data = bytearray()
        done = False
        try:
            async with trio.lowlevel.FdStream(rfd) as pipe:
                with trio.move_on_after(WALK_TIMEOUT_S):
                    while chunk := await pipe.receive_some(RECV_BYTES):
                        data += chunk
                    done = True
        finally:
            if not done:  # timed out, or the client left / the daemon stops
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(os.waitpid, pid, 0)
        if not done:
            raise DamonError("ETIMEDOUT", f"the walk took over {WALK_TIMEOUT_S:g} s")
        head, sep, wire = bytes(data).partition(b"\n")
        if not sep or not wire:
            raise DamonError("EIO", "the walker ended without a reply; see the daemon log")
        status = head.decode("utf-8", "replace")
        if status.startswith("ERR EIO "):
            log.error("tree walker failed", status=status)
        return Reply(status=status, wire=wire)


# --------------------------------------------------------------------------------------------
# One client
# --------------------------------------------------------------------------------------------


class _Connection:
    def __init__(self, server: ControlServer, stream: trio.abc.Stream, session: Session) -> None:
        self.server = server
        self.stream = stream
        self.session = session
        self.reader = RequestReader()
        self.out = bytearray()
        self.done = False

    async def run(self) -> None:
        while not self.done:
            if self.reader.ready():
                async with self.server.step():
                    items = self.reader.step()
                for item in items:
                    await self._answer(item)
                    if self.done:
                        break
                if self.reader.continued and self.session.prompt and not self.done:
                    self.out += CONTINUATION_PROMPT.encode()
                if len(self.out) >= FLUSH_BYTES:
                    await self.flush()
                continue
            await self.flush()
            if self.reader.finished:
                break
            data = await self.stream.receive_some(RECV_BYTES)
            if data:
                self.reader.push(data)
            else:
                self.reader.close()
        await self.flush()

    async def flush(self) -> None:
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            await self.stream.send_all(data)

    async def _answer(self, item: str | DamonError) -> None:
        if isinstance(item, DamonError):
            self.out += encode_lines([error_status(item.errno_name, "request", item.why)])
        else:
            async with aclosing(self.session.run(item)) as replies:
                while True:
                    async with self.server.step():
                        reply: Reply | None = await anext(replies, None)
                    if reply is None:
                        break
                    if reply.wire is not None:  # produced by a forked walker
                        await self.flush()
                        await self.stream.send_all(reply.wire)
                    else:
                        self.out += encode_lines(reply.lines())
                    if reply.trace is not None:
                        await self.flush()
                        await self._stream_trace(reply.trace.count)
                    if reply.quit:
                        self.done = True
                        return
        if self.session.prompt:
            self.out += PROMPT.encode()

    async def _stream_trace(self, count: int | None) -> None:
        """Send tracepoint lines until ``count`` were sent (then ``OK``) or the client closes.
        Dropped events are reported before the lines that follow them, and before the final
        ``OK``."""
        feed = TraceFeed(self.server.trace_buffer_lines)
        feed.attach(self.server.daemon.scheduler)
        sent = reported = 0
        try:
            while count is None or sent < count:
                if not await feed.wait(HANGUP_POLL_S):
                    if _hung_up(self.stream):
                        raise _ClientGone()
                    if stopped := _stop_notes(feed):
                        await self.stream.send_all(encode_lines(stopped))
                    continue
                async with self.server.step():
                    lines: list[str] = []
                    while feed.events and len(lines) < TRACE_LINES_PER_STEP:
                        lines += tracepoint.format_lines(feed.pop())
                    if count is not None:
                        lines = lines[:count - sent]
                    sent += len(lines)
                    if feed.dropped > reported:
                        lines.insert(0, format_dropped_note(feed.dropped - reported))
                        reported = feed.dropped
                    if not feed.events:  # after the events a kdamond sent before it stopped
                        lines += _stop_notes(feed)
                    data = encode_lines(lines) if lines else b""
                if data:
                    await self.stream.send_all(data)
            tail = []
            if feed.dropped > reported:
                tail.append(format_dropped_note(feed.dropped - reported))
            await self.stream.send_all(encode_lines([*tail, OK]))
        finally:
            feed.detach()


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class ControlServer:
    """Serves clients of one daemon. ``admin_gid``: members of this group may write (root and
    the daemon's own user always may); everyone else who can connect may only read."""

    def __init__(self, daemon: Daemon, *, admin_gid: int | None = None,
                 max_clients: int = MAX_CLIENTS,
                 max_clients_per_uid: int = MAX_CLIENTS_PER_UID,
                 trace_buffer_lines: int = TRACE_BUFFER_LINES) -> None:
        self.daemon = daemon
        self.admin_gid = admin_gid
        self.max_clients = max_clients
        self.max_clients_per_uid = max_clients_per_uid
        self.trace_buffer_lines = trace_buffer_lines
        #: one step of control work at a time (see the module docstring)
        self.gate = trio.Lock()
        self.started = time.monotonic()
        self.clients = 0
        self.connections = 0
        #: connections held now: by uid, and by read-only peers together
        self.clients_by_uid: dict[int, int] = {}
        self.reader_clients = 0
        self.refused = 0
        #: the write locks and the tree walkers every session shares
        self._walkers = trio.CapacityLimiter(MAX_WALKERS)
        self.shared = Shared(outside_gate=self.outside_gate,
                             run_walk=lambda fn: forked_walk(fn, self._walkers))
        #: CPU time of recent control steps: how long control work held the event loop
        self.step_cpu_ns: deque[int] = deque(maxlen=STEP_HISTORY)

    @asynccontextmanager
    async def step(self) -> AsyncIterator[None]:
        """Hold the gate for one step of control work, and account its CPU time (for a command
        that waits, e.g. ``on`` starting a kdamond, that includes what ran meanwhile)."""
        async with self.gate:
            t0 = time.thread_time_ns()
            try:
                yield
            finally:
                self.step_cpu_ns.append(time.thread_time_ns() - t0)

    @asynccontextmanager
    async def outside_gate(self) -> AsyncIterator[None]:
        """Give up the gate while a command waits (for a kdamond, a write lock, a reload),
        and take it back before the command goes on; a no-op for a task not holding it."""
        owner = self.gate.statistics().owner
        if owner is None or owner is not trio.lowlevel.current_task():
            yield
            return
        self.gate.release()
        try:
            yield
        finally:
            with trio.CancelScope(shield=True):  # the step's exit releases it again
                await self.gate.acquire()

    def admit(self, uid: int, admin: bool) -> str | None:
        """Take a connection slot for a peer, or say why there is none. Root and the daemon's
        own user may use every slot; other writers all but ``OWNER_RESERVE``; read-only peers
        all but ``ADMIN_RESERVE``; and no uid but the owners' more than
        ``MAX_CLIENTS_PER_UID``: however many connections a reader holds idle, root can still
        connect and stop a kdamond."""
        owner = uid in (0, os.geteuid())
        limit = self.max_clients
        if not owner:
            limit -= min(OWNER_RESERVE, self.max_clients // 4)
        if self.clients >= limit:
            return f"too many clients ({self.clients})"
        if not owner and self.clients_by_uid.get(uid, 0) >= self.max_clients_per_uid:
            return f"too many clients of uid {uid} ({self.max_clients_per_uid})"
        if not admin and self.reader_clients >= self.max_clients - min(
                ADMIN_RESERVE, self.max_clients // 2):
            return f"too many read-only clients ({self.reader_clients})"
        self.clients += 1
        self.clients_by_uid[uid] = self.clients_by_uid.get(uid, 0) + 1
        self.reader_clients += not admin
        return None

    def release(self, uid: int, admin: bool) -> None:
        self.clients -= 1
        self.reader_clients -= not admin
        left = self.clients_by_uid[uid] - 1
        if left:
            self.clients_by_uid[uid] = left
        else:
            del self.clients_by_uid[uid]

    def status(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"control_clients": self.clients,
                                 "control_read_only_clients": self.reader_clients,
                                 "control_connections": self.connections,
                                 "control_refused": self.refused,
                                 "control_steps": len(self.step_cpu_ns)}
        facts.update({f"control_{k}": v for k, v in self.shared.locks.busy().items()})
        if self.step_cpu_ns:
            cpu_ms = np.fromiter(self.step_cpu_ns, dtype=np.float64) / 1e6
            facts["control_step_cpu_p99_ms"] = float(np.percentile(cpu_ms, 99))
            facts["control_step_cpu_max_ms"] = float(cpu_ms.max())
        return facts

    def is_admin(self, uid: int, gid: int, groups: set[int]) -> bool:
        if uid in (0, os.geteuid()):
            return True
        return self.admin_gid is not None and (gid == self.admin_gid
                                               or self.admin_gid in groups)

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection: authorize it from its credentials, then answer."""
        try:
            pid, uid, gid = peer_credentials(stream.socket)
            groups = (set() if uid == 0 or self.admin_gid is None
                      else peer_groups(stream.socket, pid))
        except OSError as e:
            log.warning("control client without credentials refused", error=str(e))
            await trio.aclose_forcefully(stream)
            return
        admin = self.is_admin(uid, gid, groups)
        await self.handle_stream(stream, admin=admin, peer=f"pid={pid} uid={uid}",
                                 cred=PeerCred(pid, uid, gid))

    async def handle_stream(self, stream: trio.abc.Stream, *, admin: bool, peer: str,
                            cred: PeerCred | None = None) -> None:
        """Serve one connection on any trio stream (tests use memory streams; ``cred`` None
        is a trusted local peer). Never raises: a client's trouble ends that client only."""
        self.connections += 1
        uid = 0 if cred is None else cred.uid
        try:
            refusal = self.admit(uid, admin)
            if refusal is not None:
                self.refused += 1
                with trio.move_on_after(1):
                    await stream.send_all(encode_lines([error_status(
                        "EAGAIN", "connection", refusal)]))
                return
            try:
                session = Session(self.daemon, admin=admin, peer=peer, started=self.started,
                                  server_status=self.status, cred=cred, shared=self.shared)
                await _Connection(self, stream, session).run()
            finally:
                self.release(uid, admin)
        except (trio.BrokenResourceError, trio.ClosedResourceError, _ClientGone):
            log.debug("control client went away", peer=peer)
        except Exception:
            log.exception("control client failed", peer=peer)
        finally:
            await trio.aclose_forcefully(stream)


async def serve_control(daemon: Daemon, *, path: str | None = None, sock: Any = None,
                        admin_group: str | int | None = None,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the control protocol until cancelled.

    Listens on ``sock`` when given (an already-listening unix socket as a trio socket, stdlib
    socket or file descriptor, e.g. from systemd socket activation; it is not unlinked), else
    binds ``path`` (default :func:`default_socket_path`, whose directory is created if missing;
    a given path's directory must exist), replacing a stale socket there, and removes it on
    exit. ``admin_group`` (name or gid) may write besides root and the daemon's
    own user. Reports the socket's path through ``task_status`` once clients can connect.
    Client handlers never raise; errors accepting connections (``EMFILE``, ...) are absorbed by
    ``trio.serve_listeners``, which waits and retries.
    """
    server = ControlServer(daemon, admin_gid=resolve_group(admin_group))
    owned: tuple[str, tuple[int, int]] | None = None
    if sock is None:
        create_directory = path is None
        path = os.path.abspath(path or default_socket_path())
        std = bind_control_socket(path, create_directory=create_directory)
        st = os.stat(path)
        owned = (path, (st.st_dev, st.st_ino))
        listener_sock = trio.socket.from_stdlib_socket(std)
    else:
        listener_sock = _adopt(sock)
        path = listener_sock.getsockname() or "(inherited socket)"
    try:
        listener = trio.SocketListener(listener_sock)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, server.handle, [listener])
            log.info("control socket listening", path=path)
            task_status.started(path)
    finally:
        if owned is not None:
            _unlink_if_ours(*owned)
        listener_sock.close()
