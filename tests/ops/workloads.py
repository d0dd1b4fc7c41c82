"""Start ``damond.tools.workload`` processes for tests and stop them afterwards."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time


@contextlib.contextmanager
def workload(*args: str):
    """Yield (process, info) for ``python -m damond.tools.workload ARGS``; killed on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "damond.tools.workload", *args],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"workload {args} exited with {proc.wait()}")
        info = json.loads(line)
        time.sleep(0.3)  # let the first pass over the memory finish settling
        yield proc, info
    finally:
        proc.kill()
        proc.wait()


def resident_pages(pid: int, start: int, end: int) -> int:
    """Pages of [start, end) present in RAM, from the process's pagemap."""
    from damond.platform.pagemap import Pagemap, is_present

    with Pagemap(pid) as pm:
        return int(is_present(pm.read_range(start, end)).sum())
