"""Logging: JSON lines (with syslog priority prefixes) when standard error is the journal
stream systemd named in ``JOURNAL_STREAM``, console lines otherwise; nothing per sample."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import tempfile

import structlog

from damond.service import logs
from tests.service.conftest import base_env, sim_kdamond, write_config

_PRIORITY = re.compile(r"^<([0-7])>(\{.*\})$")


def _stream_id(f) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def _run(serve, notify, config_path, *, journal: str | None, args=(), seconds=0.0) -> str:
    """Start with a config, reload it once, stop; return standard error. ``journal``:
    ``"match"`` sets JOURNAL_STREAM to standard error's own device:inode, another string
    sets it to that."""
    err = tempfile.NamedTemporaryFile(prefix="damond-log-")  # noqa: SIM115
    env = base_env(NOTIFY_SOCKET=notify.address)
    if journal is not None:
        env["JOURNAL_STREAM"] = _stream_id(err) if journal == "match" else journal
    mark = len(notify.messages)
    d = serve(*args, config=config_path, env=env, err_file=err)
    notify.wait_for(lambda f: "READY" in f, after=mark)
    notify.drain(seconds)
    mark = len(notify.messages)
    d.signal(signal.SIGHUP)
    notify.wait_for(lambda f: "READY" in f, after=mark)
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    return d.stderr()


def test_json_lines_on_the_journal_stream(serve, notify, config_path):
    # an unknown key of damond's own section is a warning: to see its priority (one in the
    # kdamonds is refused)
    write_config(config_path, [sim_kdamond()], damond={"some_new_knob": True})
    out = _run(serve, notify, config_path, journal="match")
    lines = out.splitlines()
    assert lines
    events = []
    for line in lines:
        m = _PRIORITY.match(line)
        assert m, f"not <priority>JSON: {line!r}"
        obj = json.loads(m.group(2))
        assert isinstance(obj, dict) and "event" in obj and "timestamp" in obj
        events.append((int(m.group(1)), obj))
    by_event = {obj["event"]: (prio, obj) for prio, obj in events}
    assert by_event["damond serving"][0] == 6  # info
    assert by_event["configuration warning"][0] == 4  # warning
    assert by_event["configuration reloaded"][1]["changes"] == "committed 0"
    assert by_event["kdamond started"][1]["ops"] == "sim"


def test_console_lines_elsewhere(serve, notify, config_path):
    write_config(config_path, [sim_kdamond()])
    for journal in (None, "1:1"):  # unset, or inherited but naming another stream
        out = _run(serve, notify, config_path, journal=journal)
        assert "damond serving" in out
        for line in out.splitlines():
            assert not line.startswith(("{", "<")), line
            assert re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+ \[\w+\s*\] ", line), line


def test_nothing_is_logged_per_sample(serve, notify, config_path):
    write_config(config_path, [sim_kdamond(sample="1 ms", aggr="10 ms")])
    out = _run(serve, notify, config_path, journal=None, args=("--log-level", "debug"),
               seconds=1.0)
    # about 1000 samples and 100 aggregations happened; the log has a handful of lines
    assert len(out.splitlines()) < 20, out


def test_configure_in_process():
    buf = io.StringIO()
    assert logs.configure("warning", fmt="json", stream=buf) is True
    log = structlog.get_logger("t")
    log.info("hidden")
    log.warning("shown", x=1)
    [line] = buf.getvalue().splitlines()
    assert json.loads(line)["event"] == "shown"  # no prefix: not the journal
    buf2 = io.StringIO()
    assert logs.configure("info", fmt="console", stream=buf2) is False
    log.info("readable", y=2)
    assert "readable" in buf2.getvalue() and "y=2" in buf2.getvalue()
    logs.configure("warning")


def test_journal_stream_detection(tmp_path):
    with open(tmp_path / "f", "w") as f:
        assert logs.journal_stream(f, {"JOURNAL_STREAM": _stream_id(f)})
        assert not logs.journal_stream(f, {"JOURNAL_STREAM": "1:1"})
        assert not logs.journal_stream(f, {"JOURNAL_STREAM": "garbage"})
        assert not logs.journal_stream(f, {})
