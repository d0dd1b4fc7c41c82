"""``damond report heatmap|wss|access``: damo-like reports of recorded or live monitoring.

Input is a damo record file (``--input``, default ``damon.data``: damond's or damo's) or, with
``--socket``/``--kdamond``, a kdamond of a running daemon recorded in memory for ``--seconds``
first. Each report lives in its own module (``heatmap`` with ``heatmap_text`` and
``heatmap_png``, ``wss``, ``access``); ``source`` gets the snapshots, ``live`` reads a daemon's
kdamond, ``analysis`` holds what several reports compute, and ``cli`` parses options and
dispatches.
"""

from damond.tools.report.cli import REPORT, run

#: Add ``report`` to the ``damond`` command's subparsers.
add_parsers = REPORT.add_parser
#: The parser of ``python -m damond.tools.report``.
build_parser = REPORT.build_parser
#: ``python -m damond.tools.report``: parse ``argv``, run, return the exit status.
main = REPORT.main

__all__ = ["REPORT", "add_parsers", "build_parser", "main", "run"]
