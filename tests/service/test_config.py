"""``--config``: validated completely before anything starts; SIGHUP and ``reload`` refuse a
broken file without touching the running configuration, and apply a valid one online."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from damond.control.commands import Session
from damond.errors import DamonError
from damond.service.config import parse_config, read_config, run_bounded
from damond.service.daemon import Daemon
from tests.control.conftest import DAMOND
from tests.service.conftest import (
    PAGEOUT_COLD,
    base_env,
    kdamond_status,
    samples,
    sim_kdamond,
    tree_files,
    write_config,
)

#: (file text, what the refusal must say)
BROKEN = [
    pytest.param("kdamonds: [\n  - contexts: [", "not valid YAML", id="syntax"),
    pytest.param(None, "pause: not implemented by damond", id="unimplemented-field"),
    pytest.param(None, "min_nr_regions 1 is below 3", id="invalid-value"),
    pytest.param("{}", "expected a list under the 'kdamonds' key", id="no-kdamonds"),
]


def _broken_text(param_id: str, text: str | None, path: str) -> None:
    if text is not None:
        with open(path, "w") as f:
            f.write(text)
    elif param_id == "unimplemented-field":
        kd = sim_kdamond()
        kd["contexts"][0]["pause"] = True
        write_config(path, [kd])
    else:
        write_config(path, [sim_kdamond(min_regions=1)])


@pytest.mark.parametrize(("text", "why"), BROKEN)
def test_invalid_config_at_startup_exits_1_naming_the_problem(serve, config_path, request,
                                                              text, why):
    _broken_text(request.node.callspec.id, text, config_path)
    d = serve(config=config_path)
    assert d.wait() == 1
    assert why in d.stderr()
    assert "damond could not start" in d.stderr()


def test_missing_config_file(serve, tmp_path):
    d = serve(config=str(tmp_path / "nope.yaml"))
    assert d.wait() == 1
    assert "nope.yaml: cannot read: No such file or directory" in d.stderr()


def test_one_bad_kdamond_refuses_the_whole_file(serve, config_path):
    """All validated before anything starts: the good kdamond 0 is not started either."""
    write_config(config_path, [sim_kdamond(), sim_kdamond(sample="2 s", aggr="1 s")])
    d = serve(config=config_path)
    assert d.wait() == 1
    err = d.stderr()
    assert "kdamonds[1]: sample interval 2000000 us is longer than the aggregation" in err
    assert "kdamond started" not in err


def test_unknown_keys(serve, notify, config_path):
    """An unknown key of damond's own section is a warning (a newer damond's setting); one in
    the kdamonds is refused, naming it, as every unimplemented field is (the kdamonds loader's
    rule)."""
    write_config(config_path, [sim_kdamond()], damond={"log_level": "info", "colour": "blue"})
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    assert "damond.colour: unknown key (ignored)" in d.stderr()
    kd = sim_kdamond()
    kd["contexts"][0]["future_knob"] = 1
    write_config(config_path, [kd])
    refused = serve(config=config_path)
    assert refused.wait() == 1
    assert "kdamonds[0].contexts[0].future_knob: unknown key" in refused.stderr()


def _reload(d, notify, *, how: str = "sighup") -> dict[str, str]:
    mark = len(notify.messages)
    if how == "sighup":
        d.signal(signal.SIGHUP)
    else:
        with d.conn() as c:
            c.cmd("reload")
    _, ready = notify.wait_for(lambda f: "READY" in f, after=mark)
    return ready


def test_broken_reloads_keep_the_running_configuration(serve, notify, config_path, request):
    write_config(config_path, [sim_kdamond(seed=3, schemes=[PAGEOUT_COLD])])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    with d.conn() as c:
        before = tree_files(c)
        dump_before = c.ok("dump")
        last = samples(c)
    for param in BROKEN:
        text, why = param.values
        _broken_text(param.id, text, config_path)
        ready = _reload(d, notify)
        assert "reload failed" in ready["STATUS"] and why in ready["STATUS"], ready
        assert "1 of 1 kdamonds running" in ready["STATUS"]
        time.sleep(0.1)
        with d.conn() as c:
            # the same kdamond keeps sampling: its count grows, it was never restarted
            now = samples(c)
            assert now > last, (param.id, now, last)
            last = now
            assert tree_files(c) == before, param.id
            assert c.ok("dump") == dump_before
    assert "configuration reload failed" in d.stderr()


def test_valid_reload_commits_online_adds_and_removes_kdamonds(serve, notify, config_path):
    write_config(config_path, [sim_kdamond(seed=1)])
    d = serve("--cpu-budget", "0", config=config_path,  # regions split at the configured rate
              env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    time.sleep(0.2)
    with d.conn() as c:
        before = samples(c)
        assert before > 0
    # changed attributes for kdamond 0, and a new kdamond 1
    write_config(config_path, [sim_kdamond(seed=1, aggr="1 s", min_regions=20,
                                           schemes=[PAGEOUT_COLD]),
                               sim_kdamond(seed=2)])
    ready = _reload(d, notify)
    assert "committed 0; started 1" in ready["STATUS"] and "2 of 2" in ready["STATUS"]
    with d.conn() as c:
        assert c.value("kdamonds/nr_kdamonds") == "2"
        assert c.value("kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us") == "1000000"
        assert c.value("kdamonds/0/contexts/0/monitoring_attrs/nr_regions/min") == "20"
        assert c.value("kdamonds/0/contexts/0/schemes/nr_schemes") == "1"
        assert c.value("kdamonds/1/state") == "on"
        st = kdamond_status(c)
        # committed, not restarted: the counters kept counting
        assert int(st["kdamond.0"]["samples"]) > before
        aggregations = int(st["kdamond.0"]["aggregations"])
    # the running context really has the new aggregation interval (1 s, was 100 ms)
    time.sleep(1.2)
    with d.conn() as c:
        grown = int(kdamond_status(c)["kdamond.0"]["aggregations"]) - aggregations
        assert 0 <= grown <= 3, grown
        assert int(kdamond_status(c)["kdamond.0"]["nr_regions"]) >= 20
    # remove kdamond 1 again, through the protocol's reload command this time
    write_config(config_path, [sim_kdamond(seed=1, aggr="1 s", min_regions=20)])
    ready = _reload(d, notify, how="command")
    assert "committed 0; stopped 1" in ready["STATUS"]
    with d.conn() as c:
        assert c.value("kdamonds/nr_kdamonds") == "1"
        assert list(kdamond_status(c)) == ["kdamond.0"]


def test_reload_starts_a_kdamond_that_was_turned_off(serve, notify, config_path):
    write_config(config_path, [sim_kdamond()])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    with d.conn() as c:
        c.ok("echo off > kdamonds/0/state")
    ready = _reload(d, notify)
    assert "started 0" in ready["STATUS"]
    with d.conn() as c:
        assert c.value("kdamonds/0/state") == "on"


def test_reload_command_replies(serve, config_path):
    write_config(config_path, [sim_kdamond()])
    d = serve(config=config_path)
    d.wait_listening()
    with d.conn() as c:
        [line] = c.ok("reload")
        assert line == f"reloaded {config_path}: committed 0"
        write_config(config_path, [sim_kdamond(min_regions=1)])
        data, status = c.cmd("reload")
        assert status.startswith("ERR EINVAL reload: ")
        assert "min_nr_regions 1 is below 3; the running configuration is kept" in status
        assert c.value("kdamonds/0/state") == "on"


def test_reload_without_config(serve, notify):
    d = serve(env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    with d.conn() as c:
        assert c.err("reload") == "EINVAL"
    ready = _reload(d, notify)  # SIGHUP: reported, nothing else happens
    assert "started without --config" in ready["STATUS"]


async def test_reload_is_for_admins_only():
    daemon = Daemon()
    [reply] = await Session(daemon, admin=False).run_all("reload")
    assert reply.status.startswith("ERR EPERM ")


def test_log_level_from_the_config_section(serve, notify, config_path):
    write_config(config_path, [sim_kdamond()], damond={"log_level": "warning"})
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    assert "damond serving" not in d.stderr()
    # an explicit --log-level wins over the file
    d2 = serve("--log-level", "info", config=config_path,
               env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f and "d1.sock" in f.get("STATUS", ""))
    assert "damond serving" in d2.stderr()


def test_config_check_option(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.yaml"
    write_config(str(good), [sim_kdamond()], fmt="json")
    write_config(str(bad), [sim_kdamond(max_regions=5)])
    ok = subprocess.run([DAMOND, "serve", "--config", str(good), "--check"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "OK (1 kdamonds)" in ok.stdout
    no = subprocess.run([DAMOND, "serve", "--config", str(bad), "--check"],
                        capture_output=True, text=True, timeout=30)
    assert no.returncode == 1 and "min_nr_regions 10 is above max_nr_regions 5" in no.stderr
    # a plain message for a person, not log records
    assert no.stderr.startswith("damond serve: configuration refused: ")
    assert no.stderr.count("\n") == 1 and "[error" not in no.stderr
    assert no.stderr.rstrip().endswith("(EINVAL)")


def test_format_from_extension_or_content(tmp_path):
    text_json = '{"kdamonds": []}'
    assert parse_config(text_json).specs == []
    assert parse_config("kdamonds: []\n").specs == []
    p = tmp_path / "conf.json"
    p.write_text("kdamonds: []\n")  # YAML in a .json file: the extension decides
    with pytest.raises(DamonError, match="not valid JSON"):
        read_config(str(p))


# -- a configuration path that is not a regular file -------------------------------------------


def _fifo_in_place_of(path: str) -> None:
    os.unlink(path)
    os.mkfifo(path)


def test_a_fifo_at_the_config_path_never_wedges_the_daemon(serve, notify, config_path):
    """Before, ``reload`` of a FIFO blocked (open waits for a writer), freezing the daemon's
    clients, and SIGTERM was not heard until the read returned."""
    write_config(config_path, [sim_kdamond()])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    _fifo_in_place_of(config_path)
    with d.conn() as c:
        started = time.monotonic()
        data, status = c.cmd("reload")
        assert time.monotonic() - started < 1.0
        assert status.startswith("ERR EINVAL reload: "), status
        assert "is a FIFO, not a regular file; the running configuration is kept" in status
        assert c.value("kdamonds/0/state") == "on"
    # SIGHUP then SIGTERM: the daemon ends within a second
    d.signal(signal.SIGHUP)
    time.sleep(0.1)
    d.signal(signal.SIGTERM)
    started = time.monotonic()
    assert d.wait(timeout=5) == 0
    assert time.monotonic() - started < 1.0
    assert "is a FIFO" in d.stderr()


def test_non_regular_config_paths_are_refused_at_startup(serve, tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, kind in ((str(fifo), "a FIFO"), (str(tmp_path), "a directory"),
                       ("/dev/zero", "a device")):
        d = serve(config=path)
        started = time.monotonic()
        assert d.wait(timeout=10) == 1
        assert time.monotonic() - started < 5
        assert f"is {kind}, not a regular file" in d.stderr()


async def test_a_read_that_blocks_is_given_up_in_time(tmp_path):
    """The time bound itself, on a real blocking read: opening a FIFO without O_NONBLOCK
    waits for a writer that never comes. The worker thread is abandoned (and released here
    by opening the write end, so the test leaves nothing behind)."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)

    def blocking_read() -> bytes:
        with open(fifo, "rb") as f:
            return f.read()

    started = time.monotonic()
    with pytest.raises(DamonError) as e:
        await run_bounded(blocking_read, timeout_s=0.3, what=f"{fifo}: reading")
    assert 0.3 <= time.monotonic() - started < 1.0
    assert e.value.errno_name == "ETIMEDOUT" and "given up" in e.value.why
    fd = os.open(fifo, os.O_WRONLY)  # lets the abandoned thread finish
    os.close(fd)
