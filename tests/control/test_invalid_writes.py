"""Every file of the sysfs tree and of debugfs refuses a bad write with the kernel's errno
(damon-semantics.md §5, §6), and a refused write changes nothing and harms nothing.

The files are found by walking the live tree, so a file added later without an entry in
the tables below fails the test instead of going unchecked.
"""

from __future__ import annotations

from tests.control.conftest import dump, walk_files

ADMIN = "/sys/kernel/mm/damon/admin"
DEBUGFS = "/sys/kernel/debug/damon"
TOO_BIG_UL = str(1 << 64)  # kstrtoul: -ERANGE
TOO_BIG_INT = str(1 << 31)  # kstrtoint: -ERANGE
TOO_BIG_UINT = str(1 << 32)  # kstrtouint: -ERANGE

# kstrtoul fields: garbage EINVAL, negative EINVAL (unsigned), overflow ERANGE
UL = [("abc", "EINVAL"), ("-1", "EINVAL"), (" 5", "EINVAL"), (TOO_BIG_UL, "ERANGE")]
# kstrtoint fields (nr_* also refuse negatives)
NR = [("abc", "EINVAL"), ("-1", "EINVAL"), (TOO_BIG_INT, "ERANGE")]
UINT = [("x1", "EINVAL"), (TOO_BIG_UINT, "ERANGE")]
READ_ONLY = [("1", "EACCES")]

SYSFS_RULES = {
    "nr_kdamonds": NR, "nr_contexts": [*NR, ("2", "EINVAL")], "nr_targets": NR,
    "nr_regions": NR, "nr_schemes": NR, "nr_filters": NR, "nr_goals": NR, "nr_dests": NR,
    "state": [("bogus", "EINVAL"), ("off", "EINVAL"), ("commit", "EINVAL"),
              ("update_schemes_stats", "EINVAL"), ("update_schemes_effective_quotas", "EINVAL"),
              ("update_tuned_intervals", "EINVAL"), ("update_schemes_tried_regions", "EINVAL"),
              ("update_schemes_tried_bytes", "EINVAL"), ("commit_schemes_quota_goals", "EINVAL"),
              ("pause", "EINVAL")],
    "pid": READ_ONLY, "avail_operations": READ_ONLY, "refresh_ms": UINT,
    "operations": [("bogus", "EINVAL"), ("vaddr ", "EINVAL")],
    "addr_unit": [*UL, ("0", "EINVAL")],
    "sample_us": UL, "aggr_us": UL, "update_us": UL, "min": UL, "max": UL,
    "access_bp": UL, "aggrs": UL, "min_sample_us": UL, "max_sample_us": UL,
    # 6.18 pid_target_store() and the quota stores answer EINVAL for any parse failure
    "pid_target": [("abc", "EINVAL"), (TOO_BIG_INT, "EINVAL")],
    "start": UL, "end": UL,
    "action": [("bogus", "EINVAL"), ("collapse", "EINVAL")],  # collapse: after 6.18
    "apply_interval_us": UL, "target_nid": [("abc", "EINVAL"), (TOO_BIG_INT, "ERANGE")],
    "ms": [(v, "EINVAL") for v, _ in UL], "bytes": [(v, "EINVAL") for v, _ in UL],
    "reset_interval_ms": [(v, "EINVAL") for v, _ in UL], "effective_bytes": READ_ONLY,
    "sz_permil": UINT, "nr_accesses_permil": UINT, "age_permil": UINT,
    "target_metric": [("bogus", "EINVAL"), ("active_mem_bp", "EINVAL")],  # after 6.18
    "target_value": UL, "current_value": UL, "nid": [("abc", "EINVAL"), (TOO_BIG_INT, "ERANGE")],
    "metric": [("bogus", "EINVAL")], "interval_us": UL, "high": UL, "mid": UL, "low": UL,
    "type": [("bogus", "EINVAL")], "matching": [("x", "EINVAL"), ("", "EINVAL")],
    "allow": [("x", "EINVAL"), ("o", "EINVAL")], "addr_start": UL, "addr_end": UL,
    "damon_target_idx": [("abc", "EINVAL"), (TOO_BIG_INT, "ERANGE")],
    "id": UINT, "weight": UINT,
    "nr_tried": READ_ONLY, "sz_tried": READ_ONLY, "nr_applied": READ_ONLY,
    "sz_applied": READ_ONLY, "sz_ops_filter_passed": READ_ONLY, "qt_exceeds": READ_ONLY,
    "total_bytes": READ_ONLY,
}
#: String files (``strscpy``): every write succeeds (the kernel fails only on ENOMEM)
ACCEPTS_ANY = {"memcg_path", "path"}

DEBUGFS_RULES = {
    # fewer than 5 numbers; min_nr_regions < 3; min > max
    "attrs": [("1 2 3", "EINVAL"), ("5000 100000 1000000 2 1000", "EINVAL"),
              ("1 2 3 5 4", "EINVAL")],
    # a pid nobody has
    "target_ids": [("999999999", "EINVAL")],
    # start >= end (and there is no target 0)
    "init_regions": [("0 100 50", "EINVAL"), ("0 1 100", "EINVAL")],
    # selftest vector: min_sz > max_sz and high < mid; unknown action
    "schemes": [("2 1 2 1 10 1 3 10 1 1 1 1 1 1 1 1 2 3", "EINVAL"),
                ("1 2 3 4 5 6 9 0 0 0 1 2 3 1 100 3 2 1", "EINVAL")],
    "monitor_on": [("bogus", "EINVAL"), ("off", "EPERM"), ("", "EINVAL")],
    "kdamond_pid": [("1", "EINVAL")],
    "mk_contexts": [("", "EINVAL"), ("attrs", "EEXIST"), ("ctx1", "EEXIST")],
    "rm_contexts": [("", "EINVAL"), ("nosuch", "ENOENT"), ("attrs", "EINVAL")],
}


def _populate(c) -> None:
    """One of everything, so that every file of the 6.18 tree exists (but tried regions)."""
    c.ok("echo 1 > kdamonds/nr_kdamonds")
    c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
    for nr in ("targets/nr_targets", "targets/0/regions/nr_regions", "schemes/nr_schemes",
               "schemes/0/filters/nr_filters", "schemes/0/core_filters/nr_filters",
               "schemes/0/ops_filters/nr_filters", "schemes/0/quotas/goals/nr_goals",
               "schemes/0/dests/nr_dests"):
        c.ok(f"echo 1 > kdamonds/0/contexts/0/{nr}")
    c.ok(f"echo ctx1 > {DEBUGFS}/mk_contexts")


def test_every_file_refuses_bad_writes_with_the_kernels_errno(damond):
    with damond.conn() as c:
        _populate(c)
        before = dump(c)
        sysfs_files = walk_files(c, ADMIN)
        debugfs_files = walk_files(c, DEBUGFS)
        # the 6.18 tree with one of each (no tried region: nothing ran)
        assert len(sysfs_files) == 90
        checked = set()
        for path in sysfs_files + debugfs_files:
            name = path.rsplit("/", 1)[1]
            if path.startswith(ADMIN) and name in ACCEPTS_ANY:
                continue
            rules = (SYSFS_RULES if path.startswith(ADMIN) else DEBUGFS_RULES).get(name)
            assert rules, f"no invalid write known for {path}"
            for value, errno in rules:
                data, status = c.cmd(f"echo '{value}' > {path}")
                assert status.startswith(f"ERR {errno} {path}: "), (path, value, status)
                checked.add(name)
        assert checked == set(SYSFS_RULES) | set(DEBUGFS_RULES)
        assert dump(c) == before
    assert damond.alive()


def test_nr_contexts_and_state_errnos_in_context(damond):
    with damond.conn() as c:
        c.ok("echo 1 > kdamonds/nr_kdamonds")
        # on without a context: EINVAL; with a bad config: EINVAL, and nothing starts
        assert c.err("echo on > kdamonds/0/state") == "EINVAL"
        c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
        c.ok("echo sim > kdamonds/0/contexts/0/operations")
        c.ok("echo 2 > kdamonds/0/contexts/0/monitoring_attrs/nr_regions/min")
        assert c.err("echo on > kdamonds/0/state") == "EINVAL"
        assert c.value("kdamonds/0/state") == "off"
        c.ok("echo 10 > kdamonds/0/contexts/0/monitoring_attrs/nr_regions/min")
        c.ok("echo 1 > kdamonds/0/contexts/0/targets/nr_targets")
        c.ok("echo on > kdamonds/0/state")
        # while running: on is EBUSY, nr_kdamonds is EBUSY, debugfs cannot start (EBUSY)
        assert c.err("echo on > kdamonds/0/state") == "EBUSY"
        assert c.err("echo 2 > kdamonds/nr_kdamonds") == "EBUSY"
        c.ok(f"echo paddr > {DEBUGFS}/target_ids")
        assert c.err(f"echo on > {DEBUGFS}/monitor_on") == "EBUSY"
        c.ok("echo off > kdamonds/0/state")
        assert c.err("echo off > kdamonds/0/state") == "EPERM"
    assert damond.alive()


def test_writes_to_directories_and_missing_files(conn):
    assert conn.err("echo 1 > kdamonds") == "EISDIR"
    assert conn.err("cat kdamonds") == "EISDIR"
    assert conn.err("echo 1 > kdamonds/nosuch") == "ENOENT"
    assert conn.err("echo 1 > ''") == "ENOENT"
    assert conn.err("cat /etc/passwd") == "ENOENT"
    assert conn.err("cd kdamonds/nr_kdamonds") == "ENOTDIR"
    _, status = conn.cmd("echo 1 > kdamonds/nr_kdamondz")
    assert status == ("ERR ENOENT kdamonds/nr_kdamondz: no 'nr_kdamondz' in "
                      "/sys/kernel/mm/damon/admin/kdamonds (did you mean 'nr_kdamonds'?)")
