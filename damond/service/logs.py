"""Logging with structlog: JSON lines into systemd's journal, readable lines otherwise.

Under systemd, standard error is a stream into the journal and systemd says so with
``JOURNAL_STREAM=<device>:<inode>`` (systemd.exec(5)). The variable is inherited by anything the
service starts, so it only counts when it names the stream standard error really is; then each
event is one JSON object per line (the journal keeps it as the entry's MESSAGE, easy to query
with ``journalctl -o cat | jq``), prefixed with its syslog priority ``<N>``, which journald
strips and stores as PRIORITY (``SyslogLevelPrefix=``, on by default) so that
``journalctl -p warning`` works. Elsewhere the lines are the console renderer's.

Nothing is logged per sample: kdamonds log state changes (start, stop, failures) only, so a
slow log sink never delays sampling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
FORMATS = ("auto", "json", "console")
#: syslog priorities (sd-daemon(3) prefixes) of structlog's method names
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3,
              "critical": 2, "fatal": 2}


def journal_stream(stream: TextIO | None = None,
                   environ: dict[str, str] | None = None) -> bool:
    """Whether ``stream`` (standard error by default) is the journal stream systemd named in
    ``JOURNAL_STREAM``."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def _priority_prefix(logger, method_name: str, line: str) -> str:
    return f"<{PRIORITIES.get(method_name, 6)}>{line}"


def configure(level: str = "info", *, json: bool | None = None, stream: TextIO | None = None,
              fmt: str = "auto") -> bool:
    """Set up structlog for ``level``; returns whether lines are JSON.

    ``fmt`` is ``auto`` (JSON with priority prefixes when standard error is the journal),
    ``json`` or ``console``; ``json=True/False`` is the older spelling of the last two.
    Reconfiguring at run time is fine: module loggers are looked up on every call.
    """
    if json is not None:
        fmt = "json" if json else "console"
    journal = fmt == "auto" and journal_stream(stream)
    use_json = fmt == "json" or journal
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=False),
        structlog.processors.format_exc_info,
    ]
    if use_json:
        processors.append(structlog.processors.JSONRenderer())
        if journal:
            processors.append(_priority_prefix)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=(structlog.PrintLoggerFactory(stream) if stream is not None
                        else _current_stderr_logger),
        cache_logger_on_first_use=False,
    )
    return use_json


class _CurrentStderr:
    """Writes each line to whatever ``sys.stderr`` is at that moment (not the object it was at
    configuration time, which a test harness or a daemonising wrapper may have closed)."""

    def msg(self, message: str) -> None:
        # stderr closed: a log line is not worth a crash
        with contextlib.suppress(ValueError, OSError):
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


def _current_stderr_logger(*_args) -> _CurrentStderr:
    return _CurrentStderr()
