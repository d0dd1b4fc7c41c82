"""A third-party operation set is found through the ``damond.operations`` entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "damond-ops-stripes"

PROBE = r"""
import json, trio, trio.testing
from damond import api
from damond.ops.registry import OperationsRegistry
reg = OperationsRegistry()
rec = {r.name: (r.distribution, r.version, r.builtin) for r in reg.records()}
ctx = api.context("stripes", targets=[api.target(size=64 << 20, stripe=8 << 20)])
events = api.run(ctx, 2.001, seed=3, clock=trio.testing.MockClock(autojump_threshold=0))
last = events[-1].targets[0]
print(json.dumps({"avail": reg.avail_operations(), "records": rec,
                  "start": last.start.tolist(), "end": last.end.tolist(),
                  "nr": last.nr_accesses.tolist()}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                   check=True, capture_output=True)
    return target


def _probe(site: Path, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(site), **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_entry_point_plugin_is_discovered_and_monitors(installed):
    result = _probe(installed)
    assert "stripes" in result["avail"]
    assert result["avail"].index("sim") < result["avail"].index("stripes")
    dist, version, builtin = result["records"]["stripes"]
    assert (dist, version, builtin) == ("damond-ops-stripes", "0.1.0", False)
    assert result["records"]["sim"][2] is True
    # hot stripes (even) show accesses, cold ones none: regions settle on stripe edges
    base, stripe = 0x4000_0000, 8 << 20
    for s, e, nr in zip(result["start"], result["end"], result["nr"], strict=True):
        first, last = (s - base) // stripe, (e - 1 - base) // stripe
        if first == last:
            assert nr == (20 if first % 2 == 0 else 0)


def test_autoload_can_be_disabled(installed):
    result = _probe_avail(installed, DAMOND_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "stripes" not in result
    result = _probe_avail(installed, DAMOND_DISABLED_PLUGINS="stripes")
    assert "stripes" not in result


def _probe_avail(site: Path, **env) -> list:
    code = ("from damond.ops.registry import OperationsRegistry;"
            "print(OperationsRegistry().avail_operations())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(site), **env})
    return out.stdout
