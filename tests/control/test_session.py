"""The executor in-process: ``Session`` (no socket), and the server's connection handling on
trio memory streams."""

from __future__ import annotations

import functools
from collections import deque

import numpy as np
import pytest
import trio
import trio.testing

from damond import control_socket
from damond.control.commands import Reply, Session, content_lines
from damond.control.protocol import error_status, escape_data_line, unescape_data_line
from damond.control_socket import ControlServer, RequestReader, TraceFeed, resolve_group
from damond.core.events import AggregationEvent, TargetSnapshot
from damond.errors import DamonError
from damond.scheduler import KdamondStats
from damond.service.daemon import Daemon


@pytest.fixture
async def daemon(nursery):
    d = Daemon(seed=1)
    await nursery.start(d.scheduler.serve)
    yield d
    await d.stop_all()


async def lines_of(session: Session, request: str) -> list[str]:
    return [line for reply in await session.run_all(request) for line in reply.lines()]


# -- escaping ----------------------------------------------------------------------------------

@pytest.mark.parametrize("line", ["OK", "ERR x", "ERR EINVAL a: b", "# note", "\\", "\\OK",
                                  "OK ", "ERR", "#x", "", "plain"])
def test_escape_round_trip_and_never_a_status(line):
    escaped = escape_data_line(line)
    assert unescape_data_line(escaped) == line
    assert escaped != "OK" and not escaped.startswith(("ERR ", "# "))


def test_content_lines():
    assert content_lines("") == []
    assert content_lines("\n") == [""]
    assert content_lines("on\n") == ["on"]
    assert content_lines("a\nb") == ["a", "b"]
    assert content_lines("OK\n") == ["\\OK"]


def test_error_status_is_one_line():
    assert error_status("EINVAL", "a\nb", "x\ry\0") == "ERR EINVAL a\\nb: x\\ry\\x00"


# -- commands ------------------------------------------------------------------------------------

async def test_chains_and_and(daemon):
    s = Session(daemon)
    assert await lines_of(s, "pwd; pwd") == ["/sys/kernel/mm/damon/admin", "OK"] * 2
    out = await lines_of(s, "cat nosuch && pwd && pwd; echo x")
    assert out[0].startswith("ERR ENOENT nosuch:") and out[1:] == ["x", "OK"]
    assert await lines_of(s, "echo a && echo b") == ["a", "OK", "b", "OK"]
    assert await lines_of(s, "") == []
    assert await lines_of(s, "# # comment") == []
    assert await lines_of(s, "echo 'open") == [
        "ERR EINVAL request: end of input inside an unterminated single quote"]


async def test_cat_several_files_stops_at_the_first_error(daemon):
    s = Session(daemon)
    out = await lines_of(s, "cat kdamonds/nr_kdamonds kdamonds/nosuch kdamonds/nr_kdamonds")
    assert out[0] == "0" and out[1].startswith("ERR ENOENT kdamonds/nosuch:")
    assert len(out) == 2


async def test_cat_redirect_copies_a_file(daemon):
    s = Session(daemon)
    await lines_of(s, "echo 3 > kdamonds/nr_kdamonds")
    await lines_of(s, "echo 1 > kdamonds/0/contexts/nr_contexts")
    copy = "cat kdamonds/0/contexts/nr_contexts > kdamonds/1/contexts/nr_contexts"
    assert await lines_of(s, copy) == ["OK"]
    assert await lines_of(s, "cat kdamonds/1/contexts/nr_contexts") == ["1", "OK"]
    out = await lines_of(s, "pwd > kdamonds/nr_kdamonds")
    assert out[0].startswith("ERR EINVAL pwd: only echo and cat")


async def test_write_and_set_and_echo_n(daemon):
    s = Session(daemon)
    assert await lines_of(s, "write kdamonds/nr_kdamonds 2") == ["OK"]
    assert await lines_of(s, "set kdamonds/nr 1") == [
        "# 'nr' is accepted as 'nr_kdamonds' (the kernel's file name)", "OK"]
    assert await lines_of(s, "get kdamonds/nr_kdamonds") == ["1", "OK"]
    # the kernel's parsing sees exactly echo's bytes: -n drops the newline, kstrtoint takes it
    assert await lines_of(s, "echo -n 0x2 > kdamonds/nr_kdamonds") == ["OK"]
    assert await lines_of(s, "read kdamonds/nr_kdamonds") == ["2", "OK"]
    assert (await lines_of(s, "write"))[0].startswith("ERR EINVAL write:")


async def test_ls_tree_cd_pwd(daemon):
    s = Session(daemon)
    await lines_of(s, "echo 1 > kdamonds/nr_kdamonds")
    assert await lines_of(s, "ls kdamonds") == ["0/", "nr_kdamonds", "OK"]
    assert await lines_of(s, "ls kdamonds/nr_kdamonds") == ["kdamonds/nr_kdamonds", "OK"]
    assert await lines_of(s, "ls /sys/kernel/mm/damon") == ["admin/", "OK"]
    assert await lines_of(s, "tree kdamonds/0") == [
        "kdamonds/0/", "├── contexts/", "│   └── nr_contexts", "├── pid", "├── refresh_ms",
        "└── state", "OK"]
    assert await lines_of(s, "cd kdamonds/0/contexts; pwd") == [
        "OK", "/sys/kernel/mm/damon/admin/kdamonds/0/contexts", "OK"]
    assert await lines_of(s, "cd ..; cd; pwd") == ["OK", "OK", "/sys/kernel/mm/damon/admin",
                                                   "OK"]
    assert (await lines_of(s, "ls a b"))[0].startswith("ERR EINVAL ls:")


async def test_ls_d_names_one_node_by_its_canonical_path(daemon):
    """``ls -ld`` is the FUSE mount's lookup: one line whatever the directory's size, and an
    alias shows the name it stands for (so the mount can refuse names sysfs does not have)."""
    s = Session(daemon)
    await lines_of(s, "echo 1 > kdamonds/nr_kdamonds")
    root = "/sys/kernel/mm/damon/admin"
    assert await lines_of(s, "ls -ld kdamonds/0") == [f"drwxr-xr-x {root}/kdamonds/0/", "OK"]
    assert await lines_of(s, "ls -d kdamonds/0/pid") == [f"{root}/kdamonds/0/pid", "OK"]
    assert await lines_of(s, "ls -l -d kdamonds/nr") == [
        "# 'nr' is accepted as 'nr_kdamonds' (the kernel's file name)",
        f"-rw------- {root}/kdamonds/nr_kdamonds", "OK"]
    assert (await lines_of(s, "ls -ld kdamonds/1"))[0].startswith("ERR ENOENT")


async def test_information_commands(daemon):
    s = Session(daemon)
    for cmd in ("help", "help cat", "version", "features", "plugins", "status", "lateness"):
        out = await lines_of(s, cmd)
        assert out[-1] == "OK", (cmd, out)
    assert (await lines_of(s, "help read"))[0] == "usage: cat PATH..."
    assert (await lines_of(s, "help nosuch"))[0].startswith("ERR EINVAL help:")
    assert (await lines_of(s, "nosuch"))[0] == (
        "ERR EINVAL nosuch: unknown command 'nosuch'; 'help' lists the commands")
    features = await lines_of(s, "features")
    assert "operations sim: yes (built-in: " in "\n".join(features)
    assert any(line.startswith("facility ") for line in features)


async def test_read_only_session(daemon):
    s = Session(daemon, admin=False)
    out = await lines_of(s, "echo 1 > kdamonds/nr_kdamonds; cat kdamonds/nr_kdamonds")
    assert out[0].startswith("ERR EPERM kdamonds/nr_kdamonds: ")
    assert out[1:] == ["0", "OK"]
    assert (await lines_of(s, "write -n kdamonds/nr_kdamonds 1"))[0].startswith(
        "ERR EPERM kdamonds/nr_kdamonds:")


async def test_unexpected_exception_is_eio_and_the_session_goes_on(daemon, monkeypatch):
    s = Session(daemon)
    real = daemon.vfs.resolve

    def broken(path, cwd):
        if "boom" in path:
            raise ZeroDivisionError("bug")
        return real(path, cwd)

    monkeypatch.setattr(daemon.vfs, "resolve", broken)
    out = await lines_of(s, "cat boom; pwd")
    assert out == ["ERR EIO cat: internal error (ZeroDivisionError); see the daemon log",
                   "/sys/kernel/mm/damon/admin", "OK"]


async def test_trace_and_prompt_and_quit_replies(daemon):
    s = Session(daemon)
    [reply] = await s.run_all("trace 5")
    assert reply.ok and reply.trace.count == 5
    assert (await s.run_all("prompt"))[0].ok and s.prompt
    await s.run_all("prompt off")
    assert not s.prompt
    replies = await s.run_all("quit; pwd")
    assert replies == [Reply(quit=True)]


# -- the reader ----------------------------------------------------------------------------------

def read_all(data: bytes, pieces: int = 1) -> list:
    r = RequestReader()
    out = []
    size = max(1, len(data) // pieces)
    for i in range(0, len(data), size):
        r.push(data[i:i + size])
        while r.ready():
            out += r.step()
    r.close()
    while r.ready():
        out += r.step()
    return [f"ERR {x.errno_name}" if isinstance(x, DamonError) else x for x in out]


@pytest.mark.parametrize("pieces", [1, 3, 50])
def test_reader_lines_quotes_and_refusals(pieces):
    data = (b'a\r\necho "x\ny" > f\n\xe2\x82\xac\n'  # a multibyte character (split by 50)
            + b"bad\xff\nnul\x00\n" + b"z" * 70000 + b"\nlast")
    assert read_all(data, pieces) == ["a", 'echo "x\ny" > f', "\u20ac", "ERR EILSEQ",
                                      "ERR EINVAL", "ERR E2BIG", "last"]


def test_reader_open_quote_at_end_and_truncated_utf8():
    assert read_all(b"echo 'abc") == ["ERR EINVAL"]
    assert read_all(b"echo \xe2\x82") == ["ERR EILSEQ"]


# -- trace buffering -----------------------------------------------------------------------------

def test_trace_feed_drops_and_counts_when_full():
    def event(n: int) -> AggregationEvent:
        a = np.arange(n, dtype=np.uint64)
        t = TargetSnapshot(0, a, a + 1, np.zeros(n, np.int64), np.zeros(n, np.int64))
        return AggregationEvent(0, 0, 0, 0, 5000, 100000, (t,))

    feed = TraceFeed(limit_lines=25)
    for _ in range(5):
        feed.push(event(10))
    assert (len(feed.events), feed.lines, feed.dropped) == (2, 20, 30)
    feed.pop()
    feed.push(event(10))
    assert (len(feed.events), feed.dropped) == (2, 30)
    # one event bigger than the whole buffer is still delivered when nothing else waits
    big = TraceFeed(limit_lines=5)
    big.push(event(10))
    assert big.lines == 10 and big.dropped == 0


# -- whole connections on memory streams ---------------------------------------------------------

async def converse(server: ControlServer, data: bytes, *, admin: bool = True) -> bytes:
    client, srv = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(functools.partial(server.handle_stream, srv, admin=admin, peer="test"))
        await client.send_all(data)
        await client.send_eof()
        out = b""
        while chunk := await client.receive_some(65536):
            out += chunk
    return out


async def test_connection_answers_everything_in_order(daemon):
    server = ControlServer(daemon)
    out = await converse(server, b"pwd\n\x00\ncd kdamonds\npwd\necho 'a\nb'\nls")
    assert out.decode().splitlines() == [
        "/sys/kernel/mm/damon/admin", "OK", "ERR EINVAL request: NUL byte in the request",
        "OK", "/sys/kernel/mm/damon/admin/kdamonds", "OK", "a", "b", "OK", "nr_kdamonds", "OK"]


async def test_too_many_clients(daemon):
    server = ControlServer(daemon, max_clients=0)
    assert await converse(server, b"pwd\n") == b"ERR EAGAIN connection: too many clients (0)\n"


async def test_trace_stream_on_memory_stream(daemon, autojump_clock):
    server = ControlServer(daemon)
    s = Session(daemon)
    for line in ("echo 1 > kdamonds/nr_kdamonds", "echo 1 > kdamonds/0/contexts/nr_contexts",
                 "echo sim > kdamonds/0/contexts/0/operations",
                 "echo 1 > kdamonds/0/contexts/0/targets/nr_targets",
                 "echo on > kdamonds/0/state"):
        assert (await s.run_all(line))[0].ok
    out = (await converse(server, b"trace 25\npwd\n")).decode().splitlines()
    assert out[0] == "OK" and out[26] == "OK"
    assert all("damon:damon_aggregated: target_id=0" in line for line in out[1:26])
    assert out[27:] == ["/sys/kernel/mm/damon/admin", "OK"]


# -- small pieces ---------------------------------------------------------------------------------

def test_lateness_window_maps_sample_numbers():
    kept = deque([0.001 * i for i in range(6, 11)], maxlen=5)  # samples 6..10 are kept
    stats = KdamondStats(samples=10, lateness_s=kept)
    values, first, last = stats.lateness_window(7, 9)
    assert (first, last) == (7, 9) and sorted(values) == pytest.approx([0.007, 0.008, 0.009])
    values, first, last = stats.lateness_window(1, 100)
    assert (first, last, len(values)) == (6, 10, 5)
    assert len(stats.lateness_window(11, 20)[0]) == 0


def test_lateness_percentiles_of_recent_samples():
    stats = KdamondStats(samples=4, lateness_s=deque([0.004, 0.001, 0.002, 0.003]))
    assert list(stats.recent_lateness(2)) == [0.003, 0.002]
    assert list(stats.recent_lateness(2, skip=3)) == [0.004]
    assert stats.percentiles(stats.recent_lateness(), (0, 50, 100)) == pytest.approx(
        [0.001, 0.0025, 0.004])
    assert stats.lateness_percentile(100, last_n=3) == pytest.approx(0.003)
    assert KdamondStats().percentiles(KdamondStats().recent_lateness(), (50, 99)) == [0.0, 0.0]


def test_default_socket_path(monkeypatch):
    monkeypatch.setattr(control_socket.os, "geteuid", lambda: 0)
    assert control_socket.default_socket_path() == "/run/damond/damond.sock"
    monkeypatch.setattr(control_socket.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert control_socket.default_socket_path() == "/run/user/1000/damond/damond.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert control_socket.default_socket_path() == "/tmp/damond-1000/damond.sock"


def test_authorization_levels():
    server = ControlServer(None, admin_gid=resolve_group("users"))
    assert server.is_admin(0, 0, set())
    assert server.is_admin(1000, 100, set())
    assert server.is_admin(1000, 1000, {5, 100})
    assert not server.is_admin(1000, 1000, {5})
    assert not ControlServer(None).is_admin(1000, 100, {100})
    assert resolve_group("100") == 100 and resolve_group(None) is None
    with pytest.raises(ValueError):
        resolve_group("no-such-group-here")
