"""``contexts/N/targets/``: targets and their initial regions (Linux 6.18 ``mm/damon/sysfs.c``).

``pid_target`` answers EINVAL for any parse failure (the kernel replaces ``kstrtoint``'s errno);
``start``/``end`` are ``kstrtoul`` with its errno. Region order and overlap are checked only when
a context is built (``on``/``commit``)."""

from __future__ import annotations

from damond.core.spec import RegionSpec, TargetSpec
from damond.interfaces.kparse import kstrtoint
from damond.interfaces.sysfs.files import aliases, attr, numbered_dir
from damond.interfaces.vfs import Dir


def targets_dir(targets: list[TargetSpec]) -> Dir:
    return numbered_dir("nr_targets", targets, TargetSpec, _target_dir)


def _target_dir(t: TargetSpec) -> Dir:
    regions = numbered_dir("nr_regions", t.regions, RegionSpec, _region_dir)
    return Dir(lambda: {"pid_target": attr(t, "pid", kstrtoint, errno="EINVAL"),
                        "regions": regions},
               aliases(None, {"pid": "pid_target"}))


def _region_dir(r: RegionSpec) -> Dir:
    return Dir(lambda: {"start": attr(r, "start"), "end": attr(r, "end")})
