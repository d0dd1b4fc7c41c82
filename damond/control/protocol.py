"""The control protocol's wire text, shared by the server and every client (protocol.md).

A request is one line of text ending in ``\\n``. The answer to each command is data lines, then
exactly one status line: ``OK`` or ``ERR <ERRNO> <what>: <why>``. Lines starting with ``# `` are
damond's notes (path notes such as "'nr' is accepted as 'nr_kdamonds'", and ``# dropped N
events`` in a ``trace`` stream); a client shows them apart from the data.

Escaping ("a data line never equals ``OK`` and never starts with ``ERR ``"): no kernel file
produces such a line, but ``status``, ``plugins`` and ``features`` show text from plugins and
probes, so every data line that is exactly ``OK`` or starts with ``ERR ``, ``# `` or a backslash
is sent with one extra backslash in front (:func:`escape_data_line`). Clients remove one leading
backslash from a data line (:func:`unescape_data_line`); everything else is the file's content as
is. ``# `` is escaped too so that a client can tell a data line from a note.

This module is the whole contract between the two ends, so it imports only the standard
library: ``damond ctl`` and the report's live reader load it without loading the server (or
numpy and trio, which the server needs).
"""

from __future__ import annotations

import os

OK = "OK"
#: what every error status line starts with; the errno name follows
ERR_PREFIX = "ERR "
#: what every note line starts with
NOTE_PREFIX = "# "
#: shown after every reply in interactive mode (``prompt on``)
PROMPT = "damond> "
#: shown while a quoted string (or a backslash-continued line) is still open, like ``sh``'s PS2
CONTINUATION_PROMPT = "> "

#: the system daemon's socket (``damond serve`` as root, and the systemd units)
ROOT_SOCKET_PATH = "/run/damond/damond.sock"

_DROPPED = "dropped "
_DROPPED_SUFFIX = " events"
_STOPPED = " stopped: "


def default_socket_path() -> str:
    """``/run/damond/damond.sock`` for root, ``$XDG_RUNTIME_DIR/damond/damond.sock`` for
    other users (``/tmp/damond-<uid>/damond.sock`` without a runtime directory)."""
    if os.geteuid() == 0:
        return ROOT_SOCKET_PATH
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "damond", "damond.sock")
    return f"/tmp/damond-{os.geteuid()}/damond.sock"


# --------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------


def escape_data_line(line: str) -> str:
    """Make a data line unambiguous (see the module docstring for the rule)."""
    if line[:1] in "OE#\\" and (line == OK or line.startswith((ERR_PREFIX, NOTE_PREFIX, "\\"))):
        return "\\" + line
    return line


def unescape_data_line(line: str) -> str:
    """The inverse of :func:`escape_data_line`, for clients."""
    return line[1:] if line.startswith("\\") else line


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters shown as escapes, so that an
    error message (which may quote user input) stays one protocol line."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t" or ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return "".join(out)


def error_status(errno_name: str, what: str, why: str) -> str:
    """``ERR <ERRNO> <what>: <why>`` as one line."""
    return f"{ERR_PREFIX}{errno_name} {one_line(what) or '-'}: {one_line(why)}"


def is_error(line: str) -> bool:
    """Whether a received line is an error status (data lines never are: they are escaped)."""
    return line.startswith(ERR_PREFIX)


def error_text(line: str) -> str:
    """``<ERRNO> <what>: <why>`` of an error status line."""
    return line[len(ERR_PREFIX):]


def is_note(line: str) -> bool:
    """Whether a received line is one of damond's notes rather than data."""
    return line.startswith(NOTE_PREFIX)


def format_dropped_note(count: int) -> str:
    """The note a ``trace`` stream sends when ``count`` events were dropped for a slow client
    (before the lines that follow them, or before the final ``OK``)."""
    return f"{NOTE_PREFIX}{_DROPPED}{count}{_DROPPED_SUFFIX}"


def parse_dropped_note(line: str) -> int | None:
    """The count of a :func:`format_dropped_note` line; None for any other line."""
    head = NOTE_PREFIX + _DROPPED
    if not (line.startswith(head) and line.endswith(_DROPPED_SUFFIX)):
        return None
    count = line[len(head):len(line) - len(_DROPPED_SUFFIX)]
    return int(count) if count.isdigit() else None


def format_stopped_note(kdamond: str, reason: str) -> str:
    """The note a ``trace`` stream sends when a kdamond it follows stops, e.g. ``# kdamond.0
    stopped: every target is gone``: no more events will come from it."""
    return f"{NOTE_PREFIX}{kdamond}{_STOPPED}{one_line(reason)}"


def parse_stopped_note(line: str) -> tuple[str, str] | None:
    """``(kdamond, reason)`` of a :func:`format_stopped_note` line; None for any other line."""
    if not line.startswith(NOTE_PREFIX + "kdamond") or _STOPPED not in line:
        return None
    name, _, reason = line[len(NOTE_PREFIX):].partition(_STOPPED)
    return (name, reason) if name and " " not in name else None


# --------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------


def encode_lines(lines: list[str]) -> bytes:
    """Reply lines as sent: each ends in ``\\n``. Text that is not valid UTF-8 (surrogate
    escapes from file contents) is sent as backslash escapes rather than failing the reply."""
    return ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")


def encode_request(line: str) -> bytes:
    """One request line as a client sends it. Surrogate escapes (bytes a terminal gave that
    are not UTF-8) go out as the original bytes, for the server to refuse with ``EILSEQ``."""
    return (line + "\n").encode("utf-8", "surrogateescape")


class LineSplitter:
    """Received bytes as complete lines, for a client: sans-I/O, so a blocking socket client
    and a trio one share it. Invalid UTF-8 is shown as U+FFFD rather than failing."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completed, without their ``\\n``."""
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [raw.decode("utf-8", "replace") for raw in complete]

    def take_partial(self) -> str:
        """What came after the last ``\\n`` (a prompt, or an unterminated last line); it is
        forgotten."""
        partial, self._partial = self._partial, b""
        return partial.decode("utf-8", "replace")


__all__ = [
    "CONTINUATION_PROMPT", "ERR_PREFIX", "NOTE_PREFIX", "OK", "PROMPT", "ROOT_SOCKET_PATH",
    "LineSplitter", "default_socket_path", "encode_lines", "encode_request", "error_status",
    "error_text", "escape_data_line", "format_dropped_note", "format_stopped_note", "is_error",
    "is_note", "one_line", "parse_dropped_note", "parse_stopped_note", "unescape_data_line",
]
