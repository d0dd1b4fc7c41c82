"""The metrics over HTTP: ``GET /metrics`` (and ``HEAD``) for a Prometheus scraper.

The body is prometheus_client's (:mod:`damond.service.metrics`), in the format the scraper's
``Accept`` header asks for (``choose_encoder``: the text format 0.0.4 by default, OpenMetrics
when asked). The server is a small trio HTTP/1.1 server of damond's own, one request per
connection, answered and closed, rather than prometheus_client's ``start_http_server``: that one
serves from threads of its own (the collector would read the kdamonds' state while their steps
change it; here it runs in their trio thread), binds its own socket (no systemd socket
activation), has no time limit (each idle connection holds a thread for good) and answers any
method on any path.

Bounds: the request head's size, the time a client may take, and the connections held at once.
When that many are held, a new connection evicts the oldest one that has not yet sent its
request head, so idle or slow peers can never lock a scraper out (a scraper sends its request
at once, so it never waits long enough to be the oldest); only when every held connection is
being answered is the newcomer closed. It listens on ``--metrics-listen HOST:PORT`` or on a
socket systemd passed.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
import trio
from prometheus_client.exposition import choose_encoder

from damond.service.metrics import registry_for

if TYPE_CHECKING:
    from damond.service.daemon import Daemon

log = structlog.get_logger("damond.service.metrics_http")

#: a request head larger than this is refused (a scraper sends a few hundred bytes)
MAX_REQUEST_HEAD = 8192
#: a client has this long to send its request and take the answer
HTTP_TIMEOUT_S = 10.0
#: connections held at once; a new one evicts the oldest still waiting for its request head
MAX_HTTP_CLIENTS = 32
#: after answering, unread request bytes are drained for this long (up to LINGER_BYTES) so
#: that closing does not reset the connection before the client has read the answer
LINGER_S = 1.0
LINGER_BYTES = 1 << 20


def parse_listen(text: str) -> tuple[str | None, int]:
    """``HOST:PORT`` (``[v6]:PORT``; an empty host means every address) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-listen: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port)


def _response(status: str, body: bytes, content_type: str, *, head: bool = False,
              extra: str = "") -> bytes:
    header = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return header.encode("ascii") + (b"" if head else body)


def _header(head: bytes, name: bytes) -> str:
    """The value of header ``name`` (lower case) in a request head, or ''."""
    for line in head.split(b"\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return ""


def http_answer(daemon: Daemon, head: bytes) -> bytes:
    """The whole HTTP response to a request head (everything up to the empty line)."""
    try:
        request_line = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("ascii")
        method, target, version = request_line.split(" ")
    except (UnicodeDecodeError, ValueError):
        return _response("400 Bad Request", b"bad request\n", "text/plain")
    if not version.startswith("HTTP/"):
        return _response("400 Bad Request", b"bad request\n", "text/plain")
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"only GET and HEAD\n", "text/plain",
                         extra="Allow: GET, HEAD\r\n")
    path = target.split("?", 1)[0]
    is_head = method == "HEAD"
    if path == "/metrics":
        encoder, content_type = choose_encoder(_header(head, b"accept"))
        return _response("200 OK", encoder(registry_for(daemon)), content_type, head=is_head)
    if path == "/":
        body = b"damond: metrics at /metrics\n"
        return _response("200 OK", body, "text/plain; charset=utf-8", head=is_head)
    return _response("404 Not Found", b"not found; try /metrics\n", "text/plain", head=is_head)


async def _read_head(stream: trio.abc.Stream) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_REQUEST_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return data if data else b""
        data += chunk
    return data


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close, then read what the client still sends: closing a socket with unread data
    makes the kernel send a reset, which can destroy the answer in flight."""
    await stream.send_eof()
    drained = 0
    with trio.move_on_after(LINGER_S):
        while drained < LINGER_BYTES and (chunk := await stream.receive_some(65536)):
            drained += len(chunk)


@dataclass(eq=False)
class _Client:
    """One held connection: its time limit (cancelled to evict it) and whether it still waits
    for its request head."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    waiting: bool = True


class _HttpServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        #: held connections, oldest first
        self.clients: dict[_Client, None] = {}

    def _make_room(self) -> bool:
        """Whether a new connection may be held: evicts the oldest one still waiting for its
        request head when the limit is reached."""
        if len(self.clients) < MAX_HTTP_CLIENTS:
            return True
        victim = next((c for c in self.clients if c.waiting), None)
        if victim is None:
            return False
        del self.clients[victim]
        victim.scope.cancel()
        return True

    async def handle(self, stream: trio.SocketStream) -> None:
        """Answer one request and close. Never raises: a client's trouble ends that client."""
        try:
            if not self._make_room():
                return
            client = _Client()
            client.scope.deadline = trio.current_time() + HTTP_TIMEOUT_S
            self.clients[client] = None
            try:
                with client.scope:
                    head = await _read_head(stream)
                    client.waiting = False
                    if head is None:
                        answer = _response("431 Request Header Fields Too Large",
                                           b"request head too large\n", "text/plain")
                    elif not head:
                        return
                    else:
                        answer = http_answer(self.daemon, head)
                    await stream.send_all(answer)
                    await _linger(stream)
            finally:
                self.clients.pop(client, None)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            log.exception("metrics HTTP client failed")
        finally:
            await trio.aclose_forcefully(stream)


async def serve_metrics_http(daemon: Daemon, *, listen: str | None = None,
                             sock: socket.socket | None = None,
                             task_status: trio.TaskStatus[list[tuple]] = trio.TASK_STATUS_IGNORED
                             ) -> None:
    """Serve ``GET /metrics`` on ``listen`` (``HOST:PORT``) or an already-listening ``sock``
    (socket activation) until cancelled; reports the bound addresses once listening."""
    if sock is not None:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    else:
        host, port = parse_listen(listen or "")
        listeners = await trio.open_tcp_listeners(port, host=host)
    addresses = [lst.socket.getsockname() for lst in listeners]
    server = _HttpServer(daemon)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.handle, listeners)
        log.info("metrics endpoint listening", addresses=[list(a[:2]) for a in addresses])
        task_status.started(addresses)
