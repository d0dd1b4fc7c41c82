"""The sysfs tree model in-process (the end-to-end protocol tests are in tests/control)."""

from __future__ import annotations

import pytest
import trio

from damond.core.spec import (
    UINT_MAX,
    ULONG_MAX,
    AccessPatternSpec,
    ContextSpec,
    SchemeSpec,
    TargetSpec,
)
from damond.errors import DamonError
from damond.ops.registry import OperationsRegistry
from damond.service.daemon import Daemon


@pytest.fixture
async def daemon(nursery):
    d = Daemon(OperationsRegistry(load_entry_points=False), seed=1)
    await nursery.start(d.scheduler.serve)
    yield d
    await d.stop_all()


async def write(d: Daemon, path: str, data: str) -> None:
    await d.vfs.resolve(path).node.write(data)


def read(d: Daemon, path: str) -> str:
    return d.vfs.resolve(path).node.read()


async def errno_of(d: Daemon, path: str, data: str) -> str:
    with pytest.raises(DamonError) as e:
        await write(d, path, data)
    return e.value.errno_name


async def test_defaults_of_fresh_directories(daemon):
    await write(daemon, "kdamonds/nr_kdamonds", "1\n")
    await write(daemon, "kdamonds/0/contexts/nr_contexts", "1\n")
    await write(daemon, "kdamonds/0/contexts/0/schemes/nr_schemes", "1\n")
    c = "kdamonds/0/contexts/0/"
    assert read(daemon, "kdamonds/0/state") == "off\n"
    assert read(daemon, "kdamonds/0/pid") == "-1\n"
    assert read(daemon, c + "operations") == "vaddr\n"
    assert read(daemon, c + "monitoring_attrs/intervals/sample_us") == "5000\n"
    assert read(daemon, c + "monitoring_attrs/intervals/aggr_us") == "100000\n"
    assert read(daemon, c + "monitoring_attrs/intervals/update_us") == "60000000\n"
    assert read(daemon, c + "monitoring_attrs/nr_regions/min") == "10\n"
    assert read(daemon, c + "monitoring_attrs/nr_regions/max") == "1000\n"
    s = c + "schemes/0/"
    assert read(daemon, s + "action") == "stat\n"
    assert read(daemon, s + "access_pattern/sz/max") == "0\n"
    assert read(daemon, s + "watermarks/metric") == "none\n"
    assert read(daemon, s + "stats/qt_exceeds") == "0\n"


async def test_nr_files_recreate_children_and_refuse_huge_counts(daemon):
    await write(daemon, "kdamonds/nr_kdamonds", "1\n")
    await write(daemon, "kdamonds/0/contexts/nr_contexts", "1\n")
    await write(daemon, "kdamonds/0/contexts/0/operations", "sim\n")
    await write(daemon, "kdamonds/nr_kdamonds", "1\n")  # same N again: fresh directories
    assert read(daemon, "kdamonds/0/contexts/nr_contexts") == "0\n"
    assert await errno_of(daemon, "kdamonds/nr_kdamonds", "2000000000\n") == "ENOMEM"
    assert await errno_of(daemon, "kdamonds/nr_kdamonds", "-1\n") == "EINVAL"
    assert await errno_of(daemon, "kdamonds/nr_kdamonds", "4294967296\n") == "ERANGE"
    assert read(daemon, "kdamonds/nr_kdamonds") == "1\n"


async def test_state_errnos_follow_the_kernel(daemon, autojump_clock):
    await write(daemon, "kdamonds/nr_kdamonds", "1\n")
    assert await errno_of(daemon, "kdamonds/0/state", "on\n") == "EINVAL"  # no context
    assert await errno_of(daemon, "kdamonds/0/state", "off\n") == "EINVAL"  # never on
    assert await errno_of(daemon, "kdamonds/0/state", "commit\n") == "EINVAL"  # not running
    assert await errno_of(daemon, "kdamonds/0/state", "update_schemes_stats\n") == "EINVAL"
    assert await errno_of(daemon, "kdamonds/0/state", "On\n") == "EINVAL"  # sysfs_streq
    await write(daemon, "kdamonds/0/contexts/nr_contexts", "1\n")
    await write(daemon, "kdamonds/0/contexts/0/operations", "sim\n")
    await write(daemon, "kdamonds/0/contexts/0/targets/nr_targets", "1\n")
    await write(daemon, "kdamonds/0/state", "on")  # no newline: sysfs_streq accepts it
    assert read(daemon, "kdamonds/0/state") == "on\n"
    assert await errno_of(daemon, "kdamonds/0/state", "on\n") == "EBUSY"
    assert await errno_of(daemon, "kdamonds/nr_kdamonds", "0\n") == "EBUSY"
    await trio.sleep(0.3)
    await write(daemon, "kdamonds/0/state", "off\n")
    assert await errno_of(daemon, "kdamonds/0/state", "off\n") == "EPERM"  # built, stopped


async def test_documentation_spellings_resolve_with_a_note(daemon):
    await write(daemon, "kdamonds/nr", "1\n")
    res = daemon.vfs.resolve("kdamonds/nr")
    assert res.path.endswith("/kdamonds/nr_kdamonds") and res.notes
    with pytest.raises(DamonError) as e:
        daemon.vfs.resolve("kdamonds/nr_kdamon")
    assert e.value.errno_name == "ENOENT" and "nr_kdamonds" in e.value.why


async def test_sysfs_and_debugfs_exclude_each_other(daemon, autojump_clock):
    await write(daemon, "kdamonds/nr_kdamonds", "1\n")
    await write(daemon, "kdamonds/0/contexts/nr_contexts", "1\n")
    await write(daemon, "kdamonds/0/contexts/0/operations", "sim\n")
    await write(daemon, "kdamonds/0/contexts/0/targets/nr_targets", "1\n")
    await write(daemon, "kdamonds/0/state", "on\n")
    # debugfs shows monitoring as on while any kdamond runs (damon_nr_running_ctxs())
    assert read(daemon, "/sys/kernel/debug/damon/monitor_on") == "on\n"
    assert await errno_of(daemon, "/sys/kernel/debug/damon/mk_contexts", "foo\n") == "EBUSY"
    await write(daemon, "kdamonds/0/state", "off\n")
    assert read(daemon, "/sys/kernel/debug/damon/monitor_on") == "off\n"


# -- the whole-tree methods a configuration file uses ----------------------------------------

def _sim_context(nr_schemes: int) -> ContextSpec:
    everything = AccessPatternSpec(max_sz=ULONG_MAX, max_nr_accesses=UINT_MAX, max_age=UINT_MAX)
    return ContextSpec(ops="sim", targets=[TargetSpec()],
                       schemes=[SchemeSpec(pattern=everything) for _ in range(nr_schemes)])


def _stats_shown(d: Daemon, scheme: int) -> int:
    return int(read(d, f"kdamonds/0/contexts/0/schemes/{scheme}/stats/nr_tried"))


async def test_tree_methods_run_the_state_files_code(daemon, autojump_clock):
    tree = daemon.sysfs
    tree.set_context(0, _sim_context(2))  # a new kdamond directory right after the last
    assert read(daemon, "kdamonds/nr_kdamonds") == "1\n"
    assert read(daemon, "kdamonds/0/contexts/0/schemes/nr_schemes") == "2\n"
    with pytest.raises(DamonError) as e:
        await tree.commit_context(0, _sim_context(2))
    assert e.value.errno_name == "EINVAL"  # as writing 'commit' to a stopped kdamond
    await tree.turn_on(0)
    with pytest.raises(DamonError) as e:
        await tree.turn_on(0)
    assert e.value.errno_name == "EBUSY"  # as writing 'on' twice
    await trio.sleep(1)
    await write(daemon, "kdamonds/0/state", "update_schemes_stats\n")
    tried = [_stats_shown(daemon, i) for i in range(2)]
    assert all(n > 0 for n in tried)
    # committed online: the files show the new context, matched schemes keep their stats
    await tree.commit_context(0, _sim_context(3))
    assert read(daemon, "kdamonds/0/contexts/0/schemes/nr_schemes") == "3\n"
    assert [_stats_shown(daemon, i) for i in range(3)] == [*tried, 0]
    assert await tree.truncate(0) == [0]
    assert read(daemon, "kdamonds/nr_kdamonds") == "0\n"
    assert not daemon.scheduler.running


async def test_stop_and_truncate_only_stop_what_runs(daemon, autojump_clock):
    tree = daemon.sysfs
    for i in range(3):
        tree.set_context(i, _sim_context(0))
    await tree.turn_on(1)
    assert await tree.stop(0) is False
    assert await tree.truncate(1) == [1]  # kdamond 2 was not running, 1 was
    assert read(daemon, "kdamonds/nr_kdamonds") == "1\n"
    assert await tree.stop(0) is False
