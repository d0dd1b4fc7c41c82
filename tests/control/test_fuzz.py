"""A short run of ``bench/fuzz_control.py`` against a real daemon: valid and invalid lines over
many connections answer with the kernel's errnos, never ``ERR EIO``, log no traceback and
leave the daemon alive. ``bench/fuzz_control.py`` with its defaults is the issue's 100,000
lines."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz_control.py"


@pytest.mark.slow
def test_fuzzed_lines_cause_no_internal_error_no_traceback_no_death():
    spec = importlib.util.spec_from_file_location("fuzz_control", BENCH)
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fuzz  # its dataclasses look their module up
    spec.loader.exec_module(fuzz)
    result = fuzz.run(lines=3000, connections=150, parallel=8, seed=7, max_seconds=120,
                      read_timeout=60)
    assert result["replies"] > 1000, result
    assert result["err_eio"] == 0, result["err_eio_examples"]
    assert result["tracebacks"] == 0 and result["internal_errors_logged"] == 0, result
    assert result["deaths"] == 0 and result["exit_status"] == 0, result
