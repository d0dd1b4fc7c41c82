"""``trace``: the damon:damon_aggregated tracepoint streamed over the socket."""

from __future__ import annotations

import re
import socket
import time

from tests.control.conftest import Conn, start_sim_kdamond

EVENT = re.compile(
    r"^kdamond\.(\d+) (\d+)\.(\d{6}): damon:damon_aggregated: target_id=(\d+) "
    r"nr_regions=(\d+) (\d+)-(\d+): (\d+) (\d+)$")


def check_event(line: str) -> re.Match:
    m = EVENT.match(line)
    assert m, line
    start, end = int(m.group(6)), int(m.group(7))
    assert start < end
    # nr_accesses cannot exceed aggr/sample = 20 samples at the default attributes
    assert 0 <= int(m.group(8)) <= 20
    return m


def test_trace_count_returns_exactly_count_events(conn):
    start_sim_kdamond(conn)
    conn.send("trace 20\n")
    assert conn.readline() == "OK"
    lines = [conn.readline() for _ in range(20)]
    for line in lines:
        assert check_event(line).group(1) == "0"
    assert conn.readline() == "OK"
    # the connection goes on as usual
    assert conn.ok("cat kdamonds/0/state") == ["on"]
    # events come in time order, and regions of one aggregation in address order
    stamps = [float(f"{m.group(2)}.{m.group(3)}") for m in map(check_event, lines)]
    assert stamps == sorted(stamps)


def test_trace_follows_kdamonds_that_start_later(damond):
    with damond.conn() as tracer, damond.conn() as admin:
        admin.ok("echo 2 > kdamonds/nr_kdamonds")
        for k in (0, 1):
            admin.ok(f"echo 1 > kdamonds/{k}/contexts/nr_contexts")
            admin.ok(f"echo sim > kdamonds/{k}/contexts/0/operations")
            admin.ok(f"echo 1 > kdamonds/{k}/contexts/0/targets/nr_targets")
        tracer.send("trace 400\n")
        assert tracer.readline() == "OK"
        admin.ok("echo on > kdamonds/0/state")
        assert {check_event(tracer.readline()).group(1) for _ in range(10)} == {"0"}
        admin.ok("echo on > kdamonds/1/state")
        seen = {check_event(tracer.readline()).group(1) for _ in range(390)}
        assert seen == {"0", "1"}
        assert tracer.readline() == "OK"


def test_trace_in_a_chain_streams_before_the_next_command(conn):
    start_sim_kdamond(conn)
    conn.send("trace 3; pwd\n")
    lines = [conn.readline() for _ in range(6)]
    assert lines[0] == "OK" and lines[4] == "OK"
    assert all(EVENT.match(line) for line in lines[1:4])
    assert lines[5] == "/sys/kernel/mm/damon/admin"
    assert conn.readline() == "OK"


def test_trace_argument_errors(conn):
    assert conn.err("trace 0") == "EINVAL"
    assert conn.err("trace -1") == "EINVAL"
    assert conn.err("trace x") == "EINVAL"
    assert conn.err("trace 1 2") == "EINVAL"


def test_slow_trace_client_drops_and_reports_and_does_not_slow_the_kdamond(start_damond):
    damond = start_damond("--cpu-budget", "0")  # the configured 1 ms sampling, unstretched
    with damond.conn() as c:
        start_sim_kdamond(c)
        # aggregate at every 1 ms sample: over 10k tracepoint lines a second
        c.ok("echo 1000 > kdamonds/0/contexts/0/monitoring_attrs/intervals/sample_us")
        c.ok("echo 1000 > kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us")
        c.ok("echo commit > kdamonds/0/state")
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(damond.path)
    slow.sendall(b"trace\n")
    time.sleep(2.0)  # read nothing: the daemon's buffer for this client fills up
    with damond.conn() as c:
        # another client is served promptly meanwhile
        t0 = time.monotonic()
        assert c.ok("cat kdamonds/0/state") == ["on"]
        assert time.monotonic() - t0 < 1.0
        samples_before = int(c.ok("lateness")[0].split()[1].split("=")[1])
    # now read slowly for a while: dropped events are reported
    slow.settimeout(10)
    got = b""
    deadline = time.monotonic() + 10
    while b"# dropped " not in got and time.monotonic() < deadline:
        got += slow.recv(65536)
    slow.close()
    assert b"# dropped " in got
    dropped = re.search(rb"# dropped (\d+) events", got)
    assert int(dropped.group(1)) > 0
    with damond.conn() as c:
        # the kdamond kept sampling (2 s at 5 ms is ~400 samples; allow a loaded machine)
        samples_after = int(c.ok("lateness")[0].split()[1].split("=")[1])
        assert samples_after > samples_before
        assert c.value("kdamonds/0/state") == "on"


def test_trace_client_that_closes_is_forgotten(damond):
    with damond.conn() as c:
        start_sim_kdamond(c)
    for _ in range(5):
        with Conn(damond.path) as t:
            t.send("trace\n")
            assert t.readline() == "OK"
            check_event(t.readline())
    time.sleep(0.5)
    with damond.conn() as c:
        status = dict(line.split(": ", 1) for line in c.ok("status"))
        assert status["daemon.control_clients"] == "1"


def test_huge_numbers_are_refused_with_the_kernels_errnos_and_no_traceback(damond):
    """Python's int() refuses 4,301+ digits with a ValueError; counts are parsed as the kernel
    parses a number (kstrtoull): EINVAL or ERANGE, whatever the length, nothing logged."""
    with damond.conn() as c:
        start_sim_kdamond(c)
        assert c.err("trace " + "9" * 5000) == "ERANGE"
        assert c.err("trace " + "9" * 5000 + "x") == "ERANGE"   # overflow is checked first
        assert c.err("trace 1" + "x" * 5000) == "EINVAL"
        assert c.err("lateness " + "1" * 5000) == "ERANGE"
        assert c.err("lateness 1 " + "1" * 5000) == "ERANGE"
        assert c.err("lateness -1") == "EINVAL"
        assert c.err("trace 18446744073709551616") == "ERANGE"
        c.send("trace 18446744073709551615\n")   # u64 max: accepted (forever)
        assert c.readline() == "OK"
    assert "Traceback" not in damond.output()
    assert "internal error" not in damond.output()
