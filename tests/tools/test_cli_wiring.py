"""``add_parsers``: how ``damond record`` and ``damond report`` plug into the ``damond``
command's argparse subparsers (what ``damond/tools/cli.py`` does with them)."""

from __future__ import annotations

import argparse

from damond.tools import record, report
from tests.tools import synthetic


def damond_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="damond")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    record.add_parsers(sub)
    report.add_parsers(sub)
    return parser


def test_record_arguments_through_the_damond_parser():
    args = damond_parser().parse_args(
        ["record", "-o", "x.data", "--timeout", "3", "--aggr-us", "200ms", "--", "python3",
         "-m", "damond.tools.workload", "--seconds", "2"])
    assert args.func is record.run
    assert args.command == "record"  # the top-level dest is left alone
    assert args.command_argv == ["--", "python3", "-m", "damond.tools.workload", "--seconds", "2"]
    assert (args.output, args.timeout, args.aggr_us, args.output_permission) == (
        "x.data", 3.0, 200_000, 0o600)
    args = damond_parser().parse_args(["record", "--socket", "/run/x.sock", "--kdamond", "1"])
    assert (args.socket, args.kdamond, args.command_argv) == ("/run/x.sock", 1, [])


def test_report_runs_through_the_damond_parser(tmp_path, capsys):
    path = synthetic.write(tmp_path / "damon.data")
    args = damond_parser().parse_args(["report", "wss", "--input", path, "--exclude-samples",
                                       "0", "--raw-number"])
    assert args.func is report.run
    assert args.func(args) == 0
    assert "# avr:\t327680" in capsys.readouterr().out
