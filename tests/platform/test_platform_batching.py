"""The run-splitting helpers every batched reader and writer relies on."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damond.platform import read_u64_at, u64_runs, unique_inverse
from damond.platform.page_idle import _words_and_bits

indices = st.lists(st.integers(0, 5000), max_size=300)


@given(indices)
def test_unique_inverse_matches_a_plain_python_model(values):
    arr = np.array(values, dtype=np.uint64)
    unique, inverse = unique_inverse(arr)
    assert unique.tolist() == sorted(set(values))
    assert unique[inverse].tolist() == values


@given(indices)
def test_runs_are_maximal_consecutive_stretches(values):
    unique, inverse, starts, ends = u64_runs(np.array(values, dtype=np.uint64))
    runs = [unique[s:e].tolist() for s, e in zip(starts, ends, strict=True)]
    assert sum(runs, []) == sorted(set(values))
    for run in runs:
        assert run == list(range(run[0], run[0] + len(run)))
    for a, b in zip(runs, runs[1:], strict=False):
        assert b[0] > a[-1] + 1


@given(st.lists(st.integers(0, 1 << 20), max_size=300))
def test_idle_words_or_together_every_pfn_bit(pfns):
    words, bits = _words_and_bits(np.array(pfns, dtype=np.uint64))
    model: dict[int, int] = {}
    for p in pfns:
        model[p // 64] = model.get(p // 64, 0) | 1 << (p % 64)
    assert dict(zip(words.tolist(), bits.tolist(), strict=True)) == model
    assert words.tolist() == sorted(model)


@pytest.fixture(scope="module")
def u64_file(tmp_path_factory):
    """A plain file of 5000 u64 values ``7 * i + 3``: the reader must work on any fd."""
    path = tmp_path_factory.mktemp("u64") / "table"
    path.write_bytes((np.arange(5000, dtype=np.uint64) * np.uint64(7) + np.uint64(3)).tobytes())
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


@settings(max_examples=60)
@given(st.lists(st.integers(0, 5200), max_size=200), st.sampled_from([0, 1, 7, 100, 10_000]))
def test_read_u64_at_any_gap_gives_the_same_values(u64_file, values, gap):
    values_arr = np.array(values, dtype=np.uint64)
    got_values, got = read_u64_at(u64_file, values_arr, gap)
    inside = values_arr < 5000
    assert got.tolist() == inside.tolist()
    expect = np.where(inside, values_arr * np.uint64(7) + np.uint64(3), np.uint64(0))
    assert got_values.tolist() == expect.tolist()
