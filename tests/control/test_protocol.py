"""The wire text both ends share (``damond.control.protocol``), and the promise that a client
loads none of the server to speak it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from damond.control import protocol
from damond.control.protocol import (
    OK,
    LineSplitter,
    encode_lines,
    encode_request,
    error_status,
    error_text,
    escape_data_line,
    format_dropped_note,
    is_error,
    is_note,
    parse_dropped_note,
    unescape_data_line,
)
from damond.tools.report.live import DaemonSourceError, _Connection

#: modules of the server side: a client must load none of them
SERVER_MODULES = ("damond.control_socket", "damond.control.commands", "damond.control.syntax",
                  "damond.scheduler", "damond.service")

# -- escaping -------------------------------------------------------------------------------------


def _looks_like_status_or_note(line: str) -> bool:
    return line == OK or is_error(line) or is_note(line)


@given(st.text().filter(lambda s: "\n" not in s))
def test_escape_round_trip_and_never_a_status_or_note(line):
    escaped = escape_data_line(line)
    assert unescape_data_line(escaped) == line
    assert not _looks_like_status_or_note(escaped)


@given(st.sampled_from(["OK", "ERR ", "# ", "\\", ""]), st.text().filter(lambda s: "\n" not in s))
def test_escape_round_trip_of_lines_that_start_like_protocol_text(prefix, rest):
    line = prefix + rest
    escaped = escape_data_line(line)
    assert unescape_data_line(escaped) == line
    assert not _looks_like_status_or_note(escaped)


def test_escape_leaves_ordinary_lines_alone():
    for line in ("on", "OKAY", "ERR", "ERRx", "#x", "kdamond.0 1.000000: damon:x", ""):
        assert escape_data_line(line) == line
    assert escape_data_line("OK") == "\\OK"
    assert escape_data_line("# HELP x") == "\\# HELP x"
    assert escape_data_line("\\n") == "\\\\n"


def test_error_status_line():
    line = error_status("ENOENT", "cat x", "no such\nfile")
    assert line == "ERR ENOENT cat x: no such\\nfile"
    assert is_error(line) and not is_note(line)
    assert error_text(line) == "ENOENT cat x: no such\\nfile"
    assert error_status("EINVAL", "", "why") == "ERR EINVAL -: why"


# -- the dropped note -----------------------------------------------------------------------------


def test_dropped_note_format():
    assert format_dropped_note(3) == "# dropped 3 events"
    assert is_note(format_dropped_note(3))


@given(st.integers(min_value=0, max_value=1 << 64))
def test_dropped_note_round_trip(count):
    assert parse_dropped_note(format_dropped_note(count)) == count


@pytest.mark.parametrize("line", [
    "# dropped x events", "# dropped -1 events", "# dropped 3", "# dropped  events",
    "# 'nr' is accepted as 'nr_kdamonds'", "dropped 3 events", "\\# dropped 3 events", "OK",
    "kdamond.0 5.000000: damon:damon_aggregated: target_id=0 nr_regions=1 0-1: 0 0"])
def test_other_lines_are_no_dropped_note(line):
    assert parse_dropped_note(line) is None


# -- framing --------------------------------------------------------------------------------------


def test_encode_lines_and_requests():
    assert encode_lines(["a", OK]) == b"a\nOK\n"
    assert encode_lines(["\udcff"]) == b"\\udcff\n"  # a surrogate escape is sent as text
    assert encode_request("cat x") == b"cat x\n"
    assert encode_request("\udcff") == b"\xff\n"  # the original byte, for EILSEQ


@given(st.lists(st.text().filter(lambda s: "\n" not in s)), st.data())
def test_line_splitter_takes_any_chunking(lines, data):
    wire = encode_lines(lines) if lines else b""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=5)))
    splitter = LineSplitter()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        got += splitter.feed(wire[a:b])
    assert got == [line.encode("utf-8", "backslashreplace").decode() for line in lines]
    assert splitter.take_partial() == ""


def test_line_splitter_keeps_the_partial_line_and_replaces_bad_utf8():
    splitter = LineSplitter()
    assert splitter.feed(b"a\n\xffb\ndamond> ") == ["a", "\ufffdb"]
    assert splitter.take_partial() == "damond> "
    assert splitter.take_partial() == ""


def test_default_socket_path(monkeypatch):
    monkeypatch.setattr(protocol.os, "geteuid", lambda: 0)
    assert protocol.default_socket_path() == protocol.ROOT_SOCKET_PATH == "/run/damond/damond.sock"
    monkeypatch.setattr(protocol.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert protocol.default_socket_path() == "/run/user/1000/damond/damond.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert protocol.default_socket_path() == "/tmp/damond-1000/damond.sock"


# -- clients load no server -----------------------------------------------------------------------


def _imported_modules(statement: str) -> set[str]:
    """Every module a fresh interpreter imports to run ``statement`` (``-X importtime``)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                          capture_output=True, text=True, timeout=60, check=True)
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_the_ctl_client_loads_neither_numpy_nor_the_server():
    modules = _imported_modules("import damond.client")
    assert "damond.client" in modules and "damond.control.protocol" in modules
    assert not {m for m in modules if m == "numpy" or m.startswith("numpy.")}
    assert not {m for m in modules if m == "trio" or m.startswith("trio.")}
    server = {m for m in modules if m.startswith(SERVER_MODULES)}
    assert not server, server


def test_damond_ctl_loads_neither_numpy_nor_trio_nor_the_server(tmp_path):
    """The whole ``damond ctl`` command, not only its client module: it runs in loops of
    scripts, so the CLI must not build the heavy record/report parsers for it."""
    sock = str(tmp_path / "absent.sock")
    modules = _imported_modules(
        "import sys\n"
        "from damond.tools.cli import main\n"
        f"rc = main(['ctl', '--socket', {sock!r}, 'cat kdamonds/nr_kdamonds'])\n"
        "sys.exit(0 if rc == 2 else 1)")
    assert "damond.client" in modules
    heavy = {m for m in modules if m.split(".")[0] in ("numpy", "trio", "structlog")}
    assert not heavy, sorted(heavy)[:5]
    assert not {m for m in modules if m.startswith(SERVER_MODULES)}


def test_the_protocol_module_imports_only_the_standard_library():
    modules = _imported_modules("import damond.control.protocol")
    assert {m for m in modules if m.startswith("damond")} == {
        "damond", "damond.control", "damond.control.protocol"}
    assert not {m for m in modules if m.split(".")[0] in ("numpy", "trio", "structlog")}


# -- every client removes the escaping ------------------------------------------------------------


def test_the_live_report_client_unescapes_data_lines_like_ctl(damond):
    """``report --socket``'s reader (damond.tools.report.live) is a client too: the data lines
    it reads are the ones ``damond ctl`` prints (test_clients.test_ctl_unescapes_data_lines)."""

    async def ask() -> list[list[str]]:
        conn = await _Connection.open(damond.path)
        async with conn.stream:
            return [await conn.command(line) for line in (
                "echo OK", "echo 'ERR x'", "echo '# not a note'", r"echo '\x'", "cat kdamonds/nr",
                "metrics")]

    echoes = trio.run(ask)
    assert echoes[:4] == [["OK"], ["ERR x"], ["# not a note"], ["\\x"]]
    assert echoes[4] == ["0"]  # and the note "'nr' is accepted as 'nr_kdamonds'" left out
    assert any(line.startswith("# HELP ") for line in echoes[5])  # Prometheus comments


def test_the_live_report_client_reports_errors(damond):
    async def ask() -> None:
        conn = await _Connection.open(damond.path)
        async with conn.stream:
            await conn.command("cat nothing")

    with pytest.raises(DaemonSourceError, match=r"^'cat nothing' failed: ENOENT "):
        trio.run(ask)


def test_stopped_note_round_trip():
    from damond.control.protocol import format_stopped_note, parse_stopped_note

    line = format_stopped_note("kdamond.3", "every target is gone\n(pid 42)")
    assert line == "# kdamond.3 stopped: every target is gone\\n(pid 42)"
    assert parse_stopped_note(line) == ("kdamond.3", "every target is gone\\n(pid 42)")
    assert parse_stopped_note("# dropped 3 events") is None
    assert parse_stopped_note("kdamond.3 stopped: x") is None
