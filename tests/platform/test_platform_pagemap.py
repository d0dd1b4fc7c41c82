"""/proc/PID/pagemap reads on a live child: coalescing, order, decoding, exit handling."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from damond.errors import DamonError
from damond.platform import pagemap as pm

PAGE = mmap.PAGESIZE


def test_touched_pages_are_present_exclusive_anon(spawn):
    child = spawn(128)
    with pm.Pagemap(child.pid) as p:
        e = p.read(child.page_addrs())
    assert pm.is_present(e).all()
    assert not pm.is_swapped(e).any()
    assert pm.is_exclusive(e).all()
    assert not pm.is_file_or_shared(e).any()
    assert not pm.is_guard(e).any() and not pm.is_uffd_wp(e).any()


def test_pfns_visible_as_root_and_distinct(spawn, need):
    need("pagemap_pfn")
    child = spawn(128)
    with pm.Pagemap(child.pid) as p:
        pfns = pm.pfn(p.read(child.page_addrs()))
    assert (pfns > 0).all()
    assert len(np.unique(pfns)) == child.npages  # private pages: one frame each


def test_input_order_duplicates_and_offsets_match_one_range_read(spawn):
    child = spawn(300)
    rng = np.random.default_rng(1)
    pages = rng.integers(0, child.npages, 1000)
    addrs = (child.addr + pages * PAGE + rng.integers(0, PAGE, 1000)).astype(np.uint64)
    with pm.Pagemap(child.pid) as p:
        whole = p.read_range(child.addr, child.end)
        got = p.read(addrs)
    assert whole.shape == (child.npages,)
    assert np.array_equal(got, whole[pages])


def test_one_pread_per_contiguous_run(spawn, monkeypatch):
    child = spawn(300)
    runs = [(0, 100), (150, 151), (200, 300)]
    pages = np.concatenate([np.arange(a, b) for a, b in runs])
    np.random.default_rng(2).shuffle(pages)
    addrs = (child.addr + pages * PAGE).astype(np.uint64)
    calls = []
    real_preadv, real_pread = os.preadv, os.pread

    def counting_preadv(fd, buffers, offset):
        calls.append(offset)
        return real_preadv(fd, buffers, offset)

    def counting_pread(fd, size, offset):
        calls.append(offset)
        return real_pread(fd, size, offset)

    with pm.Pagemap(child.pid) as p:
        # small batches go through os.pread, large ones through os.preadv: count both
        monkeypatch.setattr(os, "preadv", counting_preadv)
        monkeypatch.setattr(os, "pread", counting_pread)
        exact = p.read(addrs, max_gap=0)
        n_exact = len(calls)
        merged = p.read(addrs, max_gap=49)  # the gaps are 49 and 50 pages
        n_merged = len(calls) - n_exact
        whole = p.read(addrs, max_gap=50)
        monkeypatch.undo()
    assert n_exact == len(runs)
    assert sorted(calls[:n_exact]) == [(child.addr // PAGE + a) * 8 for a, _ in runs]
    assert n_merged == 2 and len(calls) - n_exact - n_merged == 1
    assert np.array_equal(exact, merged) and np.array_equal(exact, whole)
    assert pm.is_present(exact).all()


def test_unmapped_and_beyond_address_space_read_zero(spawn):
    child = spawn(4)
    with pm.Pagemap(child.pid) as p:
        e = p.read(np.array([0, PAGE, 1 << 62, child.addr], dtype=np.uint64))
    assert e[:3].tolist() == [0, 0, 0]
    assert pm.is_present(e[3:]).all()


def test_empty_input():
    with pm.Pagemap() as p:
        assert p.read(np.zeros(0, dtype=np.uint64)).shape == (0,)
        assert p.read_range(PAGE, PAGE).shape == (0,)


def test_exited_process_gives_esrch_even_on_the_open_fd(spawn):
    child = spawn(8)
    p = pm.Pagemap(child.pid)
    try:
        assert pm.is_present(p.read(child.page_addrs())).all()
        child.exit()
        with pytest.raises(DamonError) as info:
            p.read(child.page_addrs())
        assert info.value.errno_name == "ESRCH"
        with pytest.raises(DamonError) as info:
            p.read_range(child.addr, child.end)
        assert info.value.errno_name == "ESRCH"
    finally:
        p.close()
    with pytest.raises(DamonError) as info:
        pm.Pagemap(child.pid)
    assert info.value.errno_name == "ESRCH"


def test_pfns_hidden_without_cap_sys_admin(run_without_caps, need):
    need("pagemap_pfn")
    code = (
        "import mmap, ctypes, numpy as np\n"
        "from damond.platform import pagemap as pm\n"
        "m = mmap.mmap(-1, mmap.PAGESIZE); m[0] = 1\n"
        "a = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
        "e = pm.Pagemap().read(np.array([a], dtype=np.uint64))\n"
        "print(int(pm.is_present(e)[0]), int(pm.pfn(e)[0]))\n"
    )
    res = run_without_caps(code, (21,))  # CAP_SYS_ADMIN
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "0"]


def test_decoders_on_known_bit_patterns():
    present = (1 << 63) | (1 << 56) | 0x1234
    swapped = (1 << 62) | (1 << 55) | (0xABC << 5) | 3
    e = np.array([present, swapped, 0], dtype=np.uint64)
    assert pm.pfn(e).tolist() == [0x1234, 0, 0]
    assert pm.is_present(e).tolist() == [True, False, False]
    assert pm.is_swapped(e).tolist() == [False, True, False]
    assert pm.is_soft_dirty(e).tolist() == [False, True, False]
    assert pm.is_exclusive(e).tolist() == [True, False, False]
    assert pm.swap_type(e).tolist() == [0, 3, 0]
    assert pm.swap_offset(e).tolist() == [0, 0xABC, 0]
