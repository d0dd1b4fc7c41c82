"""The metrics over HTTP: ``GET /metrics`` (and ``HEAD``) for a Prometheus scraper.

A deliberately small HTTP/1.1 server: one request per connection, answered and closed, with
bounds on the request head's size, the time a client may take and the clients served at once,
so that a scraper (or anything else that connects) can neither stall nor exhaust the daemon.
It listens on ``--metrics-listen HOST:PORT`` or on a socket systemd passed.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import structlog
import trio

from damond.service.metrics import CONTENT_TYPE, render_metrics

if TYPE_CHECKING:
    from damond.service.daemon import Daemon

log = structlog.get_logger("damond.service.metrics_http")

#: a request head larger than this is refused (a scraper sends a few hundred bytes)
MAX_REQUEST_HEAD = 8192
#: a client has this long to send its request and take the answer
HTTP_TIMEOUT_S = 10.0
#: connections handled at once; more are closed at once (a scrape endpoint needs few)
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
        return _response("200 OK", render_metrics(daemon).encode(), CONTENT_TYPE, head=is_head)
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


class _HttpServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.clients = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        """Answer one request and close. Never raises: a client's trouble ends that client."""
        try:
            if self.clients >= MAX_HTTP_CLIENTS:
                return
            self.clients += 1
            try:
                with trio.move_on_after(HTTP_TIMEOUT_S):
                    head = await _read_head(stream)
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
                self.clients -= 1
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
