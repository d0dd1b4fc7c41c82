"""/proc/kpageflags for the frames behind a live child's pages."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from damond.platform import kpageflags as kf
from damond.platform import pagemap as pm
from damond.platform.iomem import system_ram_ranges
from damond.platform.refs import read_smaps


def _pfns(child) -> np.ndarray:
    with pm.Pagemap(child.pid) as p:
        return pm.pfn(p.read(child.page_addrs()))


@pytest.fixture
def needs(need):
    need("kpageflags")
    need("pagemap_pfn")


def test_anon_pages_have_anon_mmap_flags(spawn, needs):
    child = spawn(256)
    flags = kf.read_flags(_pfns(child))
    assert kf.has(flags, kf.KPF_ANON).all()
    assert kf.has(flags, kf.KPF_MMAP).all()
    assert kf.has(flags, kf.KPF_SWAPBACKED).all()
    assert not kf.is_thp(flags).any() and not kf.is_hugetlb(flags).any()
    assert not kf.has(flags, kf.KPF_SLAB).any() and not kf.has(flags, kf.KPF_BUDDY).any()
    # pages still in a per-CPU LRU batch are not yet flagged LRU; most must be
    assert kf.has(flags, kf.KPF_LRU).mean() > 0.8
    assert "ANON" in kf.flag_names(int(flags[0]))


def test_small_page_folio_hint(spawn, needs):
    child = spawn(4)
    pfn = int(_pfns(child)[0])
    assert kf.folio_size_hint(pfn) == (pfn, 1)


def test_thp_detected_with_head_and_size(spawn, need, needs):
    need("thp")
    child = spawn(512, huge=True)
    vma = next(e for e in read_smaps(child.pid) if e.start <= child.addr < e.end)
    if vma.anon_huge_pages < 512 * 4096:
        pytest.skip("the kernel did not back the aligned 2 MiB area with a THP (fragmentation)")
    pfns = _pfns(child)
    flags = kf.read_flags(pfns)
    assert kf.is_thp(flags).all()
    assert kf.has(flags[:1], kf.KPF_COMPOUND_HEAD).all()
    assert kf.has(flags[1:], kf.KPF_COMPOUND_TAIL).all()
    head, size = kf.folio_size_hint(int(pfns[300]))
    assert (head, size) == (int(pfns[0]), 512)
    assert head % 512 == 0


def test_pfn_beyond_ram_reads_zero(needs):
    last = max(end for _, end in system_ram_ranges()) // 4096
    flags = kf.read_flags(np.array([last + (1 << 30)], dtype=np.uint64))
    assert flags.tolist() == [0]


def _memcg_dir_inodes(pid: int) -> set[int]:
    """Inodes of the directories that may be ``pid``'s memory cgroup (v1 memory or v2)."""
    mounts = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            _, where, fstype, opts, *_ = line.split()
            if fstype == "cgroup2":
                mounts["v2"] = where
            elif fstype == "cgroup" and "memory" in opts.split(","):
                mounts["memory"] = where
    out = set()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            key = "v2" if controllers == "" else ("memory" if "memory" in controllers else None)
            if key in mounts:
                with contextlib.suppress(OSError):
                    out.add(os.stat(mounts[key] + path).st_ino)
    return out


def test_counts_and_cgroups_for_private_pages(spawn, needs):
    child = spawn(16)
    pfns = _pfns(child)
    assert (kf.read_counts(pfns) == 1).all()
    if not os.path.exists(kf.KPAGECGROUP_PATH):
        pytest.skip("/proc/kpagecgroup absent: kernel without CONFIG_MEMCG")
    cg = kf.read_cgroups(pfns)
    assert len(set(cg.tolist())) == 1
    assert int(cg[0]) in _memcg_dir_inodes(child.pid)
