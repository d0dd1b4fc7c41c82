"""Exact vectors for vaddr's region algorithms (``damond.plugins.vaddr``), most from the
kernel's KUnit suite (mm/damon/vaddr-test.h, tests/vaddr-kunit.h) with DAMON_MIN_REGION = 1."""

from __future__ import annotations

import pytest

from damond.errors import DamonError
from damond.plugins.vaddr import evenly_split, init_regions_from_ranges, three_regions


def test_three_regions_in_vmas():  # damon_test_three_regions_in_vmas
    vmas = [(10, 20), (20, 25), (200, 210), (210, 220), (300, 305), (307, 330)]
    assert three_regions(vmas, 1) == [(10, 25), (200, 220), (300, 330)]


def test_three_regions_needs_two_gaps():
    with pytest.raises(DamonError) as e:
        three_regions([(0, 10), (10, 20), (30, 40)], 1)
    assert e.value.errno_name == "EINVAL"


@pytest.mark.parametrize("start,end,n", [(0, 100, 10), (5, 59, 5), (4, 6, 1), (0, 3, 2)])
def test_evenly_split(start, end, n):  # damon_test_split_evenly_succ
    pieces = evenly_split(start, end, n, 1)
    width = (end - start) // n
    assert len(pieces) == n
    for i, (s, e) in enumerate(pieces):
        assert s == start + i * width
        assert e == (end if i == n - 1 else start + (i + 1) * width)


@pytest.mark.parametrize("start,end,n", [(0, 100, 0), (5, 6, 2)])
def test_evenly_split_fails(start, end, n):
    with pytest.raises(DamonError):
        evenly_split(start, end, n, 1)


def test_init_regions_from_three():
    # sz = 300 / 10 = 30: [0,100) -> 3 pieces, [200,260) -> 2, [400,540) -> 4
    out = init_regions_from_ranges([(0, 100), (200, 260), (400, 540)], 10, 1)
    assert [len(out.select((out.start >= a) & (out.end <= b)))
            for a, b in [(0, 100), (200, 260), (400, 540)]] == [3, 2, 4]
    assert out.total_size() == 300
