"""``schemes/N/{filters,core_filters,ops_filters}/``: DAMOS filters (Linux 6.18
``mm/damon/sysfs-schemes.c``).

The three directories hold the same files; they differ only in the types their ``type`` file
accepts. ``core_filters`` takes the types the core handles (``addr``, ``target``),
``ops_filters`` those the operation set handles (``anon``, ``active``, ``memcg``, ``young``,
``hugepage_size``, ``unmapped``), and ``filters`` (the 6.3 directory) takes all of them; a type
the directory does not take is refused with EINVAL when written, as
``damos_sysfs_scheme_filter_valid_type()`` does. A fresh filter is ``anon``, not matching, not
allowing (``kzalloc``), whatever its directory.
"""

from __future__ import annotations

from collections.abc import Sequence

from damond.core.spec import CORE_FILTER_TYPES, FILTER_TYPES, OPS_FILTER_TYPES, FilterSpec
from damond.interfaces.kparse import kstrtoint
from damond.interfaces.sysfs.files import attr, flag, keyword, numbered_dir, text
from damond.interfaces.vfs import Dir

#: directory name -> the types its filters may take
FILTER_DIRS: dict[str, Sequence[str]] = {
    "filters": FILTER_TYPES,
    "core_filters": CORE_FILTER_TYPES,
    "ops_filters": OPS_FILTER_TYPES,
}


def filters_dir(name: str, filters: list[FilterSpec]) -> Dir:
    allowed_types = FILTER_DIRS[name]

    def allowed(word: str) -> str | None:
        if word in allowed_types:
            return None
        return f"{word!r} filters do not belong in {name}/ (it takes {', '.join(allowed_types)})"

    def filter_dir(f: FilterSpec) -> Dir:
        return Dir(lambda: {
            "type": keyword(f, "type", lambda: FILTER_TYPES, "DAMOS filter types", allowed),
            "matching": flag(f, "matching"),
            "allow": flag(f, "allow"),
            "memcg_path": text(f, "memcg_path"),
            "addr_start": attr(f, "addr_start"),
            "addr_end": attr(f, "addr_end"),
            "min": attr(f, "sz_min"),
            "max": attr(f, "sz_max"),
            "damon_target_idx": attr(f, "target_idx", kstrtoint),
        })

    return numbered_dir("nr_filters", filters, FilterSpec, filter_dir)
