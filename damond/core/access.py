"""Access counting: ``nr_accesses``, the pseudo moving sum, aggregation reset and rescaling.

Matches Linux v6.7+ (``damon_update_region_access_rate()``, ``kdamond_reset_aggregated()``,
``damon_update_monitoring_results()``), done for all regions of a target at once.
"""

from __future__ import annotations

import numpy as np

from damond.core.attrs import max_nr_accesses
from damond.core.regions import Regions
from damond.core.spec import AttrsSpec

_UINT_MASK = 0xFFFF_FFFF


def moving_sum(mvsum: int, nomvsum: int, len_window: int, new_value: int) -> int:
    """``damon_moving_sum()``: drop the average past value, add the new one (unsigned int)."""
    return (mvsum - nomvsum // len_window + new_value) & _UINT_MASK


def window_length(attrs: AttrsSpec) -> int:
    """The moving sum's window: one aggregation's samples (1 when sampling interval is 0)."""
    return max_nr_accesses(attrs) if attrs.sample_us else 1


def update_access_rates(regions: Regions, accessed: np.ndarray, len_window: int) -> None:
    """Count one sample's access check results into the regions, in place.

    ``accessed`` is a boolean array, one entry per region. The basis-point moving sum wraps
    like the kernel's unsigned int; ``nr_accesses`` cannot grow past the window length within
    one aggregation, so it needs no wrap.
    """
    bp = regions.nr_accesses_bp
    bp -= (regions.last_nr_accesses * 10000) // len_window
    acc = accessed.astype(np.int64)
    bp += acc * 10000
    np.bitwise_and(bp, _UINT_MASK, out=bp)
    regions.nr_accesses += acc


def update_access_rates_n(regions: Regions, counts: np.ndarray, nr_samples: int,
                          len_window: int) -> None:
    """``nr_samples`` samples of ``update_access_rates`` at once, ``counts`` being how many of
    them found each region accessed. Exact: within an aggregation every sample subtracts the
    same term (the last aggregation's count over the window), and the wrap to unsigned int is
    arithmetic modulo 2**32, which commutes with the sums."""
    bp = regions.nr_accesses_bp
    bp -= nr_samples * ((regions.last_nr_accesses * 10000) // len_window)
    counts = counts.astype(np.int64)
    bp += counts * 10000
    np.bitwise_and(bp, _UINT_MASK, out=bp)
    regions.nr_accesses += counts


def reset_aggregated(regions: Regions) -> int:
    """``kdamond_reset_aggregated()`` after the trace event was taken: fix a moving sum that
    drifted from ``nr_accesses * 10000`` (the kernel warns once and fixes it; windows that do
    not divide 10000 evenly drift by design), remember the count and zero it.

    Returns how many regions needed the fix, for diagnostics.
    """
    expected = regions.nr_accesses * 10000
    drifted = regions.nr_accesses_bp != expected
    nr_fixed = int(np.count_nonzero(drifted))
    if nr_fixed:
        regions.nr_accesses_bp = expected
    regions.last_nr_accesses = regions.nr_accesses
    regions.nr_accesses = np.zeros(len(regions), dtype=np.int64)
    return nr_fixed


def nr_accesses_for_new_attrs(nr: np.ndarray | int, old: AttrsSpec, new: AttrsSpec):
    """Convert a count between attributes through basis points (integer steps, as v6.3+)."""
    bp = nr * 10000 // max_nr_accesses(old)
    return bp * max_nr_accesses(new) // 10000


def age_for_new_attrs(age, old: AttrsSpec, new: AttrsSpec):
    return age * old.aggr_us // new.aggr_us


def update_monitoring_results(regions: Regions, old: AttrsSpec, new: AttrsSpec,
                              aggregating: bool) -> None:
    """``damon_update_monitoring_results()`` for one target, in place: keep ``nr_accesses`` and
    ``age`` meaning the same access frequency and duration under new intervals.

    In the middle of an aggregation (``aggregating``) the partial count is dropped and the
    state made as if the aggregation had just been reset. Skipped when any sampling or
    aggregation interval is zero, as the kernel does.
    """
    if not (old.sample_us and old.aggr_us and new.sample_us and new.aggr_us):
        return
    if not aggregating:
        regions.nr_accesses = nr_accesses_for_new_attrs(regions.nr_accesses, old, new)
        regions.nr_accesses_bp = regions.nr_accesses * 10000
    else:
        regions.last_nr_accesses = nr_accesses_for_new_attrs(regions.last_nr_accesses, old, new)
        regions.nr_accesses_bp = regions.last_nr_accesses * 10000
        regions.nr_accesses = np.zeros(len(regions), dtype=np.int64)
    regions.age = age_for_new_attrs(regions.age, old, new)
