"""The whole Linux 6.18 sysfs tree through the protocol: populated with one of everything
(one kdamond, context, target, region, scheme, one filter in each filter directory, one goal,
one dest, tried regions after an update), ``ls`` lists exactly the entries of
``sysfs-tree-6.18.txt`` (indices normalised), and every file is readable, with the read-only
ones (0400 on the kernel) refusing writes with EACCES."""

from __future__ import annotations

import time

from tests.control.conftest import Conn
from tests.interfaces.sysfs_tree import READ_ONLY_6_18, normalise, reference_entries

ADMIN = "/sys/kernel/mm/damon/admin"
S = "kdamonds/0/contexts/0/schemes/0"


def walk(c: Conn, rel: str = "") -> list[tuple[str, bool]]:
    """(path relative to the admin directory, is a directory) of every entry, through ``ls``."""
    out = []
    for name in c.ok(f"ls {ADMIN}/{rel}" if rel else f"ls {ADMIN}"):
        is_dir = name.endswith("/")
        path = f"{rel}/{name.rstrip('/')}" if rel else name.rstrip("/")
        out.append((path, is_dir))
        if is_dir:
            out += walk(c, path)
    return out


def test_a_populated_tree_lists_exactly_the_6_18_entries(conn):
    c = conn
    c.ok("echo 1 > kdamonds/nr_kdamonds")
    c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
    c.ok("echo sim > kdamonds/0/contexts/0/operations")
    c.ok("echo 1 > kdamonds/0/contexts/0/targets/nr_targets")
    c.ok("echo 1 > kdamonds/0/contexts/0/schemes/nr_schemes")
    for f, v in (("sz/max", (1 << 64) - 1), ("nr_accesses/max", 4294967295),
                 ("age/max", 4294967295)):
        c.ok(f"echo {v} > {S}/access_pattern/{f}")
    c.ok("echo on > kdamonds/0/state")
    time.sleep(0.5)
    c.ok("echo update_schemes_tried_regions > kdamonds/0/state")
    assert int(c.value(f"{S}/tried_regions/total_bytes")) > 0
    # the rest of one-of-everything: files only, the running kdamond never sees them
    for nr in ("targets/0/regions/nr_regions", "schemes/0/filters/nr_filters",
               "schemes/0/core_filters/nr_filters", "schemes/0/ops_filters/nr_filters",
               "schemes/0/quotas/goals/nr_goals", "schemes/0/dests/nr_dests"):
        c.ok(f"echo 1 > kdamonds/0/contexts/0/{nr}")
    entries = walk(c)
    assert sorted({normalise(p) for p, _ in entries}) == reference_entries()
    for path, is_dir in entries:
        if is_dir:
            continue
        _, status = c.cmd(f"cat {path}")
        assert status == "OK", (path, status)
        if normalise(path) in READ_ONLY_6_18:
            assert c.err(f"echo 1 > {path}") == "EACCES", path
    c.ok("echo off > kdamonds/0/state")
