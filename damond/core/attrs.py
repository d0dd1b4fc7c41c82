"""Monitoring attributes: validation and the arithmetic derived from them.

The attributes themselves are ``damond.core.spec.AttrsSpec`` (the user's values); a running context
keeps its own copy. Rules follow ``damon_set_attrs()`` of Linux 6.18; the v6.15 intervals goal is
checked in ``damond.core.build.validate_intervals_goal`` and applied by ``damond.core.intervals``.
"""

from __future__ import annotations

from damond.core.spec import UINT_MAX, AttrsSpec
from damond.errors import DamonError


def validate_attrs(attrs: AttrsSpec) -> None:
    """Raise EINVAL exactly where ``damon_set_attrs()`` does.

    ``sample_us > aggr_us`` is refused since v6.4; ``min_nr_regions < 3`` and
    ``min_nr_regions > max_nr_regions`` since v5.15.
    """
    if attrs.min_nr_regions < 3:
        raise DamonError("EINVAL", f"min_nr_regions {attrs.min_nr_regions} is below 3")
    if attrs.min_nr_regions > attrs.max_nr_regions:
        raise DamonError("EINVAL", f"min_nr_regions {attrs.min_nr_regions} is above "
                         f"max_nr_regions {attrs.max_nr_regions}")
    if attrs.sample_us > attrs.aggr_us:
        raise DamonError("EINVAL", f"sample interval {attrs.sample_us} us is longer than the "
                         f"aggregation interval {attrs.aggr_us} us")


def sample_interval(attrs: AttrsSpec) -> int:
    """The sampling interval as the kernel divides by it: 0 counts as 1 us."""
    return attrs.sample_us or 1


def max_nr_accesses(attrs: AttrsSpec) -> int:
    """``damon_max_nr_accesses()``: the most samples one aggregation can find accessed.

    The kernel divides by ``sample_interval`` unguarded (callers avoid zero); damond treats 0
    as 1 us and never returns 0, so that scores and rescaling cannot divide by zero.
    """
    return max(1, min(attrs.aggr_us // sample_interval(attrs), UINT_MAX))

