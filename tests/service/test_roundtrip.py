"""``dump`` prints the running configuration in damo's format, and it loads back to the same
configuration: in damond (``--config``, ``reload``) and in the real damo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from damond.formats.damo.kdamonds import load_kdamonds
from damond.service.config import parse_config
from tests.control.conftest import DAMOND, child_pids  # noqa: F401 - fixture
from tests.service.conftest import base_env, sim_kdamond, write_config

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures",
                       "damo_kdamonds_vaddr_pageout.json")
DAMO = os.path.join(os.path.dirname(DAMOND), "damo")


def _ctl(d, *args: str) -> str:
    proc = subprocess.run([DAMOND, "ctl", "--socket", d.socket_path, *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _damo(*args: str) -> subprocess.CompletedProcess:
    """The real damo; it caches a kernel probe in $HOME, so give it a throw-away one."""
    home = tempfile.mkdtemp(prefix="damo-home-")
    try:
        return subprocess.run([DAMO, *args], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, HOME=home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_damo_fixture_loads_dumps_and_reloads_to_the_same_configuration(
        serve, notify, tmp_path, child_pids):  # noqa: F811
    with open(FIXTURE) as f:
        doc = json.load(f)
    doc["kdamonds"][0]["contexts"][0]["targets"][0]["pid"] = child_pids[0]
    config = tmp_path / "damond.json"
    config.write_text(json.dumps(doc, indent=4))
    expected, _ = load_kdamonds(doc)

    d = serve(config=str(config), env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    with d.conn() as c:
        assert c.value("kdamonds/0/state") == "on"
        assert c.value("kdamonds/0/contexts/0/targets/0/pid_target") == str(child_pids[0])
    dumped = _ctl(d, "dump")
    assert load_kdamonds(dumped)[0] == expected
    # the dump is damo's own text: byte for byte what damo printed (pid aside)
    assert json.loads(dumped) == doc

    # the dump, used as the configuration, reloads to the same configuration
    config.write_text(dumped)
    mark = len(notify.messages)
    d.signal(signal.SIGHUP)
    _, ready = notify.wait_for(lambda f: "READY" in f, after=mark)
    assert "reloaded: committed 0" in ready["STATUS"], ready
    assert _ctl(d, "dump") == dumped
    assert load_kdamonds(_ctl(d, "dump", "--format", "yaml"))[0] == expected


@pytest.mark.skipif(not os.access(DAMO, os.X_OK), reason="damo is not installed")
def test_dump_loads_in_damo(serve, notify, config_path, tmp_path):
    write_config(config_path, [sim_kdamond(aggr="200 ms", min_regions=15),
                               sim_kdamond(seed=2)])
    d = serve(config=config_path, env=base_env(NOTIFY_SOCKET=notify.address))
    notify.wait_for(lambda f: "READY" in f)
    with open(config_path) as f:
        expected = parse_config(f.read()).specs
    as_yaml = tmp_path / "dump.yaml"
    as_yaml.write_text(_ctl(d, "dump", "--format", "yaml"))
    as_json = tmp_path / "dump.json"
    as_json.write_text(_ctl(d, "dump"))
    assert parse_config(as_yaml.read_text()).specs == expected
    assert parse_config(as_json.read_text()).specs == expected
    # damo 3.4.3 reads JSON with --kdamonds and YAML as the positional FILE.yaml
    # (its --kdamonds option parses JSON only)
    for args in (["--kdamonds", str(as_json)], [str(as_yaml)]):
        out = _damo("args", "damon", *args, "--format", "json")
        assert out.returncode == 0, out.stderr
        # damo keeps everything but damond's own sim workload arguments (a key it ignores)
        assert _without_ops_args(load_kdamonds(out.stdout)[0]) == _without_ops_args(expected)


def _without_ops_args(specs):
    for kd in specs:
        for ctx in kd.contexts:
            for t in ctx.targets:
                t.ops_args = {}
    return specs
