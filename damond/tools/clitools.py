"""What the ``damond record`` and ``damond report`` commands share: two entries, one-line errors.

Each tool runs both as a subcommand of ``damond`` (``damond record ...``) and as a module of its
own (``python -m damond.tools.record ...``). A :class:`ToolCommand` declares a tool once (its
name, help, options and what runs) and gives both entries the same parser and the same logging
set-up. A failure the tool expects (a missing file, an unreachable daemon, a bad option mix) is
printed as one line, ``damond <tool>: <message>``, and ends the tool with that failure's exit
status; a traceback is kept for bugs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from damond.service import logs

#: Exit status after Ctrl-C: 128 + SIGINT, what a shell reports for a command SIGINT ended.
EXIT_INTERRUPTED = 130
#: The tools print their own results and progress; of the library's logs only problems matter.
TOOL_LOG_LEVEL = "warning"


class ToolError(Exception):
    """A failure a tool reports in one line; ``status`` is its exit status (1 unless said)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def report_failure(prog: str, error: Exception) -> int:
    """Print ``error`` as one line ``<prog>: <message>`` on standard error; its exit status.

    ``error`` is a :class:`ToolError` or another one-line failure that carries a ``status``
    (the report sources' errors); without one the status is 1.
    """
    print(f"{prog}: {error}", file=sys.stderr)
    return getattr(error, "status", 1)


@dataclass(frozen=True)
class ToolCommand:
    """One tool: ``damond <name>``, and ``python -m damond.tools.<name>`` through :meth:`main`.

    ``add_arguments`` fills a parser with the tool's options; ``run`` does the work for the
    parsed options and returns the exit status (it reports its own failures, see
    :func:`report_failure`).
    """

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

    @property
    def prog(self) -> str:
        """The tool's name in messages and usage lines."""
        return f"damond {self.name}"

    def add_parser(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add the tool to the ``damond`` command's subparsers (``func`` is ``run``)."""
        p = subparsers.add_parser(self.name, help=self.help, description=self.description)
        self.add_arguments(p)
        p.set_defaults(func=self.run)
        return p

    def build_parser(self) -> argparse.ArgumentParser:
        """The parser of the tool run on its own."""
        p = argparse.ArgumentParser(prog=self.prog, description=self.description)
        self.add_arguments(p)
        return p

    def main(self, argv: list[str] | None = None) -> int:
        """Run the tool on its own with ``argv`` (default: the process's arguments)."""
        args = self.build_parser().parse_args(argv)
        logs.configure(TOOL_LOG_LEVEL)
        return self.run(args)
