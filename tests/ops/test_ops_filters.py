"""DAMOS ops filters per page (``damond.ops.filters``) against the kernel's rule of
``damos_pa_filter_out()`` (Linux 6.18): first matching filter decides, default follows the last
filter's ``allow``, a core filter's allow skips them all."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from damond.core.spec import FilterSpec
from damond.errors import DamonError
from damond.ops.filters import memcg_inode, pages_passing
from damond.platform.kpageflags import KPF_ACTIVE, KPF_ANON, KPF_MMAP

ANON, ACTIVE, MMAP = 1 << KPF_ANON, 1 << KPF_ACTIVE, 1 << KPF_MMAP


def reference(filters, flag, size, core_allowed):
    """One page, written the kernel's way."""
    if core_allowed:
        return True
    for f in filters:
        cond = {"anon": bool(flag & ANON), "active": bool(flag & ACTIVE),
                "unmapped": not flag & MMAP,
                "hugepage_size": f.sz_min <= size <= f.sz_max}[f.type]
        if cond == f.matching:
            return f.allow
    return not filters[-1].allow if filters else True


filter_st = st.builds(FilterSpec, type=st.sampled_from(["anon", "active", "unmapped",
                                                        "hugepage_size"]),
                      matching=st.booleans(), allow=st.booleans(),
                      sz_min=st.sampled_from([0, 4096, 1 << 21]),
                      sz_max=st.sampled_from([4096, 1 << 21, 1 << 30]))


@given(st.lists(filter_st, max_size=4),
       st.lists(st.tuples(st.sampled_from([0, ANON, ACTIVE, MMAP, ANON | MMAP,
                                           ANON | ACTIVE | MMAP]),
                          st.sampled_from([4096, 1 << 21])), min_size=1, max_size=20),
       st.booleans())
def test_pages_passing_follows_the_kernels_rule(filters, pages, core_allowed):
    flags = np.array([p[0] for p in pages], dtype=np.uint64)
    sizes = np.array([p[1] for p in pages], dtype=np.int64)
    got = pages_passing(filters, core_allowed=core_allowed, flags=flags, folio_sizes=sizes)
    assert got.tolist() == [reference(filters, int(f), int(s), core_allowed)
                            for f, s in zip(flags, sizes, strict=True)]


def test_memcg_filter_compares_kpagecgroup_inodes(tmp_path):
    (tmp_path / "job").mkdir()
    ino = memcg_inode("/job", root=str(tmp_path))
    f = FilterSpec(type="memcg", memcg_path="/job", matching=True, allow=False)
    flags = np.zeros(3, dtype=np.uint64)
    cg = np.array([ino, 0, ino], dtype=np.uint64)
    got = pages_passing([f], core_allowed=False, flags=flags, folio_sizes=np.full(3, 4096),
                        cgroups=cg, memcg_inodes={"/job": ino})
    assert got.tolist() == [False, True, False]
    with pytest.raises(DamonError) as e:
        memcg_inode("/nope", root=str(tmp_path))
    assert e.value.errno_name == "EINVAL"
