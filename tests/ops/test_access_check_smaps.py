"""The ``smaps`` check turns each VMA's share of referenced bytes into counts by error
diffusion, one answer per VMA per sample (``SmapsCheck``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damond.ops.access_check import SmapsCheck
from damond.platform.refs import SmapsEntry

MiB = 1 << 20


def vma(start: int, size: int, referenced: int) -> SmapsEntry:
    return SmapsEntry(start=start, end=start + size, size=size, rss=size, referenced=referenced,
                      anonymous=size, swap=0, anon_huge_pages=0, path="")


@pytest.mark.parametrize(("share", "samples", "expected"),
                         [(0.5, 20, 10), (0.3, 20, 6), (0.0, 20, 0), (1.0, 20, 20),
                          (0.05, 20, 1), (0.25, 40, 10)])
def test_a_share_becomes_exactly_that_many_samples(share, samples, expected):
    size = 100 * MiB
    check = SmapsCheck("self", np.random.default_rng(3))
    fired = [bool(check._diffuse([vma(0, size, round(size * share))])[0])
             for _ in range(samples)]
    # the starting carry is below one sample: floor(carry + samples * share) == expected
    assert sum(fired) == expected
    if share == 0.5:  # spread evenly, not bunched
        assert all(a != b for a, b in zip(fired, fired[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8), st.integers(1, 60),
       st.integers(0, 2**32 - 1))
def test_counts_never_stray_a_sample_from_the_shares(shares, samples, seed):
    size = 64 * MiB
    vmas = [vma(k * size, size, round(size * s)) for k, s in enumerate(shares)]
    check = SmapsCheck("self", np.random.default_rng(seed))
    counts = np.zeros(len(vmas), dtype=int)
    for _ in range(samples):
        counts += check._diffuse(vmas)
    exact = np.array([round(size * s) / size for s in shares]) * samples
    assert np.all(np.abs(counts - exact) < 1 + 1e-9)


def test_vmas_gone_are_forgotten_and_new_ones_start_fresh():
    check = SmapsCheck("self", np.random.default_rng(0))
    check._diffuse([vma(0, MiB, MiB // 2), vma(MiB, MiB, 0)])
    check._diffuse([vma(0, MiB, MiB // 2)])
    assert set(check._carry) == {0}


#: maps 8 MiB as one mapping, prints its start, then on each input line touches the first
#: half only and answers
HALF = r"""
import mmap, sys, ctypes
size = 8 << 20
m = mmap.mmap(-1, size)
for off in range(0, size, 4096):
    m[off] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
for _line in sys.stdin:
    for off in range(0, size // 2, 4096):
        m[off] = (m[off] + 1) & 0xff
    print("done", flush=True)
"""


def test_every_page_of_one_mapping_gets_the_same_answer():
    """smaps cannot tell the touched half of a mapping from the other: both halves must count
    alike, sample by sample (so that DAMON's merge joins them)."""
    proc = subprocess.Popen([sys.executable, "-c", HALF], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        start = int(proc.stdout.readline())
        addrs = np.array([start + off for off in range(0, 8 * MiB, MiB)], dtype=np.uint64)
        check = SmapsCheck(str(proc.pid), np.random.default_rng(1))
        fired = 0
        for _ in range(20):
            check.prepare(addrs)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "done"
            got = check.check(addrs)
            assert got.all() or not got.any(), got
            fired += int(got[0])
        # at least the first sample sees the touched half (later ones may see less: clear_refs
        # 1 does not flush the TLB, so pages the CPU still has cached are not marked again)
        assert fired >= 1
    finally:
        proc.kill()
        proc.wait()
