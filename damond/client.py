"""``damond ctl``: send protocol lines to a running damond and print the answers.

Each argument is one command line; without arguments, standard input is sent as it is (line
by line as it comes, so the kernel documentation can be pasted: the server strips the ``# ``
prompts and comments). Data lines go to standard output, notes (``# ...``) and ``ERR`` lines to
standard error; the exit status is 1 if any command answered ``ERR``, 2 if the daemon could
not be reached. When standard output is closed early (``damond ctl 'trace 1000' | head -3``)
it stops quietly, as Unix tools killed by SIGPIPE do: nothing on stderr, exit status 141
(128 + SIGPIPE, what a shell reports for such a tool; ``head``'s status is the pipeline's).

Input is sent from a thread while the main thread prints replies: a client that only wrote
until done before reading could deadlock against a server blocked on sending it replies.

The client speaks the protocol through ``damond.control.protocol`` only: importing it loads
neither the server nor numpy, so ``damond ctl`` starts fast.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterable
from typing import BinaryIO, TextIO

from damond.control.protocol import (
    OK,
    ROOT_SOCKET_PATH,
    LineSplitter,
    default_socket_path,
    encode_request,
    is_error,
    is_note,
    unescape_data_line,
)

SOCKET_ENV = "DAMOND_SOCKET"
#: exit status after standard output was closed: 128 + SIGPIPE, as a shell shows a tool that
#: SIGPIPE ended
EXIT_OUTPUT_CLOSED = 128 + 13


class _OutputClosed(Exception):
    """Standard output (or error) was closed by its reader."""


def client_socket_path(explicit: str | None = None) -> str:
    """``--socket``, else ``$DAMOND_SOCKET``, else this user's daemon socket if it exists,
    else the system daemon's."""
    if explicit:
        return explicit
    if os.environ.get(SOCKET_ENV):
        return os.environ[SOCKET_ENV]
    own = default_socket_path()
    return own if os.path.exists(own) else ROOT_SOCKET_PATH


def _send_all(sock: socket.socket, chunks: Iterable[bytes]) -> None:
    try:
        for chunk in chunks:
            sock.sendall(chunk)
    except OSError:
        pass  # the server closed (e.g. after quit); the reader reports what it got
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def _stdin_chunks(stdin: BinaryIO) -> Iterable[bytes]:
    # readline, not read: an interactive user sees each answer as soon as it comes
    yield from iter(stdin.readline, b"")


class ReplyPrinter:
    """Sorts reply lines onto stdout/stderr and remembers whether any command failed."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.failed = False
        self._lines = LineSplitter()

    def feed(self, data: bytes) -> None:
        try:
            for line in self._lines.feed(data):
                self.line(line)
            self.stdout.flush()
            self.stderr.flush()
        except BrokenPipeError:
            raise _OutputClosed() from None

    def finish(self) -> None:
        # a prompt or an unterminated last line
        try:
            self.stdout.write(self._lines.take_partial())
            self.stdout.flush()
        except BrokenPipeError:
            raise _OutputClosed() from None

    def line(self, line: str) -> None:
        if line == OK:
            return
        if is_error(line):
            self.failed = True
            self.stderr.write(line + "\n")
        elif is_note(line):
            self.stderr.write(line + "\n")
        else:
            self.stdout.write(unescape_data_line(line) + "\n")


def run_ctl(commands: list[str], *, socket_path: str | None = None,
            stdin: BinaryIO | None = None, stdout: TextIO | None = None,
            stderr: TextIO | None = None) -> int:
    """Send ``commands`` (or stdin when empty) and print the replies; return the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    path = client_socket_path(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        stderr.write(f"damond ctl: cannot connect to {path}: {e.strerror or e}\n")
        sock.close()
        return 2
    if commands:
        chunks: Iterable[bytes] = [encode_request(c) for c in commands]
    else:
        chunks = _stdin_chunks(stdin or sys.stdin.buffer)
    sender = threading.Thread(target=_send_all, args=(sock, chunks), daemon=True)
    sender.start()
    printer = ReplyPrinter(stdout, stderr)
    try:
        try:
            while data := sock.recv(65536):
                printer.feed(data)
        finally:
            sock.close()
        printer.finish()
    except _OutputClosed:
        _silence_closed_output(stdout, stderr)
        return EXIT_OUTPUT_CLOSED
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        stderr.write(f"damond ctl: connection lost: {e.strerror or e}\n")
        return 2
    return 1 if printer.failed else 0


def _silence_closed_output(*streams: TextIO) -> None:
    """Point the closed stream's descriptor at /dev/null: the interpreter flushes its buffer
    at exit and would otherwise print a BrokenPipeError traceback on stderr."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in streams:
            try:
                stream.flush()
            except (BrokenPipeError, ValueError):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
