"""The real damo (``pip install damo==3.4.3``), run by the tests that compare damond with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

DAMO = shutil.which("damo", path=str(Path(sys.executable).parent)) or shutil.which("damo")
needs_damo = pytest.mark.skipif(DAMO is None, reason="damo (pip install damo==3.4.3) not found")


def run_python_or_damo(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """damo caches probes of the live kernel in ~/.damo.sysinfo: give it a throw-away HOME."""
    with tempfile.TemporaryDirectory(prefix="damo-home-") as home:
        return subprocess.run(argv, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HOME": home}, **kwargs)


def run_damo(*args: str) -> subprocess.CompletedProcess:
    return run_python_or_damo([DAMO, *args])
