"""The one rule for what scheme stats files show: matched by index, zeros otherwise."""

from __future__ import annotations

from damond.interfaces.scheme_stats import SCHEME_STATS, ZERO_STATS, stats_by_index


def test_zeros_without_a_source():
    assert len(ZERO_STATS) == len(SCHEME_STATS) and not any(ZERO_STATS)
    assert stats_by_index(2) == [ZERO_STATS, ZERO_STATS]
    assert stats_by_index(0, [(1, 2, 3, 4, 5)]) == []


def test_first_source_with_the_index_wins():
    live = [(1, 1, 1, 1, 1)]
    shown = [(2, 2, 2, 2, 2), (3, 3, 3, 3, 3)]
    assert stats_by_index(3, live, shown) == [live[0], shown[1], ZERO_STATS]
    assert stats_by_index(1, shown, live) == [shown[0]]
