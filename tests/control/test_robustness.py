"""Clients that are many, impatient, or send garbage harm no one."""

from __future__ import annotations

import os
import socket
import threading
import time

from tests.control.conftest import Conn, is_status, start_sim_kdamond, transcript


def test_many_concurrent_clients(damond):
    with damond.conn() as c:
        c.ok("echo 3 > kdamonds/nr_kdamonds")
        start_sim_kdamond(c, index=2)
    errors: list[str] = []

    def client(i: int) -> None:
        try:
            with damond.conn() as c:
                c.ok(f"cd kdamonds/{i % 3}")
                for j in range(40):
                    assert c.value("state") == ("on" if i % 3 == 2 else "off")
                    assert c.ok(f"echo {i} {j}") == [f"{i} {j}"]
                    assert c.err(f"echo {j} > nosuch") == "ENOENT"
                assert c.ok("pwd") == [f"/sys/kernel/mm/damon/admin/kdamonds/{i % 3}"]
        except Exception as e:  # report in the main thread
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert damond.alive()


def test_clients_disconnecting_mid_command(damond):
    with damond.conn() as c:
        c.ok("echo 1 > kdamonds/nr_kdamonds")
        c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
        c.ok("echo sim > kdamonds/0/contexts/0/operations")
        c.ok("echo 1 > kdamonds/0/contexts/0/targets/nr_targets")
    abrupt = [
        b"echo on > kdamonds/0/state\n",  # a state change, then gone before the answer
        b"cat kdamonds/0/sta",  # half a line
        b'echo "0 1 100\n0 100',  # inside a quote
        b"tree /\n" * 50,  # lots of output nobody reads
        b"trace\n",  # a stream nobody reads
        b"trace 100000\n",
    ]
    for data in abrupt:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(damond.path)
        s.sendall(data)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # reset
        s.close()
    time.sleep(0.5)
    with damond.conn() as c:
        # the state change completed (like a write(2) whose caller died), and nothing broke
        assert c.value("kdamonds/0/state") == "on"
        c.ok("echo off > kdamonds/0/state")
        status = dict(line.split(": ", 1) for line in c.ok("status"))
        assert status["daemon.control_clients"] == "1"
    assert damond.alive()


def test_garbage_keeps_the_connection_usable(conn):
    cases = [
        (b"\x00\n", "ERR EINVAL request: NUL byte in the request"),
        (b"cat kdamonds/nr_kdamonds\x00\n", "ERR EINVAL request: NUL byte in the request"),
        (b"echo \xff\xfe > kdamonds/nr_kdamonds\n",
         "ERR EILSEQ request: the request is not valid UTF-8"),
        (b"\xc3\n", "ERR EILSEQ request: the request is not valid UTF-8"),
        (b"echo " + b"9" * 70000 + b"\n", "ERR E2BIG request: request longer than 65536 bytes"),
        (b"x" * (1 << 20) + b"\n", "ERR E2BIG request: request longer than 65536 bytes"),
        (b"echo '" + b"a\n" * 40000 + b"'\n",
         "ERR E2BIG request: request longer than 65536 bytes"),
        (b"\x1b[A\x7f\x08\n", None),
        (b"cat a | grep b\n", "ERR EINVAL syntax: pipes (`|`) are not supported"),
        (b"echo a >> kdamonds/nr_kdamonds\n", None),
        (b")(\n", None),
    ]
    for data, expected in cases:
        conn.send(data)
        data_lines, status = conn.read_reply()
        assert status.startswith("ERR "), (data[:40], status)
        if expected:
            assert status == expected
        assert conn.ok("pwd") == ["/sys/kernel/mm/damon/admin"]
    # a NUL byte inside a multi-line quote refuses that one request, once
    conn.send(b'echo "0 1 100\n0 \x00 200" > /sys/kernel/debug/damon/init_regions\n')
    assert conn.read_reply() == ([], "ERR EINVAL request: NUL byte in the request")
    assert conn.value("kdamonds/nr_kdamonds") == "0"


def test_random_garbage_flood(damond):
    rnd = os.urandom(1 << 20)
    lines = transcript(damond.path, rnd + b"\npwd\n", timeout=60)
    assert lines[-2:] == ["/sys/kernel/mm/damon/admin", "OK"] or lines[-1].startswith("ERR ")
    assert all(is_status(line) or not line.startswith("ERR") for line in lines)
    assert not any("Traceback" in line for line in lines)
    assert damond.alive()


def test_half_close_gets_every_answer_then_close(damond):
    lines = transcript(damond.path, "".join(f"echo {i}\n" for i in range(2000)))
    assert lines == [x for i in range(2000) for x in (str(i), "OK")]


def test_quit_closes_after_the_answer(damond):
    with Conn(damond.path) as c:
        c.send("pwd; quit; pwd\npwd\n")
        assert c.read_reply() == (["/sys/kernel/mm/damon/admin"], "OK")
        assert c.read_reply() == ([], "OK")
        assert c.sock.recv(100) == b""


def test_crlf_and_prompts(conn):
    conn.send("cat kdamonds/nr_kdamonds\r\n")
    assert conn.read_reply() == (["0"], "OK")
    conn.send("prompt\n")
    assert conn.read_until(b"damond> ") == b"OK\ndamond> "
    conn.send('echo "a\n')
    assert conn.read_until(b"> ") == b"> "  # a quote is open: the continuation prompt
    conn.send('b"\n')
    assert conn.read_until(b"damond> ") == b"a\nb\nOK\ndamond> "
    conn.send("\n# # a comment\n")  # no reply, but a fresh prompt for each
    assert conn.read_until(b"damond> damond> ") == b"damond> damond> "
    conn.send("prompt off\n")
    assert conn.readline() == "OK"
    assert conn.ok("pwd") == ["/sys/kernel/mm/damon/admin"]
