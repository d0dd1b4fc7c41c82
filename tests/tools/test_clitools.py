"""``ToolCommand``: one declaration gives a tool both entries (``damond <tool>`` and its own
``main``) with the same options, and failures become one line and an exit status."""

from __future__ import annotations

import argparse

import pytest

from damond.tools.clitools import EXIT_INTERRUPTED, ToolCommand, ToolError, report_failure


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fail", type=int, metavar="STATUS")


def _run(args: argparse.Namespace) -> int:
    try:
        if args.fail is not None:
            raise ToolError(f"failed as asked ({args.fail})", args.fail)
        print("done")
        return 0
    except ToolError as e:
        return report_failure(ECHO.prog, e)


ECHO = ToolCommand(name="echo", help="say done", description="Says done, or fails.",
                   add_arguments=_add_arguments, run=_run)


def test_main_parses_runs_and_returns_the_status(capsys):
    assert ECHO.main([]) == 0
    assert capsys.readouterr().out == "done\n"
    assert ECHO.main(["--fail", "3"]) == 3
    assert capsys.readouterr().err == "damond echo: failed as asked (3)\n"


def test_the_damond_subcommand_has_the_same_options_and_runs_run():
    parser = argparse.ArgumentParser(prog="damond")
    sub = parser.add_subparsers(dest="command")
    ECHO.add_parser(sub)
    args = parser.parse_args(["echo", "--fail", "2"])
    assert (args.command, args.fail, args.func) == ("echo", 2, _run)


def test_standalone_parser_is_named_for_damond(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ECHO.main(["--no-such-option"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: damond echo ")


def test_report_failure_takes_any_error_with_a_status(capsys):
    class SourceError(Exception):
        status = 2

    assert report_failure("damond x", SourceError("no daemon")) == 2
    assert report_failure("damond x", ValueError("plain")) == 1
    assert capsys.readouterr().err == "damond x: no daemon\ndamond x: plain\n"
    assert ToolError("x").status == 1 and EXIT_INTERRUPTED == 130
