"""The failure a recording reports in one line (``damond record: <message>``)."""

from __future__ import annotations

from damond.tools.clitools import ToolError


class RecordError(ToolError):
    """A recording that cannot start or go on; ``status`` is the exit status (2: bad options)."""
