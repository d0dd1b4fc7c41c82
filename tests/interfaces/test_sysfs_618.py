"""The Linux 6.18 entries of the sysfs tree in-process: every entry and its mode, the parsing
of the files added after v5.19, and the state keywords that copy a running kdamond's values
into the files (the end-to-end protocol tests are in tests/control)."""

from __future__ import annotations

import pytest
import trio

from damond.errors import DamonError
from damond.interfaces.vfs import Node
from damond.ops.registry import OperationsRegistry
from damond.service.daemon import Daemon
from tests.interfaces.sysfs_tree import READ_ONLY_6_18, normalise, reference_entries

S = "kdamonds/0/contexts/0/schemes/0/"


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


def walk(node: Node, prefix: str = "") -> dict[str, Node]:
    out: dict[str, Node] = {}
    for name, child in node.entries().items():
        path = f"{prefix}{name}"
        out[path] = child
        if child.is_dir():
            out.update(walk(child, path + "/"))
    return out


async def populate(d: Daemon) -> None:
    for nr in ("kdamonds/nr_kdamonds", "kdamonds/0/contexts/nr_contexts",
               "kdamonds/0/contexts/0/targets/nr_targets",
               "kdamonds/0/contexts/0/targets/0/regions/nr_regions",
               "kdamonds/0/contexts/0/schemes/nr_schemes", S + "filters/nr_filters",
               S + "core_filters/nr_filters", S + "ops_filters/nr_filters",
               S + "quotas/goals/nr_goals", S + "dests/nr_dests"):
        await write(d, nr, "1\n")


async def test_every_entry_but_tried_regions_exists_with_the_kernels_mode(daemon):
    await populate(daemon)
    entries = walk(daemon.sysfs.root)
    listed = sorted({normalise(p) for p in entries})
    expected = [e for e in reference_entries() if not e.startswith(S.replace("0", "N")
                                                                     + "tried_regions/N")]
    assert listed == expected
    for path, node in entries.items():
        mode = 0o755 if node.is_dir() else (0o400 if normalise(path) in READ_ONLY_6_18
                                              else 0o600)
        assert node.mode == mode, path


async def test_nr_files_make_directories_appear_and_vanish(daemon):
    await populate(daemon)
    for d in ("filters", "core_filters", "ops_filters"):
        await write(daemon, S + f"{d}/nr_filters", "2\n")
        assert {"0", "1", "nr_filters"} == set(daemon.vfs.listdir(S + d) and
                                                 dict(daemon.vfs.listdir(S + d)))
        await write(daemon, S + f"{d}/nr_filters", "0\n")
        assert [n for n, _ in daemon.vfs.listdir(S + d)] == ["nr_filters"]
    await write(daemon, S + "dests/nr_dests", "3\n")
    assert read(daemon, S + "dests/2/weight") == "0\n"
    await write(daemon, S + "quotas/goals/nr_goals", "0\n")
    with pytest.raises(DamonError):
        daemon.vfs.resolve(S + "quotas/goals/0")


async def test_fresh_6_18_defaults(daemon):
    await populate(daemon)
    c = "kdamonds/0/contexts/0/"
    assert read(daemon, "kdamonds/0/refresh_ms") == "0\n"
    assert read(daemon, c + "addr_unit") == "1\n"
    for f in ("access_bp", "aggrs", "min_sample_us", "max_sample_us"):
        assert read(daemon, c + f"monitoring_attrs/intervals/intervals_goal/{f}") == "0\n"
    assert read(daemon, S + "target_nid") == "-1\n"  # NUMA_NO_NODE
    assert read(daemon, S + "apply_interval_us") == "0\n"
    assert read(daemon, S + "quotas/effective_bytes") == "0\n"
    assert read(daemon, S + "stats/sz_ops_filter_passed") == "0\n"
    assert read(daemon, S + "tried_regions/total_bytes") == "0\n"
    for d in ("filters", "core_filters", "ops_filters"):
        f = S + d + "/0/"
        assert [read(daemon, f + n) for n in ("type", "matching", "allow", "memcg_path")] == [
            "anon\n", "N\n", "N\n", "\n"]  # kzalloc: type 0, whatever the directory
    g = S + "quotas/goals/0/"
    assert [read(daemon, g + n) for n in ("target_metric", "target_value", "nid", "path")] == [
        "user_input\n", "0\n", "0\n", "\n"]


async def test_filter_types_per_directory(daemon):
    await populate(daemon)
    for d, accepted, refused in (
            ("filters", ("anon", "active", "memcg", "young", "hugepage_size", "unmapped",
                         "addr", "target"), ()),
            ("core_filters", ("addr", "target"), ("anon", "memcg", "young")),
            ("ops_filters", ("anon", "active", "memcg", "young", "hugepage_size", "unmapped"),
             ("addr", "target"))):
        for t in accepted:
            await write(daemon, S + f"{d}/0/type", t + "\n")
            assert read(daemon, S + f"{d}/0/type") == t + "\n"
        for t in refused:
            assert await errno_of(daemon, S + f"{d}/0/type", t + "\n") == "EINVAL"
        assert await errno_of(daemon, S + f"{d}/0/type", "Anon\n") == "EINVAL"


async def test_kstrtobool_strscpy_and_odd_errnos(daemon):
    await populate(daemon)
    f = S + "filters/0/"
    for text, shown in (("Y\n", "Y\n"), ("off\n", "N\n"), ("1", "Y\n"), ("false", "N\n"),
                        ("on", "Y\n")):
        await write(daemon, f + "matching", text)
        assert read(daemon, f + "matching") == shown
    assert await errno_of(daemon, f + "allow", "maybe\n") == "EINVAL"
    assert await errno_of(daemon, f + "allow", "o\n") == "EINVAL"
    # strscpy keeps up to a NUL; the newline echo wrote is dropped (what sysfs_streq ignores)
    await write(daemon, f + "memcg_path", "/a/b\n")
    assert read(daemon, f + "memcg_path") == "/a/b\n"
    assert daemon.sysfs.kdamonds[0].contexts[0].spec.schemes[0].filters[0].memcg_path == "/a/b"
    await write(daemon, S + "quotas/goals/0/path", "/w\0junk")
    assert read(daemon, S + "quotas/goals/0/path") == "/w\n"
    # the quota stores and pid_target turn every parse error into EINVAL, others keep ERANGE
    assert await errno_of(daemon, S + "quotas/bytes", str(1 << 64)) == "EINVAL"
    assert await errno_of(daemon, "kdamonds/0/contexts/0/targets/0/pid_target",
                          str(1 << 31)) == "EINVAL"
    assert await errno_of(daemon, S + "target_nid", str(1 << 31)) == "ERANGE"
    assert await errno_of(daemon, S + "dests/0/id", str(1 << 32)) == "ERANGE"
    assert await errno_of(daemon, "kdamonds/0/refresh_ms", str(1 << 32)) == "ERANGE"
    assert await errno_of(daemon, "kdamonds/0/contexts/0/addr_unit", "0\n") == "EINVAL"
    assert read(daemon, "kdamonds/0/contexts/0/addr_unit") == "1\n"
    await write(daemon, "kdamonds/0/contexts/0/addr_unit", "0x1000\n")
    assert read(daemon, "kdamonds/0/contexts/0/addr_unit") == "4096\n"
    # 6.18's keyword tables: actions of 6.11, no goal metric newer than 6.18 (node_memcg_*
    # came in 6.19, [in]active_mem_bp in 7.0)
    await write(daemon, S + "action", "migrate_cold\n")
    await write(daemon, S + "quotas/goals/0/target_metric", "node_mem_free_bp\n")
    for later in ("node_memcg_used_bp", "node_memcg_free_bp", "active_mem_bp"):
        assert await errno_of(daemon, S + "quotas/goals/0/target_metric",
                              later + "\n") == "EINVAL"
    assert read(daemon, S + "quotas/goals/0/target_metric") == "node_mem_free_bp\n"
    assert await errno_of(daemon, S + "action", "collapse\n") == "EINVAL"


async def _start_sim(d: Daemon, **files: str) -> None:
    await write(d, "kdamonds/nr_kdamonds", "1\n")
    await write(d, "kdamonds/0/contexts/nr_contexts", "1\n")
    await write(d, "kdamonds/0/contexts/0/operations", "sim\n")
    await write(d, "kdamonds/0/contexts/0/targets/nr_targets", "1\n")
    await write(d, "kdamonds/0/contexts/0/schemes/nr_schemes", "1\n")
    for f, v in (("sz/max", str((1 << 64) - 1)), ("nr_accesses/max", "4294967295"),
                 ("age/max", "4294967295")):
        await write(d, S + "access_pattern/" + f, v)
    for path, value in files.items():
        await write(d, path.replace("__", "/"), value)
    await write(d, "kdamonds/0/state", "on\n")


async def test_effective_quotas_and_tuned_intervals_are_copied_on_request(
        daemon, autojump_clock):
    await _start_sim(daemon, **{S + "quotas__bytes": "1048576\n",
                                S + "quotas__reset_interval_ms": "100\n"})
    await trio.sleep(1)
    assert read(daemon, S + "quotas/effective_bytes") == "0\n"  # not updated yet
    await write(daemon, "kdamonds/0/state", "update_schemes_effective_quotas\n")
    kd = daemon.sysfs.kdamonds[0].kdamond
    assert read(daemon, S + "quotas/effective_bytes") == f"{kd.ctx.schemes[0].quota.esz}\n"
    assert kd.ctx.schemes[0].quota.esz == 1048576
    # the user's values are overwritten by the running ones (equal here: no intervals goal)
    await write(daemon, "kdamonds/0/contexts/0/monitoring_attrs/intervals/sample_us", "7\n")
    await write(daemon, "kdamonds/0/state", "update_tuned_intervals\n")
    assert read(daemon, "kdamonds/0/contexts/0/monitoring_attrs/intervals/sample_us") == (
        f"{kd.ctx.attrs.sample_us}\n")
    await write(daemon, "kdamonds/0/state", "off\n")
    for kw in ("update_schemes_effective_quotas", "update_tuned_intervals"):
        assert await errno_of(daemon, "kdamonds/0/state", kw + "\n") == "EINVAL"


async def test_refresh_ms_updates_the_files_periodically(daemon, autojump_clock):
    await _start_sim(daemon, **{"kdamonds/0/refresh_ms": "200\n"})
    await trio.sleep(0.1)
    assert read(daemon, S + "stats/nr_tried") == "0\n"  # first refresh after 200 ms
    await trio.sleep(0.5)
    first = int(read(daemon, S + "stats/nr_tried"))
    assert first > 0
    await trio.sleep(1)
    second = int(read(daemon, S + "stats/nr_tried"))
    assert second > first
    await write(daemon, "kdamonds/0/refresh_ms", "0\n")  # refreshing pauses
    await trio.sleep(0.05)
    paused = read(daemon, S + "stats/nr_tried")
    await trio.sleep(1)
    assert read(daemon, S + "stats/nr_tried") == paused
    await write(daemon, "kdamonds/0/refresh_ms", "100\n")  # its deadline passed: at once
    await trio.sleep(0.05)
    assert int(read(daemon, S + "stats/nr_tried")) > int(paused)
    await write(daemon, "kdamonds/0/state", "off\n")
    stopped = read(daemon, S + "stats/nr_tried")
    await trio.sleep(1)
    assert read(daemon, S + "stats/nr_tried") == stopped  # kept after the kdamond stopped


async def test_tried_regions_appear_on_update_and_vanish_on_clear(daemon, autojump_clock):
    await _start_sim(daemon)
    t = S + "tried_regions/"
    assert [n for n, _ in daemon.vfs.listdir(t)] == ["total_bytes"]
    await trio.sleep(0.5)
    await write(daemon, "kdamonds/0/state", "update_schemes_tried_regions\n")
    names = [n for n, _ in daemon.vfs.listdir(t)]
    nr = len(names) - 1
    assert nr > 0 and names[1:] == [str(i) for i in range(nr)]
    regions = [(int(read(daemon, t + f"{i}/start")), int(read(daemon, t + f"{i}/end")))
               for i in range(nr)]
    assert all(s < e for s, e in regions) and regions == sorted(regions)
    assert int(read(daemon, t + "total_bytes")) == sum(e - s for s, e in regions)
    for i in range(nr):  # read-only numbers (0400): nr_accesses of at most aggr/sample
        assert 0 <= int(read(daemon, t + f"{i}/nr_accesses")) <= 20
        assert int(read(daemon, t + f"{i}/age")) >= 0
        assert await errno_of(daemon, t + f"{i}/start", "1\n") == "EACCES"
    await write(daemon, "kdamonds/0/state", "update_schemes_tried_bytes\n")
    assert [n for n, _ in daemon.vfs.listdir(t)] == ["total_bytes"]
    assert int(read(daemon, t + "total_bytes")) > 0
    await write(daemon, "kdamonds/0/state", "clear_schemes_tried_regions\n")
    assert read(daemon, t + "total_bytes") == "0\n"
    await write(daemon, "kdamonds/0/state", "off\n")
    assert await errno_of(daemon, "kdamonds/0/state", "update_schemes_tried_regions\n") == (
        "EINVAL")
    await write(daemon, "kdamonds/0/state", "clear_schemes_tried_regions\n")  # needs no run


async def test_commit_schemes_quota_goals_commits_only_the_goals(daemon, autojump_clock):
    await _start_sim(daemon, **{S + "quotas__bytes": "1048576\n",
                                S + "quotas__reset_interval_ms": "100\n",
                                S + "quotas__goals__nr_goals": "1\n",
                                S + "quotas__goals__0__target_value": "10000\n",
                                S + "quotas__goals__0__current_value": "100\n"})
    kd = daemon.sysfs.kdamonds[0].kdamond
    [goal] = kd.ctx.schemes[0].quota.goals
    assert (goal.spec.target_value, goal.current_value) == (10000, 100)
    await write(daemon, S + "quotas/goals/0/current_value", "20000\n")
    await write(daemon, S + "quotas/bytes", "4096\n")  # not a goal: stays uncommitted
    await write(daemon, "kdamonds/0/state", "commit_schemes_quota_goals\n")
    [goal] = kd.ctx.schemes[0].quota.goals
    assert goal.current_value == 20000
    assert kd.ctx.schemes[0].spec.quota.sz == 1048576
    assert await errno_of(daemon, S + "quotas/goals/0/target_metric",
                          "node_memcg_used_bp\n") == "EINVAL"  # 6.19: not a 6.18 metric
    await write(daemon, "kdamonds/0/state", "commit_schemes_quota_goals\n")
    assert kd.ctx.schemes[0].quota.goals[0].current_value == 20000
