"""``damond record``'s command line: options, their checks, and the run that reports failures.

Option combinations argparse cannot express (one source; a daemon's kdamond takes no monitoring
attributes; what each operation set needs) are checked before anything starts, and refused with
exit status 2, like argparse's own refusals.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import trio

from damond.client import client_socket_path
from damond.formats.damo.record import OUTPUT_TYPES
from damond.formats.damo.units import DamoTextError, text_to_us
from damond.tools.clitools import EXIT_INTERRUPTED, ToolCommand, report_failure
from damond.tools.record.command import end_command, start_command
from damond.tools.record.embedded import DEFAULTS, OPS
from damond.tools.record.errors import RecordError
from damond.tools.record.recording import record
from damond.tools.report.live import DaemonSourceError

DEFAULT_OUTPUT = "damon.data"
DEFAULT_FLUSH_S = 10.0


def _int_or_us(text: str) -> int:
    try:
        return int(text_to_us(text))
    except (DamoTextError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a time in microseconds: {text!r}") from None


def _region(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        region = int(start, 0), int(end, 0)
    except ValueError:
        region = None
    if not sep or region is None or region[0] >= region[1]:
        raise argparse.ArgumentTypeError(f"expected START-END with START < END, not {text!r}")
    return region


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"not an octal file mode: {text!r}")
    return mode


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="FILE",
                     help=f"record file (default {DEFAULT_OUTPUT}; an existing one is kept "
                          "as FILE.old)")
    out.add_argument("--output-type", choices=OUTPUT_TYPES, default="json_compressed",
                     help="damo's record types (default json_compressed)")
    out.add_argument("--output-permission", type=_mode, default=0o600, metavar="MODE",
                     help="octal file mode (default 600, like damo)")
    out.add_argument("--flush-interval", type=_positive, default=DEFAULT_FLUSH_S,
                     metavar="SECONDS",
                     help="make the file complete at least this often: a crash loses at most "
                          f"the last interval (default {DEFAULT_FLUSH_S:g})")
    out.add_argument("--timeout", type=_positive, metavar="SECONDS",
                     help="stop recording after this long (default: until monitoring ends "
                          "or SIGINT)")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    src = p.add_argument_group("what to monitor (embedded kdamond)")
    src.add_argument("--pid", type=int, help="monitor this running process")
    src.add_argument("--ops", choices=OPS,
                     help="operation set (default vaddr; sim needs no target)")
    src.add_argument("-r", "--regions", type=_region, nargs="+", metavar="START-END",
                     help="initial monitoring regions (required for fvaddr)")
    for name, default in DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        if name.endswith("_us"):
            src.add_argument(flag, type=_int_or_us, metavar="US",
                             help=f"default {default} (damo's; units like 5ms work)")
        else:
            src.add_argument(flag, type=int, metavar="N", help=f"default {default}")
    src.add_argument("--seed", type=int, help="seed of the random generators")
    src.add_argument("--cpu-budget", type=_cpu_budget, metavar="FRACTION",
                     help="the kdamond's monitoring budget, a share of one CPU: above it the "
                          "sampling interval stretches (default 0: sample as configured; "
                          "damond serve's default is 0.05)")
    dmn = p.add_argument_group("or: a kdamond of a running daemon")
    dmn.add_argument("--socket", metavar="PATH",
                     help="the daemon's control socket (default: $DAMOND_SOCKET, your own "
                          "daemon's, then /run/damond/damond.sock)")
    dmn.add_argument("--kdamond", type=int, metavar="N", help="kdamond index (default 0)")
    p.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS",
                   help="run this command and monitor it until it exits")


DESCRIPTION = ("Record DAMON monitoring results in damo's record format (damo report and "
               "damond report read it): of a COMMAND run until it exits, of a running process "
               "(--pid), of a simulated one (--ops sim), or of a kdamond of a running damond "
               "(--socket/--kdamond). SIGINT or --timeout ends the recording (exit status 0).")


def _cpu_budget(text: str) -> float:
    from damond.core.budget import check_budget

    try:
        return check_budget(float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_options(args: argparse.Namespace) -> None:
    """Refuse option combinations argparse cannot express (RecordError, status 2); complete
    ``args`` with what they imply (``daemon``, ``socket_path``, the default ``ops``)."""
    command = list(args.command_argv or [])
    if command[:1] == ["--"]:
        command = command[1:]
    args.command_argv = command
    args.daemon = args.socket is not None or args.kdamond is not None
    sources = sum([bool(command), args.pid is not None, args.daemon])
    if sources > 1:
        raise RecordError("give one of: a COMMAND, --pid, or --socket/--kdamond", 2)
    if args.daemon:
        args.socket_path = client_socket_path(args.socket)
        given = [k for k in (*DEFAULTS, "cpu_budget") if getattr(args, k) is not None]
        if given or args.ops is not None or args.regions:
            raise RecordError("the daemon's kdamond has its own attributes; configure it "
                              "through its control socket", 2)
        return
    args.ops = args.ops or "vaddr"
    if args.ops in ("vaddr", "fvaddr") and not command and args.pid is None:
        raise RecordError(f"{args.ops} monitors a process: give a COMMAND or --pid", 2)
    if args.ops == "fvaddr" and not args.regions:
        raise RecordError("fvaddr monitors fixed ranges: give them with --regions", 2)
    if args.ops in ("paddr", "sim") and args.pid is not None:
        raise RecordError(f"{args.ops} has no process target: --pid does not apply", 2)


def run(args: argparse.Namespace) -> int:
    """The ``record`` subcommand (argparse ``func``): check the options, start the COMMAND if
    there is one, record, and end the command if it outlives the recording; the exit status."""
    proc = None
    try:
        check_options(args)
        pid = 0
        if args.command_argv:
            proc = start_command(args.command_argv)
            pid = proc.pid if args.ops in ("vaddr", "fvaddr") else 0
        elif args.pid is not None:
            pid = args.pid
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise RecordError(f"no process with pid {pid}") from None
            except PermissionError:
                pass
        return trio.run(record, args, proc, pid, RECORD.prog)
    except (RecordError, DaemonSourceError) as e:
        return report_failure(RECORD.prog, e)
    except KeyboardInterrupt:
        print(f"{RECORD.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if proc is not None:
            end_command(proc)


#: ``damond record`` and ``python -m damond.tools.record``
RECORD = ToolCommand(name="record", help="record monitoring results (damo's format)",
                     description=DESCRIPTION, add_arguments=add_arguments, run=run)
