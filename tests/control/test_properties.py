"""Property tests: whatever arrives, every request gets its replies, one status line per
command that ran, no traceback text, and the daemon lives on.

The expected replies are derived from the request structure alone: the assembled requests
(``RequestReader``, tested on its own in test_session.py) and ``shell_syntax.parse``; which
commands after ``&&`` run is read from the statuses actually received, as a shell would.
"""

from __future__ import annotations

import functools
import re

import hypothesis.strategies as st
import trio
import trio.testing
from hypothesis import HealthCheck, assume, given, settings

from damond.control.commands import Session
from damond.control.syntax import Incomplete, parse
from damond.control_socket import ControlServer, RequestReader
from damond.errors import DamonError
from damond.service.daemon import Daemon
from tests.control.conftest import transcript

STATUS = re.compile(r"^(OK|ERR [A-Z0-9]+ [^\n]*: [^\n]*)$")
#: commands that change the conversation itself (streams, closing, prompts): not generated
CONVERSATIONAL = {"trace", "quit", "exit", "prompt"}

PATHS = [
    "kdamonds/nr_kdamonds", "kdamonds/nr", "kdamonds/0/state", "kdamonds/0/pid",
    "kdamonds/0/contexts/nr_contexts", "kdamonds/0/contexts/0/operations",
    "kdamonds/0/contexts/0/targets/nr_targets", "kdamonds/0/contexts/0/targets/0/pid_target",
    "kdamonds/0/contexts/0/monitoring_attrs/intervals/sample_us",
    "kdamonds/0/contexts/0/schemes/nr_schemes", "kdamonds/0/contexts/0/schemes/0/action",
    "/sys/kernel/mm/damon/admin", "<sysfs>/kernel/mm/damon/admin/kdamonds",
    "<debugfs>/damon/attrs", "/sys/kernel/debug/damon/target_ids",
    "/sys/kernel/debug/damon/schemes", "/sys/kernel/debug/damon/init_regions",
    "/sys/kernel/debug/damon/monitor_on", "/sys/kernel/debug/damon/mk_contexts",
    "/sys/kernel/debug/damon/rm_contexts", "..", ".", "/", "kdamonds/0", "nosuch",
]
VALUES = ["0", "1", "2", "3", "-1", "0x10", "010", str(1 << 64), "on", "off", "commit",
          "update_schemes_stats", "sim", "vaddr", "paddr", "pageout", "stat", "free_mem_rate",
          "5000 100000 1000000 10 1000", "1 2 3 5 4", "foo", "", "OK", "ERR x", "# y", "\\"]
COMMANDS = ["cat", "read", "get", "echo", "write", "set", "ls", "cd", "pwd", "tree", "help",
            "version", "plugins", "status", "lateness", "features", "bogus", "-n"]


def _safe_text(s: str) -> bool:
    # random words must not ask for millions of sysfs directories
    return not (s.strip().isdigit() and len(s.strip()) > 3)


word = st.one_of(st.sampled_from(PATHS), st.sampled_from(VALUES),
                 st.text(st.characters(blacklist_characters="\n"), max_size=12)
                 .filter(_safe_text))


@st.composite
def quoted(draw, w):
    style = draw(st.sampled_from(["plain", "single", "double", "backslash"]))
    if style == "single":
        return "'" + w.replace("'", "") + "'"
    if style == "double":
        return '"' + w.replace('"', "").replace("\\", "") + '"'
    if style == "backslash":
        return "".join("\\" + c for c in w)
    return w


@st.composite
def simple_command(draw):
    kind = draw(st.sampled_from(["echo", "cmd", "write"]))
    if kind == "echo":
        words = [draw(quoted(draw(word))) for _ in range(draw(st.integers(0, 3)))]
        return " ".join(["echo", *words, ">", draw(st.sampled_from(PATHS))])
    if kind == "write":
        return " ".join([draw(st.sampled_from(["write", "set"])), draw(st.sampled_from(PATHS)),
                         *(draw(quoted(draw(word))) for _ in range(draw(st.integers(0, 2))))])
    args = [draw(quoted(draw(word))) for _ in range(draw(st.integers(0, 2)))]
    return " ".join([draw(st.sampled_from(COMMANDS)), *args])


@st.composite
def command_line(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(st.characters(blacklist_characters="\n"), max_size=60)
                    .filter(_safe_text))
    parts = [draw(simple_command())]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(st.sampled_from([";", "&&", " ; ", " && "])), draw(simple_command())]
    line = "".join(parts)
    prefix = draw(st.sampled_from(["", "# ", "$ ", "    # ", "\t"]))
    suffix = draw(st.sampled_from(["", " # comment", ";"]))
    return prefix + line + suffix


def steps_of(request: str):
    """Parsed steps, or None when the request is refused as a whole."""
    try:
        return parse(request)
    except (DamonError, Incomplete):
        return None


def conversational(request: str) -> bool:
    steps = steps_of(request)
    return bool(steps) and any(s.argv[0] in CONVERSATIONAL for s in steps)


def check_replies(items: list, lines: list[str]) -> None:
    """Walk the output: each refused request has one ERR; each parsed request one status per
    command that ran (``&&`` skips after a failure). Every line is consumed exactly."""
    assert not any("Traceback" in line or 'File "' in line for line in lines), lines
    pos = 0

    def reply() -> str:
        nonlocal pos
        while True:
            assert pos < len(lines), f"missing reply; items={items!r} lines={lines!r}"
            line = lines[pos]
            pos += 1
            if line == "OK" or line.startswith("ERR "):
                assert STATUS.match(line), line
                return line

    for item in items:
        steps = None if isinstance(item, DamonError) else steps_of(item)
        if steps is None:
            assert reply().startswith("ERR ")
            continue
        last_ok, connector = True, None
        for step in steps:
            if connector == "&&" and not last_ok:
                connector = step.connector
                continue
            last_ok, connector = reply() == "OK", step.connector
    assert pos == len(lines), f"extra output {lines[pos:]!r} for {items!r}"


def assemble(data: bytes) -> list:
    r = RequestReader()
    r.push(data)
    r.close()
    items = []
    while r.ready():
        items += r.step()
    return items


# -- in-process ---------------------------------------------------------------------------------

def run_in_process(fn):
    async def main():
        d = Daemon(seed=1)
        async with trio.open_nursery() as n:
            await n.start(d.scheduler.serve)
            try:
                await fn(d)
            finally:
                await d.stop_all()
                n.cancel_scope.cancel()

    trio.run(main)


@settings(max_examples=150, deadline=None)
@given(st.lists(command_line(), min_size=1, max_size=6))
def test_session_answers_every_command_once(requests):
    assume(not any(conversational(r) for r in requests))

    async def go(d: Daemon) -> None:
        s = Session(d)
        for request in requests:
            lines = [line for r in await s.run_all(request) for line in r.lines()]
            check_replies([request], lines)
            for r in await s.run_all(request):
                assert all(not STATUS.match(x) for x in r.data), r
        assert [r.lines() for r in await s.run_all("cd; pwd")] == [
            ["OK"], ["/sys/kernel/mm/damon/admin", "OK"]]

    run_in_process(go)


byte_lines = st.lists(st.one_of(st.binary(max_size=40),
                                command_line().map(lambda s: s.encode("utf-8", "surrogatepass")),
                                st.sampled_from([b"\x00", b"\xff\xfe", b"'", b'"', b"\\",
                                                 b"$(", b"`", b"\r"])),
                      min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(byte_lines)
def test_connection_answers_every_request_in_process(chunks):
    data = b"\n".join(chunks) + b"\n"
    items = assemble(data)
    assume(not any(isinstance(i, str) and conversational(i) for i in items))

    async def go(d: Daemon) -> None:
        server = ControlServer(d)
        client, srv = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as n:
            n.start_soon(functools.partial(server.handle_stream, srv, admin=True, peer="t"))
            await client.send_all(data)
            await client.send_eof()
            out = b""
            with trio.fail_after(30):
                while chunk := await client.receive_some(65536):
                    out += chunk
        text = out.decode()
        assert text == "" or text.endswith("\n")
        check_replies(items, text.split("\n")[:-1])

    run_in_process(go)


# -- the live daemon ------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(byte_lines)
def test_live_daemon_answers_every_request(damond, chunks):
    data = b"\n".join(chunks) + b"\n"
    items = assemble(data)
    assume(not any(isinstance(i, str) and conversational(i) for i in items))
    check_replies(items, transcript(damond.path, data))
    assert damond.proc.poll() is None
