"""page_idle and soft-dirty for real, inside the guest kernel that has them.

Run from the repository root with
``/work/shared/guest-kernel/guest-run -- /work/venv/bin/python -m pytest -m guest tests/platform``.
On a kernel without the facility each test skips with probe()'s reason.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from damond.errors import DamonError
from damond.platform import kpageflags as kf
from damond.platform import pagemap as pm
from damond.platform.page_idle import PageIdleBitmap
from damond.platform.refs import CLEAR_REFS_SOFT_DIRTY, clear_refs

pytestmark = pytest.mark.guest


@pytest.fixture
def bitmap(need):
    need("page_idle")
    need("pagemap_pfn")
    with PageIdleBitmap() as bm:
        yield bm


def _pfns(child) -> np.ndarray:
    with pm.Pagemap(child.pid) as p:
        pfns = pm.pfn(p.read(child.page_addrs()))
    assert (pfns > 0).all()
    return pfns


def _on_lru(pfns: np.ndarray) -> np.ndarray:
    """Pages still in a per-CPU LRU batch cannot take the idle flag yet; leave them out."""
    return kf.has(kf.read_flags(pfns), kf.KPF_LRU)


def test_marked_pages_stay_idle_until_touched(spawn, bitmap):
    child = spawn(1024)
    pfns = _pfns(child)
    lru = _on_lru(pfns)
    assert lru.mean() > 0.9
    bitmap.mark_idle(pfns)
    assert bitmap.is_idle(pfns)[lru].all()
    child.write(0, 256)
    child.read(256, 512)
    idle = bitmap.is_idle(pfns)
    assert not idle[:512].any(), "touched pages must read as accessed"
    assert idle[512:][lru[512:]].all(), "untouched pages must stay idle"
    # reading the bitmap made the kernel's view consistent: kpageflags IDLE agrees
    flags = kf.read_flags(pfns)
    assert np.array_equal(kf.has(flags, kf.KPF_IDLE)[lru], idle[lru])


def test_one_syscall_per_run_of_words(spawn, bitmap, monkeypatch):
    child = spawn(1024)
    pfns = _pfns(child)
    words = np.sort(pfns >> np.uint64(6), kind="stable")  # (quicksort is unreliable under TCG)
    words = words[np.concatenate(([True], words[1:] != words[:-1]))]
    run_lengths = np.diff(np.flatnonzero(np.diff(np.concatenate(([-2], words.astype(np.int64),
                                                                   [-2]))) != 1))
    expected = int(np.sum((run_lengths + 511) // 512))  # sysfs moves at most a page per call
    writes, reads = [], []
    real_pwrite, real_preadv = os.pwrite, os.preadv
    monkeypatch.setattr(os, "pwrite", lambda fd, b, off: writes.append(off) or
                        real_pwrite(fd, b, off))
    monkeypatch.setattr(os, "preadv", lambda fd, b, off: reads.append(off) or
                        real_preadv(fd, b, off))
    bitmap.mark_idle(pfns)
    bitmap.is_idle(pfns)
    monkeypatch.undo()
    assert len(writes) == expected
    assert len(reads) == expected
    assert len(writes) < len(pfns)


def test_raw_words_and_limits(spawn, bitmap):
    child = spawn(64)
    pfns = _pfns(child)
    pfn = int(pfns[_on_lru(pfns)][0])
    word, bit = pfn // 64, 1 << (pfn % 64)
    bitmap.write_words(word, np.array([bit], dtype=np.uint64))
    assert int(bitmap.read_words(word, 1)[0]) & bit
    beyond = np.array([1 << 50], dtype=np.uint64)
    with pytest.raises(DamonError) as info:
        bitmap.mark_idle(beyond)
    assert info.value.errno_name == "ENXIO"
    assert bitmap.is_idle(beyond).tolist() == [False]
    assert bitmap.read_words((1 << 50) // 64, 2).tolist() == [0, 0]


def test_soft_dirty_set_by_writes_not_by_reads(spawn, need):
    need("soft_dirty")
    child = spawn(64)
    clear_refs(child.pid, CLEAR_REFS_SOFT_DIRTY)
    with pm.Pagemap(child.pid) as p:
        assert not pm.is_soft_dirty(p.read(child.page_addrs())).any()
        child.write(0, 16)
        child.read(16, 32)
        sd = pm.is_soft_dirty(p.read(child.page_addrs()))
    assert sd[:16].all()
    assert not sd[16:].any()


def test_gap_merged_writes_and_reads_agree(spawn, bitmap):
    child = spawn(512)
    pfns = _pfns(child)
    lru = _on_lru(pfns)
    bitmap.mark_idle(pfns, max_gap=16)  # zero words fill the gaps: they mark nothing
    assert bitmap.is_idle(pfns, max_gap=4)[lru].all()
    child.write(0, 128)
    idle = bitmap.is_idle(pfns, max_gap=4)
    assert not idle[:128].any()
    assert idle[128:][lru[128:]].all()
