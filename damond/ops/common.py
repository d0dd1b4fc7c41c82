"""What every operation set shares: the kernel's ``mm/damon/ops-common.c`` and its kin.

The sampling-address pick (``damon_rand()``), the hot and cold scores
(``damon_hot_score()``/``damon_cold_score()``), the score rule of the virtual and physical sets,
and the system's watermark metric. Written once here so that vaddr, paddr, sim and third-party
sets cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from damond.core.attrs import max_nr_accesses
from damond.core.context import Context, Scheme
from damond.core.operations import MAX_SCORE
from damond.core.regions import Regions
from damond.core.spec import AttrsSpec
from damond.platform.meminfo import free_mem_rate
from damond.platform.memstat import goal_metric_value

_MAX_SUBSCORE = 100
_MAX_AGE_IN_LOG = 32


def pick_sampling_addrs(regions: Regions, rng: np.random.Generator) -> np.ndarray:
    """Set and return every region's ``sampling_addr``: uniform in [start, end), as
    ``damon_rand(r->ar.start, r->ar.end)``. Drawing floats and scaling them is several times
    cheaper than integer draws with per-region bounds; the clamp keeps the rare draw that rounds
    up to ``end`` inside the region."""
    regions.sampling_addr = sampling_addrs(regions, rng)
    return regions.sampling_addr


def sampling_addrs(regions: Regions, rng: np.random.Generator) -> np.ndarray:
    """One sampling address per region, as ``pick_sampling_addrs`` picks them, without storing
    them (a batch sampler running beside the event loop must leave the regions alone)."""
    sizes = regions.sizes()
    offsets = (rng.random(len(regions)) * sizes).astype(np.uint64)
    return regions.start + np.minimum(offsets, np.maximum(sizes, 1) - 1)


def hot_scores(nr_accesses: np.ndarray, age: np.ndarray, attrs: AttrsSpec,
               weight_nr_accesses: int, weight_age: int) -> np.ndarray:
    """``damon_hot_score()`` (v6.0+) for many regions, same integer arithmetic: hotness 0..99
    from access frequency and (log-scaled) age.

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
    """``damon_cold_score()`` (``damon_pageout_score()`` in v5.16-5.19): MAX_SCORE - hotness."""
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


def scheme_scores(ctx: Context, regions: Regions, scheme: Scheme) -> np.ndarray:
    """``damon_va_scheme_score()``: ``pageout`` goes coldest first (the cold score under the
    scheme's quota weights); every other action scores MAX_SCORE, i.e. address order."""
    if scheme.action == "pageout":
        q = scheme.spec.quota
        return cold_scores(regions.nr_accesses, regions.age, ctx.attrs, q.weight_nr_accesses,
                           q.weight_age)
    return np.full(len(regions), MAX_SCORE, dtype=np.int64)


def system_wmark_metric(metric: str) -> int | None:
    """A watermark metric as the whole system sees it (``damos_get_wmark_metric_value()``):
    ``free_mem_rate`` from ``/proc/meminfo``; None for a metric the system has no value of."""
    if metric == "free_mem_rate":
        return free_mem_rate()
    return None


def system_goal_metric(goal) -> int | None:
    """A quota goal metric as the whole system sees it (``damos_set_quota_goal_current_value()``
    of Linux 6.18, from ``damond.platform.memstat``); a metric that cannot be read (e.g. a
    missing node) counts as unknown (None), which the core scores as 0."""
    from damond.errors import DamonError

    try:
        return goal_metric_value(goal.metric, nid=goal.spec.nid, path=goal.spec.path)
    except DamonError:
        return None
