"""``contexts/N/monitoring_attrs/``: the intervals (with the v6.15 ``intervals_goal``) and the
bounds of the number of regions (Linux 6.18 ``mm/damon/sysfs.c``: every file ``kstrtoul``,
its errno returned as is; no cross-field check before ``on``/``commit``)."""

from __future__ import annotations

from damond.core.spec import AttrsSpec
from damond.interfaces.sysfs.files import attr
from damond.interfaces.vfs import Dir


def monitoring_attrs_dir(a: AttrsSpec) -> Dir:
    g = a.intervals_goal
    goal = Dir(lambda: {"access_bp": attr(g, "access_bp"), "aggrs": attr(g, "aggrs"),
                        "min_sample_us": attr(g, "min_sample_us"),
                        "max_sample_us": attr(g, "max_sample_us")})
    intervals = Dir(lambda: {"sample_us": attr(a, "sample_us"), "aggr_us": attr(a, "aggr_us"),
                             "update_us": attr(a, "update_us"), "intervals_goal": goal})
    nr_regions = Dir(lambda: {"min": attr(a, "min_nr_regions"),
                              "max": attr(a, "max_nr_regions")})
    return Dir(lambda: {"intervals": intervals, "nr_regions": nr_regions})
