"""What the scheme statistics files show: the one rule shared by the sysfs tree and debugfs.

The kernel keeps DAMOS counters per scheme: five since v5.17 (the ones debugfs' ``schemes``
file prints), plus ``sz_ops_filter_passed`` (v6.14) in the sysfs ``stats/`` directory. An
interface shows them for the schemes of one context, matched **by index** with wherever the
numbers come from (the running kdamond's schemes, or what the files showed before a context was
replaced), and shows zeros for a scheme that has no counterpart there: a scheme directory
created by writing ``nr_schemes``, a context loaded from a configuration file, debugfs
``schemes`` that were rewritten since the kdamond ran. Both interfaces ask
:func:`stats_by_index` so that the rule is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The stats debugfs prints, in the order of ``SchemeStats.as_tuple()`` and of its ``schemes``.
SCHEME_STATS = ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds")
#: The files of the sysfs ``stats/`` directory of Linux 6.18, in ``sysfs-schemes.c`` order.
SYSFS_SCHEME_STATS = ("nr_tried", "sz_tried", "nr_applied", "sz_applied",
                      "sz_ops_filter_passed", "qt_exceeds")
#: What a scheme that has no counters yet shows.
ZERO_STATS: tuple[int, ...] = (0,) * len(SCHEME_STATS)
ZERO_SYSFS_STATS: tuple[int, ...] = (0,) * len(SYSFS_SCHEME_STATS)

StatsRow = tuple[int, ...]


def stats_by_index(nr: int, *sources: Sequence[StatsRow],
                   zero: StatsRow = ZERO_STATS) -> list[StatsRow]:
    """The counters of ``nr`` schemes: scheme *i* gets entry *i* of the first source that has
    one (sources in order of preference), ``zero`` when none has."""
    out: list[StatsRow] = []
    for i in range(nr):
        out.append(next((src[i] for src in sources if i < len(src)), zero))
    return out


def sysfs_stats_row(stats: Any) -> StatsRow:
    """A running scheme's counters (``damond.core.context.SchemeStats``) in the order of
    :data:`SYSFS_SCHEME_STATS`."""
    return tuple(int(getattr(stats, name)) for name in SYSFS_SCHEME_STATS)
