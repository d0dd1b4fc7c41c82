"""``damond record``: record DAMON's monitoring results in damo's record format.

damo users record with ``damo record`` and study the file with ``damo report``; damond writes the
same file (``damond.formats.damo.record``), so both damo's reports and damond's
(``damond report``) read it. Two sources of monitoring results:

* an embedded kdamond (``damond.api``, in this process, no daemon needed):
  ``damond record [options] -- COMMAND ARGS...`` runs the command and monitors it until it exits
  (a ``vaddr`` kdamond stops by itself when its target is gone), ``--pid PID`` monitors a running
  process, ``--ops sim`` a simulated one;
* a kdamond of a running ``damond serve`` (``--socket PATH --kdamond N``), read through its
  control socket (``damond.tools.report.live``: ``cat`` the intervals, group the ``trace``
  stream back into aggregations), so recording never changes the daemon's configuration and
  any number of recorders can watch one kdamond.

Recording ends when the monitoring ends, at ``--timeout``, or at SIGINT/SIGTERM (exit status 0:
the file is complete up to that point). A crash or SIGKILL loses at most ``--flush-interval``
seconds: everything older is in a complete file (``RecordWriter`` replaces the output
atomically at each flush). Events are written from a worker thread, so formatting, compression
and fsync never delay a sample.

The package's modules, one job each: ``cli`` (options, their checks, exit statuses),
``recording`` (one recording: source to file, ended by the source, a timeout or a signal),
``embedded`` (the in-process kdamond source), ``command`` (the recorded child process),
``sink`` (the record file, written from a worker thread), ``progress`` (the status line),
``errors``. The daemon source is ``damond.tools.report.live``, shared with the live reports.
"""

from damond.tools.record.cli import RECORD, run

#: Add ``record`` to the ``damond`` command's subparsers.
add_parsers = RECORD.add_parser
#: The parser of ``python -m damond.tools.record``.
build_parser = RECORD.build_parser
#: ``python -m damond.tools.record``: parse ``argv``, run, return the exit status.
main = RECORD.main

__all__ = ["RECORD", "add_parsers", "build_parser", "main", "run"]
