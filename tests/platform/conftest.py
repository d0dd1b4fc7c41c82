"""Real processes for the platform tests: a child that maps, touches and reports memory.

Nothing here imitates a kernel file: the tests look at a live child through /proc.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
import textwrap

import pytest

from damond.platform.probe import probe

PAGE = mmap.PAGESIZE
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The child maps ``npages`` private anonymous pages (no THP unless asked), writes each page, then
# prints its buffer address and obeys commands on stdin, answering "ok" to each (each command
# first flushes the child's TLB, see flush_tlb):
#   write A B   write one byte in each page of [A, B)
#   read A B    read one byte of each page of [A, B)
#   fill        write varied (compressible but not same-filled) data to every page
#   exit        quit
CHILD = textwrap.dedent(
    """
    import mmap, ctypes, sys
    PAGE = mmap.PAGESIZE
    n, huge = int(sys.argv[1]), sys.argv[2] == "huge"
    align = 512 * PAGE if huge else PAGE
    m = mmap.mmap(-1, n * PAGE + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    off = -base % align
    m.madvise(mmap.MADV_HUGEPAGE if huge else mmap.MADV_NOHUGEPAGE)
    for i in range(n):
        m[off + i * PAGE] = 1
    spare = mmap.mmap(-1, 64 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)

    def flush_tlb():
        # Zapping 64 present pages makes the kernel flush this mm's whole TLB (range above
        # tlb_single_page_flush_ceiling). x86 does not flush when Accessed bits are cleared,
        # so without this a cached translation would hide the next access to a page.
        for i in range(64):
            spare[i * PAGE] = 1
        spare.madvise(mmap.MADV_DONTNEED)

    print(base + off, flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        flush_tlb()
        if cmd == "write":
            for i in range(int(args[0]), int(args[1])):
                m[off + i * PAGE] = 2
        elif cmd == "read":
            sum(m[off + i * PAGE] for i in range(int(args[0]), int(args[1])))
        elif cmd == "fill":
            pat = bytes(range(256)) * (PAGE // 256)
            for i in range(n):
                m[off + i * PAGE: off + (i + 1) * PAGE] = pat[i % 7:] + pat[:i % 7]
        elif cmd == "exit":
            break
        print("ok", flush=True)
    """
)


class Child:
    """A live process with ``npages`` touched anonymous pages at ``addr``."""

    def __init__(self, npages: int, huge: bool = False) -> None:
        self.npages = npages
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(npages), "huge" if huge else "small"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.pid = self.proc.pid
        self.addr = int(self.proc.stdout.readline())
        self.end = self.addr + npages * PAGE

    def _do(self, *cmd: object) -> None:
        self.proc.stdin.write(" ".join(map(str, cmd)) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def write(self, first: int, last: int) -> None:
        self._do("write", first, last)

    def read(self, first: int, last: int) -> None:
        self._do("read", first, last)

    def fill(self) -> None:
        self._do("fill")

    def page_addrs(self):
        import numpy as np

        return self.addr + PAGE * np.arange(self.npages, dtype=np.uint64)

    def exit(self) -> None:
        """Make the child exit and reap it."""
        if self.proc.poll() is None:
            self.proc.stdin.write("exit\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


@pytest.fixture
def spawn():
    """``spawn(npages, huge=False) -> Child``; every child is killed at teardown."""
    children: list[Child] = []

    def make(npages: int, huge: bool = False) -> Child:
        child = Child(npages, huge)
        children.append(child)
        return child

    yield make
    for child in children:
        child.kill()


def _need(name: str) -> None:
    facility = probe()[name]
    if not facility.available:
        pytest.skip(f"{name} unavailable: {facility.reason}")


@pytest.fixture
def need():
    """``need(name)`` skips the calling test with probe()'s reason when facility ``name`` is
    unavailable on this kernel or to this process."""
    return _need


PR_CAPBSET_DROP = 24


def _run_without_caps(code: str, caps: tuple[int, ...]) -> subprocess.CompletedProcess:
    """Run ``python -c code`` as the same (root) user but with ``caps`` removed from the
    bounding set, so the child starts without them: how an unprivileged daemon would run."""

    def drop() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in caps:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-c", code], preexec_fn=drop, capture_output=True,
                          text=True, timeout=60, check=False, env=env)


@pytest.fixture
def run_without_caps():
    """``run_without_caps(code, caps)``: run ``python -c code`` as root minus ``caps``."""
    return _run_without_caps
