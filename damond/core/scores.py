"""Hotness and coldness scores used to prioritise regions under a quota.

``damon_hot_score()``/``damon_cold_score()`` of ``mm/damon/ops-common.c`` (v6.0+; v5.16-5.19
called the cold score ``damon_pageout_score``), computed for many regions at once with the same
integer arithmetic.
"""

from __future__ import annotations

import numpy as np

from damond.core.attrs import max_nr_accesses
from damond.core.spec import AttrsSpec

#: DAMOS_MAX_SCORE: scores range over 0..99.
MAX_SCORE = 99
_MAX_SUBSCORE = 100
_MAX_AGE_IN_LOG = 32


def hot_scores(nr_accesses: np.ndarray, age: np.ndarray, attrs: AttrsSpec,
               weight_nr_accesses: int, weight_age: int) -> np.ndarray:
    """Hotness 0..99 from access frequency and (log-scaled) age.

    Age counts against hotness when the region saw no access at all: an old idle region is
    colder than a young idle one. Both weights 0 give hotness 0.
    """
    nr = np.asarray(nr_accesses, dtype=np.int64)
    freq_subscore = nr * _MAX_SUBSCORE // max_nr_accesses(attrs)
    age_in_sec = np.asarray(age, dtype=np.int64) * attrs.aggr_us // 1_000_000
    # number of right shifts until zero, capped at 32 == min(bit_length, 32)
    age_in_log = np.minimum(_bit_length(age_in_sec), _MAX_AGE_IN_LOG)
    age_in_log = np.where(freq_subscore == 0, -age_in_log, age_in_log) + _MAX_AGE_IN_LOG
    age_subscore = age_in_log * _MAX_SUBSCORE // _MAX_AGE_IN_LOG // 2
    hotness = weight_nr_accesses * freq_subscore + weight_age * age_subscore
    if weight_nr_accesses + weight_age:
        hotness = hotness // (weight_nr_accesses + weight_age)
    else:
        hotness = np.zeros_like(freq_subscore)
    return hotness * MAX_SCORE // _MAX_SUBSCORE


def cold_scores(nr_accesses: np.ndarray, age: np.ndarray, attrs: AttrsSpec,
                weight_nr_accesses: int, weight_age: int) -> np.ndarray:
    return MAX_SCORE - hot_scores(nr_accesses, age, attrs, weight_nr_accesses, weight_age)


def _bit_length(values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.shape, dtype=np.int64)
    v = values.copy()
    while True:
        nz = v > 0
        if not nz.any():
            return out
        out += nz
        v >>= 1
