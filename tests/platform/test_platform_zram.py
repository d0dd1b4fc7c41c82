"""zram_swap really adds and removes a swap device."""

from __future__ import annotations

import re

import pytest

from damond.errors import DamonError
from damond.platform.zram import zram_swap


def _swaps() -> dict[str, int]:
    with open("/proc/swaps") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return {r[0]: int(r[2]) * 1024 for r in rows}


def _diskseq(index: int) -> int | None:
    """The kernel's unique number for this instance of zramN (None once removed), so that a
    device someone else hot-adds later under the same name is not mistaken for ours."""
    try:
        with open(f"/sys/block/zram{index}/diskseq") as f:
            return int(f.read())
    except FileNotFoundError:
        return None


def _gone(swap, seq: int | None) -> bool:
    now = _diskseq(swap.index)
    if now is None or now != seq:
        return True  # removed (hot-added) or replaced by someone else's device
    with open(f"/sys/block/zram{swap.index}/disksize") as f:
        return int(f.read()) == 0 and swap.device not in _swaps()


def test_swap_device_of_the_requested_size_comes_and_goes(need):
    need("zram")
    with zram_swap(32 << 20, priority=100) as swap:
        seq = _diskseq(swap.index)
        swaps = _swaps()
        assert swap.device in swaps
        assert 31 << 20 <= swaps[swap.device] <= 32 << 20  # minus the swap header page
        with open(f"/sys/block/zram{swap.index}/disksize") as f:
            assert int(f.read()) == 32 << 20
        assert not _gone(swap, seq)
    assert _gone(swap, seq)
    if swap.hot_added:
        assert _diskseq(swap.index) != seq


def test_torn_down_when_the_body_fails(need):
    need("zram")
    with pytest.raises(RuntimeError), zram_swap(16 << 20) as swap:
        seq = _diskseq(swap.index)
        assert swap.device in _swaps()
        raise RuntimeError("body failed")
    assert _gone(swap, seq)


def test_unknown_algorithm_is_refused_and_cleaned_up(need):
    need("zram")
    with pytest.raises(DamonError) as info, zram_swap(16 << 20, algorithm="no-such-algo"):
        pass
    assert info.value.errno_name == "EINVAL"
    index = int(re.search(r"/zram(\d+)/comp_algorithm", info.value.why).group(1))
    try:  # removed again (hot-added) or at least reset
        with open(f"/sys/block/zram{index}/disksize") as f:
            assert int(f.read()) == 0
    except FileNotFoundError:
        pass
