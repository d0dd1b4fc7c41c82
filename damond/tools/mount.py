"""``damond mount DIR``: a running daemon's sysfs (or debugfs) files as a FUSE file system.

The files come from the daemon over its control socket: :class:`SocketBackend` is a protocol
client (``damond.control.protocol``) that turns each file operation into one request on one
connection: a lookup is ``ls -ld PATH``, a read ``cat PATH``, a store ``echo -n 'DATA' >
PATH``. The daemon answers with the kernel's errno, which the mount gives back to the caller.

If the daemon stops or dies, every file operation fails with ENOTCONN (the connection is
retried on the next operation, so a restarted daemon is picked up); a daemon that stops
answering costs a caller at most :data:`REQUEST_TIMEOUT_S`, then EIO. Nothing waits forever.
"""

from __future__ import annotations

import posixpath
import signal
import stat
import sys

import trio

from damond.client import client_socket_path
from damond.control.protocol import (
    OK,
    LineSplitter,
    encode_request,
    error_text,
    is_error,
    is_note,
    unescape_data_line,
)
from damond.control.syntax import shell_quote
from damond.errors import DamonError
from damond.interfaces.fuse.backend import NodeInfo

#: a request the daemon has not answered by then is given up (EIO): a kdamond start or commit
#: takes milliseconds; this only bounds a daemon that hangs (SIGSTOP, a deadlock)
REQUEST_TIMEOUT_S = 30.0
_RECV_BYTES = 65536
_ROOT = NodeInfo(is_dir=True, mode=0o755)


def _parse_entry(line: str) -> tuple[str, NodeInfo]:
    """One ``ls -l`` line: ``drwxr-xr-x name/`` or ``-rw------- name``."""
    mode_text, _, name = line.partition(" ")
    mode = 0
    for i, ch in enumerate(mode_text[1:10]):
        if ch != "-":
            mode |= 1 << (8 - i)
    is_dir = mode_text.startswith("d")
    return name.rstrip("/") if is_dir else name, NodeInfo(is_dir, stat.S_IMODE(mode))


class SocketBackend:
    """The daemon's files over its control socket; one request at a time on one connection."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._stream: trio.SocketStream | None = None
        self._lines = LineSplitter()
        self._pending: list[str] = []
        self._lock = trio.Lock()

    async def connect(self) -> None:
        """Connect now (``damond mount`` refuses to start without a daemon)."""
        async with self._lock:
            await self._ensure()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def _ensure(self) -> trio.SocketStream:
        if self._stream is None:
            try:
                self._stream = await trio.open_unix_socket(self.socket_path)
            except OSError as e:
                raise DamonError("ENOTCONN", f"cannot reach the daemon at {self.socket_path}: "
                                 f"{e.strerror or e}") from None
            self._lines = LineSplitter()
            self._pending = []
        return self._stream

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with trio.move_on_after(1):
                await stream.aclose()

    async def request(self, line: str) -> list[str]:
        """Send one request; its data lines (unescaped), or DamonError for an ``ERR``."""
        async with self._lock:
            stream = await self._ensure()
            try:
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    await stream.send_all(encode_request(line))
                    return await self._reply(stream)
            except trio.TooSlowError:
                await self._drop()  # the reply may still come: the stream is out of step
                raise DamonError("EIO", "the daemon did not answer in time") from None
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, EOFError):
                await self._drop()
                raise DamonError("ENOTCONN", "the connection to the daemon was lost") from None

    async def _reply(self, stream: trio.SocketStream) -> list[str]:
        data: list[str] = []
        while True:
            while self._pending:
                line = self._pending.pop(0)
                if line == OK:
                    return data
                if is_error(line):
                    raise _error(line)
                if not is_note(line):
                    data.append(unescape_data_line(line))
            chunk = await stream.receive_some(_RECV_BYTES)
            if not chunk:
                raise EOFError
            self._pending.extend(self._lines.feed(chunk))

    # -- the Backend interface ----------------------------------------------------------------

    async def listdir(self, path: str) -> list[tuple[str, NodeInfo]]:
        lines = await self.request(f"ls -l {shell_quote(path)}")
        entries = [_parse_entry(line) for line in lines]
        if len(entries) == 1 and entries[0][0] == path:  # ls of a file names the file
            raise DamonError("ENOTDIR", f"{path} is not a directory")
        return entries

    async def stat(self, path: str) -> NodeInfo:
        if path == "/":
            return _ROOT
        # one node, not its parent's listing: a lookup in a directory of thousands of tried
        # regions costs the same as anywhere else
        lines = await self.request(f"ls -ld {shell_quote(path)}")
        if len(lines) != 1:
            raise DamonError("EIO", f"ls -ld {path}: {len(lines)} lines")
        name, info = _parse_entry(lines[0])
        if name != path:  # reached through an alias (kdamonds/nr): not a name a file system has
            parent, base = posixpath.split(path)
            raise DamonError("ENOENT", f"no {base!r} in {parent}")
        return info

    async def read(self, path: str) -> bytes:
        lines = await self.request(f"cat {shell_quote(path)}")
        # the protocol sends a file's lines without its final newline; DAMON's files end in one
        text = "".join(line + "\n" for line in lines)
        return text.encode("utf-8", "surrogateescape")

    async def write(self, path: str, data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # the protocol carries UTF-8 only; no DAMON file accepts other bytes either
            raise DamonError("EINVAL", "the data is not text") from None
        await self.request(f"echo -n {shell_quote(text)} > {shell_quote(path)}")


def _error(line: str) -> DamonError:
    name, _, why = error_text(line).partition(" ")
    try:
        return DamonError(name, why)
    except ValueError:
        return DamonError("EIO", why)


async def _serve(backend: SocketBackend, mountpoint: str, root: str) -> int:
    from damond.interfaces.fuse.session import serve_fuse

    await backend.connect()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            async def serve() -> None:
                await serve_fuse(backend, mountpoint, root)
                nursery.cancel_scope.cancel()  # unmounted from outside

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(serve)
    await backend.aclose()
    return 0


def run_mount(mountpoint: str, *, socket_path: str | None = None, debugfs: bool = False) -> int:
    """``damond mount``: serve until unmounted or signalled; 0, or 2 if the daemon cannot be
    reached or the mount fails."""
    from damond.interfaces.fuse.session import DEBUGFS_ROOT, SYSFS_DAMON

    backend = SocketBackend(client_socket_path(socket_path))
    try:
        return trio.run(_serve, backend, mountpoint, DEBUGFS_ROOT if debugfs else SYSFS_DAMON)
    except BaseException as e:
        cause = startup_error(e)
        if cause is None:
            raise
        why = cause.why if isinstance(cause, DamonError) else f"cannot mount {mountpoint}: {cause}"
        print(f"damond mount: {why}", file=sys.stderr)
    return 2


def startup_error(exc: BaseException) -> BaseException | None:
    """The DamonError/OSError/RuntimeError (pyfuse3's mount failure) inside ``exc``, which
    trio may have wrapped in exception groups; None for anything else (a bug: re-raised)."""
    if isinstance(exc, DamonError | OSError | RuntimeError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = startup_error(inner)
            if found is not None:
                return found
    return None
