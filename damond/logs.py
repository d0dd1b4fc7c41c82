"""Logging with structlog: JSON lines under systemd's journal, readable lines otherwise.

Nothing is logged per sample: kdamonds log state changes (start, stop, failures) only.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def configure(level: str = "info", *, json: bool | None = None, stream=None) -> None:
    """Set up structlog. ``json`` defaults to true when stderr is the journal
    (systemd sets ``JOURNAL_STREAM``), so each line becomes one structured journal entry."""
    if json is None:
        json = "JOURNAL_STREAM" in os.environ
    renderer = (structlog.processors.JSONRenderer() if json
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=False),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
