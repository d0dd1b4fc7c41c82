"""The sysfs tree model in-process (the end-to-end protocol tests are in tests/control)."""

from __future__ import annotations

import pytest
import trio

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
