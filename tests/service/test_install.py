"""contrib/systemd: the install script, the units (``systemd-analyze verify``) and the example
configuration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from damond.service.config import check_config, parse_config
from damond.service.daemon import Daemon
from tests.control.conftest import DAMOND

CONTRIB = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "systemd")
INSTALL = os.path.join(CONTRIB, "install")


def _install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([INSTALL, *args], capture_output=True, text=True, timeout=30)


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


def test_dry_run_changes_nothing(tmp_path):
    out = _install("--prefix", str(tmp_path), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert _files(tmp_path) == []
    assert f"would install: {tmp_path}/etc/systemd/system/damond.service" in out.stdout
    assert "systemctl enable --now damond.socket damond.service" in out.stdout


def test_install_into_a_prefix(tmp_path):
    out = _install("--prefix", str(tmp_path), "--damond", DAMOND)
    assert out.returncode == 0, out.stderr
    assert _files(tmp_path) == ["etc/damond/damond.yaml", "etc/systemd/system/damond.service",
                                "etc/systemd/system/damond.socket"]
    service = (tmp_path / "etc/systemd/system/damond.service").read_text()
    assert f"ExecStart={DAMOND} serve --config /etc/damond/damond.yaml" in service
    for line in ("systemctl daemon-reload", "systemctl enable --now damond.socket"):
        assert line in out.stdout
    # a second run keeps the administrator's configuration
    conf = tmp_path / "etc/damond/damond.yaml"
    conf.write_text("kdamonds: []  # mine\n")
    out = _install("--prefix", str(tmp_path), "--damond", DAMOND)
    assert out.returncode == 0 and "kept" in out.stdout
    assert conf.read_text() == "kdamonds: []  # mine\n"


def test_bad_arguments():
    assert _install("--bogus").returncode == 2
    assert _install("--damond", "relative/damond", "--dry-run").returncode == 2
    assert "--prefix DIR" in _install("--help").stdout


def _unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    with open(os.path.join(CONTRIB, name)) as f:
        for line in f:
            if "=" in line and not line.startswith(("#", "[")):
                key, value = line.rstrip("\n").split("=", 1)
                values.setdefault(key, []).append(value)
    return values


def test_units_say_what_the_daemon_does():
    service = _unit("damond.service")
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["RuntimeDirectory"] == ["damond"]
    assert service["RuntimeDirectoryPreserve"] == ["yes"]  # the .socket's socket lives there
    assert re.fullmatch(r"\d+s", service["WatchdogSec"][0])
    assert set(service["CapabilityBoundingSet"][0].split()) == {
        "CAP_SYS_ADMIN", "CAP_SYS_NICE", "CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE"}
    assert int(service["Nice"][0]) < 0 and int(service["CPUWeight"][0]) > 100
    socket_unit = _unit("damond.socket")
    assert socket_unit["ListenStream"] == ["/run/damond/damond.sock"]
    assert socket_unit["SocketMode"] == ["0660"]
    assert socket_unit["FileDescriptorName"] == ["control"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path):
    assert _install("--prefix", str(tmp_path), "--damond", DAMOND).returncode == 0
    units = tmp_path / "etc/systemd/system"
    out = subprocess.run(["systemd-analyze", "verify", "damond.service", "damond.socket"],
                         cwd=units, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # verify returns 0 on unknown keys and bad values too: it must have said nothing
    assert out.stdout == out.stderr == "", out.stderr


def test_example_configuration_and_its_commented_examples_load():
    with open(os.path.join(CONTRIB, "damond.yaml")) as f:
        text = f.read()
    config = parse_config(text, path="damond.yaml")
    assert config.specs == [] and config.warnings == []
    assert config.settings.log_level == "info"
    check_config(Daemon(), config)
    # each commented "kdamonds:" block, uncommented, is a valid configuration too
    blocks = re.findall(r"^# (kdamonds:\n(?:# [ -].*\n)*)", text, flags=re.M)
    assert len(blocks) == 2
    for block in blocks:
        uncommented = re.sub(r"^# ?", "", block, flags=re.M)
        [spec] = parse_config(uncommented).specs
        assert spec.contexts[0].ops in ("paddr", "vaddr")
