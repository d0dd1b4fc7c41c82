"""damo's kdamonds JSON/YAML: fixtures printed by the real damo, round trips, and the real damo
reading damond's dumps (its own parser and its own sysfs writer, run in dry-run mode)."""

from __future__ import annotations

import copy
import json
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damond.core.spec import (
    ACTIONS,
    UINT_MAX,
    ULONG_MAX,
    WMARK_METRICS,
    AccessPatternSpec,
    AttrsSpec,
    ContextSpec,
    DestSpec,
    FilterSpec,
    IntervalsGoalSpec,
    KdamondSpec,
    QuotaGoalSpec,
    QuotaSpec,
    RegionSpec,
    SchemeSpec,
    TargetSpec,
    WatermarksSpec,
)
from damond.errors import DamonError
from damond.formats.damo import kdamonds as dk
from tests.formats.damo.damo_tool import needs_damo, run_damo, run_python_or_damo

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# Runs damo's own loader (_damon_args.kdamonds_from_*_arg) and sysfs writer
# (_damon_sysfs.stage_kdamonds) in damo's dry-run mode, against a throw-away sysfs root that only
# says "apply_interval_us exists", and prints {file: {"error": ..., "writes": {path: value}}}.
DAMO_DRYRUN = r"""
import collections, json, os, sys, tempfile
import damo
sys.path.insert(0, os.path.dirname(damo.__file__))
import _damo_fs, _damon_args, _damon_sysfs
out = {}
for path in sys.argv[1:]:
    load = (_damon_args.kdamonds_from_yaml_arg if path.endswith('.yaml')
            else _damon_args.kdamonds_from_json_arg)
    kds, err = load(path)
    if err is not None:
        out[path] = {'error': repr(err), 'writes': {}}
        continue
    root = tempfile.mkdtemp(dir=os.environ['HOME'])
    base = os.path.join(root, 'kernel/mm/damon/admin/kdamonds')
    for k, kd in enumerate(kds):
        for c, ctx in enumerate(kd.contexts):
            for s in range(len(ctx.schemes)):
                d = os.path.join(base, str(k), 'contexts', str(c), 'schemes', str(s))
                os.makedirs(d)
                open(os.path.join(d, 'apply_interval_us'), 'w').close()
    _damon_sysfs.sysfs_root = root
    _damo_fs.debug_dryrun(collections.defaultdict(lambda: '0'))
    err = _damon_sysfs.stage_kdamonds(kds)
    writes = {}
    for line in _damo_fs.debug_get_dryrun_logs():
        if line.startswith('write '):
            value, target = line[len("write '"):].rsplit("' to '", 1)
            writes[os.path.relpath(target[:-1], base)] = value
    out[path] = {'error': err, 'writes': writes}
print(json.dumps(out))
"""

def damo_sysfs_writes(paths: list[Path]) -> dict[str, dict]:
    res = run_python_or_damo([sys.executable, "-c", DAMO_DRYRUN, *map(str, paths)], check=True)
    return json.loads(res.stdout)


def spec_sysfs_writes(specs: list[KdamondSpec]) -> dict[str, str]:
    """The sysfs files (and values) a spec stands for, named as damo's dry-run log names them."""
    w: dict[str, str] = {}
    for k, kd in enumerate(specs):
        for c, ctx in enumerate(kd.contexts):
            p = f"{k}/contexts/{c}"
            a = ctx.attrs
            w[f"{p}/operations"] = ctx.ops
            for name, value in (("intervals/sample_us", a.sample_us),
                                ("intervals/aggr_us", a.aggr_us),
                                ("intervals/update_us", a.update_us),
                                ("nr_regions/min", a.min_nr_regions),
                                ("nr_regions/max", a.max_nr_regions)):
                w[f"{p}/monitoring_attrs/{name}"] = str(value)
            for t, target in enumerate(ctx.targets):
                tp = f"{p}/targets/{t}"
                if ctx.ops in ("vaddr", "fvaddr") or target.pid:
                    w[f"{tp}/pid_target"] = str(target.pid)
                for r, region in enumerate(target.regions):
                    w[f"{tp}/regions/{r}/start"] = str(region.start)
                    w[f"{tp}/regions/{r}/end"] = str(region.end)
            for s, scheme in enumerate(ctx.schemes):
                sp = f"{p}/schemes/{s}"
                pat, q, wm = scheme.pattern, scheme.quota, scheme.wmarks
                values = {
                    "access_pattern/sz/min": pat.min_sz, "access_pattern/sz/max": pat.max_sz,
                    "access_pattern/nr_accesses/min": pat.min_nr_accesses,
                    "access_pattern/nr_accesses/max": pat.max_nr_accesses,
                    "access_pattern/age/min": pat.min_age, "access_pattern/age/max": pat.max_age,
                    "action": scheme.action, "quotas/ms": q.ms, "quotas/bytes": q.sz,
                    "quotas/reset_interval_ms": q.reset_interval_ms,
                    "quotas/weights/sz_permil": q.weight_sz,
                    "quotas/weights/nr_accesses_permil": q.weight_nr_accesses,
                    "quotas/weights/age_permil": q.weight_age,
                    "watermarks/metric": wm.metric, "watermarks/interval_us": wm.interval_us,
                    "watermarks/high": wm.high, "watermarks/mid": wm.mid,
                    "watermarks/low": wm.low, "apply_interval_us": scheme.apply_interval_us,
                }
                w.update({f"{sp}/{name}": str(value) for name, value in values.items()})
    return w


def assert_damo_writes(damo_result: dict, specs: list[KdamondSpec]) -> None:
    assert damo_result["error"] is None
    expected = spec_sysfs_writes(specs)
    got = {k: v for k, v in damo_result["writes"].items() if k in expected}
    assert got == expected


# --- the fixtures ----------------------------------------------------------------------------

VADDR_PAGEOUT = [KdamondSpec(contexts=[ContextSpec(
    ops="vaddr",
    attrs=AttrsSpec(sample_us=5_000, aggr_us=100_000, update_us=1_000_000,
                    min_nr_regions=10, max_nr_regions=1_000),
    targets=[TargetSpec(pid=1234)],
    schemes=[SchemeSpec(
        action="pageout",
        # age 30 s / 100 ms; "max" age = int(ULONG_MAX / 100000.0)
        pattern=AccessPatternSpec(min_sz=0, max_sz=ULONG_MAX, min_nr_accesses=0,
                                  max_nr_accesses=0, min_age=300, max_age=184_467_440_737_095),
        quota=QuotaSpec(ms=10, sz=128 << 20, reset_interval_ms=1_000),
        wmarks=WatermarksSpec(metric="free_mem_rate", interval_us=5_000_000,
                              high=500, mid=400, low=200),
        apply_interval_us=0,
    )],
)])]

VADDR_FILES = ["damo_kdamonds_vaddr_pageout.json", "damo_kdamonds_vaddr_pageout.yaml",
               "damo_kdamonds_vaddr_pageout_omit_defaults.json"]
VADDR_RAW_FILES = ["damo_kdamonds_vaddr_pageout_raw.json", "damo_kdamonds_vaddr_pageout_raw.yaml"]


@pytest.mark.parametrize("name", VADDR_FILES + VADDR_RAW_FILES)
def test_vaddr_pageout_fixtures_load_exactly(name: str) -> None:
    specs, warnings = dk.load_kdamonds((FIXTURES / name).read_text())
    assert specs == VADDR_PAGEOUT
    if name in VADDR_RAW_FILES:
        assert len(warnings) == 1 and "raw form detected" in warnings[0]
    else:
        assert warnings == []


def test_lossy_fixture_loads_to_what_damo_writes() -> None:
    """damo printed 29% as "28 %" and 7 permil as "0.7 %": the file means what it says."""
    specs, warnings = dk.load_kdamonds((FIXTURES / "damo_kdamonds_paddr_stat_lossy.json")
                                       .read_text())
    assert warnings == []
    assert specs == [KdamondSpec(contexts=[ContextSpec(
        ops="paddr",
        attrs=AttrsSpec(sample_us=1_000, aggr_us=100_000, update_us=1_000_000,
                        min_nr_regions=10, max_nr_regions=1_000),
        targets=[TargetSpec(pid=0, regions=[RegionSpec(4096, 1_073_745_920)])],
        schemes=[SchemeSpec(
            action="stat",
            # "28 %" of 100 samples, "71 %"; age "1 s 500 ms" / 100 ms
            pattern=AccessPatternSpec(min_sz=4096, max_sz=ULONG_MAX, min_nr_accesses=28,
                                      max_nr_accesses=71, min_age=15,
                                      max_age=184_467_440_737_095),
            # weights "28 %", "0.1 %", "0.7 %" -> 280, 1, int(0.007 * 1000) = 6
            quota=QuotaSpec(ms=1_000, sz=1 << 30, reset_interval_ms=2_000, weight_sz=280,
                            weight_nr_accesses=1, weight_age=6),
            wmarks=WatermarksSpec(),
            apply_interval_us=3_000_000,
        )],
    )])]


@needs_damo
def test_fixtures_mean_to_damond_what_they_mean_to_damo() -> None:
    names = VADDR_FILES + ["damo_kdamonds_paddr_stat_lossy.json"]
    results = damo_sysfs_writes([FIXTURES / n for n in names])
    for name in names:
        specs, _ = dk.load_kdamonds((FIXTURES / name).read_text())
        assert_damo_writes(results[str(FIXTURES / name)], specs)


@needs_damo
def test_raw_fixture_is_misread_by_damo_but_not_by_damond() -> None:
    """damo --raw prints the age in ns and damo reads it back in us: 1000 times too old."""
    path = FIXTURES / "damo_kdamonds_vaddr_pageout_raw.json"
    writes = damo_sysfs_writes([path])[str(path)]["writes"]
    scheme = "0/contexts/0/schemes/0"
    assert writes[f"{scheme}/access_pattern/age/min"] == "300000"
    assert writes[f"{scheme}/quotas/ms"] == "10000000"
    assert writes[f"{scheme}/watermarks/interval_us"] == "5000000000"
    specs, _ = dk.load_kdamonds(path.read_text())
    scheme_spec = specs[0].contexts[0].schemes[0]
    assert (scheme_spec.pattern.min_age, scheme_spec.quota.ms,
            scheme_spec.wmarks.interval_us) == (300, 10, 5_000_000)


def test_dump_is_byte_identical_to_damo_output() -> None:
    for name, fmt, raw in (("damo_kdamonds_vaddr_pageout.json", "json", False),
                           ("damo_kdamonds_vaddr_pageout.yaml", "yaml", False),
                           ("damo_kdamonds_vaddr_pageout_raw.json", "json", True),
                           ("damo_kdamonds_vaddr_pageout_raw.yaml", "yaml", True)):
        printed = (FIXTURES / name).read_text()
        assert dk.dump_kdamonds(VADDR_PAGEOUT, fmt=fmt, raw=raw).rstrip("\n") == \
            printed.rstrip("\n"), name


@pytest.mark.parametrize("name", VADDR_FILES + VADDR_RAW_FILES
                         + ["damo_kdamonds_paddr_stat_lossy.json"])
@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("raw", [False, True])
def test_fixtures_dump_and_reload(name: str, fmt: str, raw: bool) -> None:
    specs, _ = dk.load_kdamonds((FIXTURES / name).read_text())
    assert dk.load_kdamonds(dk.dump_kdamonds(specs, fmt=fmt, raw=raw))[0] == specs


# --- refusals and warnings -------------------------------------------------------------------


def vaddr_doc() -> dict:
    return json.loads((FIXTURES / "damo_kdamonds_vaddr_pageout.json").read_text())


def test_unknown_keys_are_refused_naming_each() -> None:
    doc = vaddr_doc()
    doc["damo_version"] = "9.9"
    doc["kdamonds"][0]["nice"] = 5
    ctx = doc["kdamonds"][0]["contexts"][0]
    ctx["operations_attrs"] = {"use_reports": False}
    ctx["schemes"][0]["quotas"]["weights"]["hotness_permil"] = "0 %"
    ctx["targets"][0]["cgroup"] = "/"
    with pytest.raises(DamonError) as exc:
        dk.load_kdamonds(doc)
    assert exc.value.errno_name == "EINVAL"
    for path in ("damo_version", "kdamonds[0].nice", "kdamonds[0].contexts[0].operations_attrs",
                 "kdamonds[0].contexts[0].schemes[0].quotas.weights.hotness_permil",
                 "kdamonds[0].contexts[0].targets[0].cgroup"):
        assert f"{path}: unknown key" in exc.value.why, path


def test_filter_and_quota_goal_fixture_loads_and_dumps_back() -> None:
    text = (FIXTURES / "damo_kdamonds_vaddr_filter_goal.json").read_text()
    specs, warnings = dk.load_kdamonds(text)
    assert warnings == []
    [scheme] = specs[0].contexts[0].schemes
    # damo writes a memcg filter to ops_filters/ on 6.18 (write_core_ops_filters_dirs)
    assert scheme.ops_filters == [FilterSpec(type="memcg", matching=True, allow=False,
                                             memcg_path="/system.slice")]
    assert scheme.core_filters == scheme.filters == []
    assert scheme.quota.goals == [QuotaGoalSpec(target_metric="some_mem_psi_us",
                                                target_value=1000)]
    dumped = dk.dump_kdamonds(specs, fmt="json")
    assert dk.load_kdamonds(dumped)[0] == specs
    # the new sections print exactly as damo printed them (the nr_accesses range, printed
    # "max" instead of damo's "18,446,744,073,709,551,615 %", means the same)
    ours = json.loads(dumped)["kdamonds"][0]["contexts"][0]
    theirs = json.loads(text)["kdamonds"][0]["contexts"][0]
    for key in ("filters", "dests"):
        assert ours["schemes"][0][key] == theirs["schemes"][0][key]
    assert ours["schemes"][0]["quotas"] == theirs["schemes"][0]["quotas"]
    assert ours["intervals"] == theirs["intervals"]
    assert ours["addr_unit"] == theirs["addr_unit"]


def test_every_unimplemented_field_is_named() -> None:
    doc = vaddr_doc()
    kd = doc["kdamonds"][0]
    ctx = kd["contexts"][0]
    ctx["probes"] = [{"filters": [], "weight": 1}]
    ctx["sample_control"]["primitives_enabled"]["page_fault"] = True
    ctx["sample_control"]["sample_filters"] = [{"filter_type": "write"}]
    ctx["pause"] = True
    ctx["targets"][0]["obsolete"] = True
    scheme = ctx["schemes"][0]
    ctx["schemes"].append(dict(copy.deepcopy(scheme), action="collapse"))
    scheme["quotas"].update(fail_charge_num="1", fail_charge_denom="2", goal_tuner="temporal")
    scheme["quotas"]["goals"] = [
        {"metric": "active_mem_bp", "target_value": "50 %", "current_value": "0"},
        {"metric": "user_input", "complement": True, "target_value": "1", "current_value": "0"},
        {"metric": "node_memcg_used_bp", "target_value": "10 %", "nid": 0,
         "memcg_path": "/a"}]  # 6.19
    scheme["filters"] = [{"filter_type": "probe_hits_wsum", "matching": True}]
    with pytest.raises(DamonError) as exc:
        dk.load_kdamonds(doc)
    c = "kdamonds[0].contexts[0]"
    s = f"{c}.schemes[0]"
    for path in [f"{c}.probes", f"{c}.sample_control.primitives_enabled.page_fault",
                 f"{c}.sample_control.sample_filters", f"{c}.pause", f"{c}.targets[0].obsolete",
                 f"{s}.quotas.fail_charge_num", f"{s}.quotas.fail_charge_denom",
                 f"{s}.quotas.goal_tuner", f"{c}.schemes[1].action",
                 f"{s}.quotas.goals[0].metric", f"{s}.quotas.goals[1].complement",
                 f"{s}.quotas.goals[2].metric",
                 f"{s}.filters[0].filter_type"]:
        assert f"{path}:" in exc.value.why, path


def test_every_6_18_field_round_trips() -> None:
    ctx = ContextSpec(
        ops="paddr", addr_unit=4096,
        attrs=AttrsSpec(intervals_goal=IntervalsGoalSpec(access_bp=400, aggrs=3,
                                                         min_sample_us=5000,
                                                         max_sample_us=10_000_000)),
        targets=[TargetSpec(regions=[RegionSpec(0, 1 << 30)])],
        schemes=[SchemeSpec(
            action="migrate_cold", target_nid=1, apply_interval_us=3_000_000,
            dests=[DestSpec(1, 3), DestSpec(2, 7)],
            core_filters=[FilterSpec(type="addr", matching=True, addr_start=4096,
                                     addr_end=1 << 20),
                          FilterSpec(type="target", allow=True, target_idx=0)],
            ops_filters=[FilterSpec(type="anon", matching=True),
                         FilterSpec(type="hugepage_size", matching=True, sz_min=2 << 20,
                                    sz_max=2 << 20),
                         FilterSpec(type="memcg", memcg_path="/a/b")],
            quota=QuotaSpec(sz=1 << 30, reset_interval_ms=1000, goals=[
                QuotaGoalSpec(target_metric="node_mem_used_bp", target_value=3500, nid=1),
                QuotaGoalSpec(target_metric="user_input", target_value=10, current_value=3),
                QuotaGoalSpec(target_metric="some_mem_psi_us", target_value=1234)]))])
    specs = [KdamondSpec(contexts=[ctx], refresh_ms=500)]
    for fmt in ("json", "yaml"):
        for raw in (False, True):
            assert dk.load_kdamonds(dk.dump_kdamonds(specs, fmt=fmt, raw=raw))[0] == specs


def test_defaults_of_unimplemented_fields_are_accepted_silently() -> None:
    doc = vaddr_doc()
    ctx = doc["kdamonds"][0]["contexts"][0]
    ctx["schemes"][0].update(dests=[], filters=[], target_nid=None)
    ctx["intervals"]["intervals_goal"] = {"access_bp": "0 %", "aggrs": "0",
                                          "min_sample_us": "0 ns", "max_sample_us": "0 ns"}
    doc["kdamonds"][0].update(refresh_ms="0 ms", state="off", pid=None)
    assert dk.load_kdamonds(doc) == (VADDR_PAGEOUT, [])


def test_missing_required_and_malformed_values_are_named() -> None:
    doc = vaddr_doc()
    ctx = doc["kdamonds"][0]["contexts"][0]
    del ctx["targets"]
    del ctx["schemes"][0]["quotas"]["weights"]
    ctx["schemes"][0]["watermarks"]["high_permil"] = "fifty"
    ctx["nr_regions"]["max"] = "-3"
    with pytest.raises(DamonError) as exc:
        dk.load_kdamonds(doc)
    c = "kdamonds[0].contexts[0]"
    for path in [f"{c}.targets", f"{c}.schemes[0].quotas.weights",
                 f"{c}.schemes[0].watermarks.high_permil", f"{c}.nr_regions.max"]:
        assert f"{path}:" in exc.value.why, path


def test_missing_sections_take_damos_defaults() -> None:
    """damo's defaults differ from sysfs': reset interval "max", update interval 1 s, and an
    access pattern matching everything ("max" % of 20 samples overflows to 2^64 * 0.2)."""
    doc = {"kdamonds": [{"contexts": [{"ops": "paddr", "targets": [],
                                       "schemes": [{"action": "stat"}]}]}]}
    specs, warnings = dk.load_kdamonds(doc)
    assert warnings == []
    ctx = specs[0].contexts[0]
    assert ctx.attrs == AttrsSpec(update_us=1_000_000)
    assert ctx.schemes[0] == SchemeSpec(
        action="stat",
        pattern=AccessPatternSpec(0, ULONG_MAX, 0, int(ULONG_MAX * 20.0 / 100), 0,
                                  int(ULONG_MAX / 100000.0)),
        quota=QuotaSpec(reset_interval_ms=ULONG_MAX),
    )


TRICKY = {"kdamonds": [{"contexts": [{
    "ops": "vaddr", "targets": [{"pid": "42", "regions": [{"start": "4 KiB", "end": "1.5 MiB"}]}],
    "intervals": {"sample_us": "1.5 ms", "aggr_us": "0.1 s", "ops_update_us": "2m"},
    "nr_regions": {"min": "3", "max": "1,000"},
    "schemes": [
        {"action": "cold",
         "access_pattern": {"sz_bytes": {"min": "12.345 MiB", "max": "1G"},
                            "nr_accesses": {"min": "29 %", "max": "99.9 %"},
                            "age": {"min": "1 m 30 s 7 ms", "max": "2.5 h"}},
         "apply_interval_us": "1 s 1 us",
         "quotas": {"time_ms": "1.9999 ms", "sz_bytes": "0.5 KB", "reset_interval_ms": "max",
                    "weights": {"sz_permil": "0.7 %", "nr_accesses_permil": "29 %",
                                "age_permil": "1,000"}},
         "watermarks": {"metric": "free_mem_rate", "interval_us": "1.000001 s",
                        "high_permil": "max", "mid_permil": "50.05 %", "low_permil": "min"}},
        {"action": "willneed",
         "access_pattern": {"sz_bytes": {"min": "min", "max": 4096},
                            "nr_accesses": {"min": "3 samples", "max": "1,234 samples"},
                            "age": {"min": "7 aggr_intervals", "max": "1e3 aggr_intervals"}}},
    ],
}]}]}


@needs_damo
def test_tricky_human_values_convert_exactly_like_damo(tmp_path: Path) -> None:
    path = tmp_path / "tricky.json"
    path.write_text(json.dumps(TRICKY))
    specs, warnings = dk.load_kdamonds(TRICKY)
    assert warnings == []
    assert specs[0].contexts[0].schemes[0].pattern.min_nr_accesses == 19  # 29% of 66.67: 19.33
    assert_damo_writes(damo_sysfs_writes([path])[str(path)], specs)


# --- generated specs -------------------------------------------------------------------------


def _ulong(rng: random.Random, hi: int = ULONG_MAX) -> int:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice([0, 1, hi, hi - 1, min(hi, 1 << 53), min(hi, (1 << 53) + 1)])
    if kind == 1:
        return rng.randrange(min(hi, 1000) + 1)
    if kind == 2:
        return min(hi, 10 ** rng.randrange(20) * rng.randrange(1, 10))
    if kind == 3:
        return min(hi, 1 << rng.randrange(64))
    if kind == 4:
        return rng.randrange(min(hi, 10 ** 9) + 1)
    return rng.randrange(hi + 1)


def random_specs(rng: random.Random, damo_safe: bool = False) -> list[KdamondSpec]:
    """Specs with every field drawn from edge and ordinary values. ``damo_safe`` keeps the
    intervals non-zero (damo divides by them whenever a context has schemes)."""
    lo = 1 if damo_safe else 0
    kdamonds = []
    for _ in range(rng.randrange(1, 3)):
        contexts = []
        for _ in range(rng.randrange(0, 3)):
            ops = rng.choice(["vaddr", "fvaddr", "paddr"])
            attrs = AttrsSpec(*(max(lo, _ulong(rng)) for _ in range(3)),
                              _ulong(rng), _ulong(rng))
            if rng.random() < 0.5:  # ordinary intervals, where percent and time forms apply
                attrs.sample_us = rng.choice([1_000, 5_000, 1_500, 7])
                attrs.aggr_us = attrs.sample_us * rng.randrange(1, 300)
            targets = []
            for _ in range(rng.randrange(0, 3)):
                bounds = sorted(_ulong(rng) for _ in range(2 * rng.randrange(0, 3)))
                regions = [RegionSpec(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]
                pid = rng.randrange(1 << 22) if ops != "paddr" or rng.random() < 0.2 else 0
                args = {"workload": "zipf", "size": 4096} if rng.random() < 0.1 else {}
                targets.append(TargetSpec(pid=pid, regions=regions, ops_args=args))
            schemes = [SchemeSpec(
                action=rng.choice(ACTIONS),
                pattern=AccessPatternSpec(*(_ulong(rng) for _ in range(6))),
                quota=QuotaSpec(_ulong(rng), _ulong(rng), _ulong(rng),
                                *(_ulong(rng, UINT_MAX) for _ in range(3))),
                wmarks=WatermarksSpec(rng.choice(WMARK_METRICS),
                                      *(_ulong(rng) for _ in range(4))),
                apply_interval_us=_ulong(rng),
            ) for _ in range(rng.randrange(0, 3))]
            contexts.append(ContextSpec(ops, attrs, targets, schemes))
        kdamonds.append(KdamondSpec(contexts))
    return kdamonds


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), fmt=st.sampled_from(["json", "yaml"]),
       raw=st.booleans())
def test_load_of_dump_is_identity(rng: random.Random, fmt: str, raw: bool) -> None:
    specs = random_specs(rng)
    text = dk.dump_kdamonds(specs, fmt=fmt, raw=raw)
    loaded, warnings = dk.load_kdamonds(text)
    assert loaded == specs
    assert all("raw form detected" in w for w in warnings)


@needs_damo
def test_damo_accepts_dumps_and_writes_the_same_values(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    paths, expected = [], {}
    for i in range(40):
        specs = random_specs(rng, damo_safe=True)
        for fmt in ("json", "yaml"):
            path = tmp_path / f"spec{i}.{fmt}"
            path.write_text(dk.dump_kdamonds(specs, fmt=fmt))
            paths.append(path)
            expected[str(path)] = specs
    results = damo_sysfs_writes(paths)
    for path, specs in expected.items():
        assert_damo_writes(results[path], specs)


@needs_damo
@pytest.mark.parametrize("raw", [False, True])
def test_damo_args_damon_reads_dumps(tmp_path: Path, raw: bool) -> None:
    specs = random_specs(random.Random(7), damo_safe=True) + VADDR_PAGEOUT
    json_path, yaml_path = tmp_path / "k.json", tmp_path / "k.yaml"
    json_path.write_text(dk.dump_kdamonds(specs, fmt="json", raw=raw))
    yaml_path.write_text(dk.dump_kdamonds(specs, fmt="yaml", raw=raw))
    for args in (["--kdamonds", str(json_path)], [str(yaml_path)]):
        res = run_damo("args", "damon", *args, "--format", "json")
        assert res.returncode == 0, res.stdout + res.stderr
        printed = json.loads(res.stdout)["kdamonds"]
        assert len(printed) == len(specs)
        assert [len(kd["contexts"]) for kd in printed] == [len(kd.contexts) for kd in specs]


# Runs damo's own loader on a file and prints, per scheme, the 6.18 sections as damo parsed them.
DAMO_READ_618 = r"""
import json, os, sys
import damo
sys.path.insert(0, os.path.dirname(damo.__file__))
import _damon_args
kds, err = _damon_args.kdamonds_from_json_arg(sys.argv[1])
assert err is None, err
kd = kds[0]
ctx = kd.contexts[0]
g = ctx.intervals.intervals_goal
out = {"refresh_ms": kd.refresh_ms, "addr_unit": ctx.addr_unit,
       "intervals_goal": [g.access_bp, g.aggrs, g.min_sample_us, g.max_sample_us],
       "schemes": []}
for s in ctx.schemes:
    out["schemes"].append({
        "target_nid": s.target_nid,
        "dests": [[d.id, d.weight] for d in s.dests],
        "goals": [[q.metric, q.target_value, q.current_value, q.nid, q.memcg_path]
                  for q in s.quotas.goals],
        "filters": [[f.filter_type, f.matching, f.allow,
                     f.memcg_path if f.filter_type == "memcg" else None,
                     [f.address_range.start, f.address_range.end] if f.address_range else None,
                     f.damon_target_idx, f.hugepage_size] for f in s.filters]})
print(json.dumps(out))
"""


@needs_damo
def test_damo_reads_the_6_18_sections_of_dumps_as_damond_means_them(tmp_path: Path) -> None:
    scheme = SchemeSpec(
        action="migrate_hot", target_nid=1, dests=[DestSpec(1, 3), DestSpec(0, 7)],
        core_filters=[FilterSpec(type="addr", matching=True, addr_start=4096, addr_end=1 << 20),
                      FilterSpec(type="target", allow=True, target_idx=2)],
        ops_filters=[FilterSpec(type="memcg", matching=True, memcg_path="/a/b"),
                     FilterSpec(type="hugepage_size", sz_min=2 << 20, sz_max=1 << 30)],
        quota=QuotaSpec(sz=1 << 30, reset_interval_ms=1000, goals=[
            QuotaGoalSpec(target_metric="node_mem_free_bp", target_value=2500, nid=1),
            QuotaGoalSpec(target_metric="some_mem_psi_us", target_value=1234),
            QuotaGoalSpec(target_metric="user_input", target_value=10, current_value=7)]))
    ctx = ContextSpec(ops="paddr", addr_unit=4096, schemes=[scheme],
                      attrs=AttrsSpec(intervals_goal=IntervalsGoalSpec(
                          access_bp=400, aggrs=3, min_sample_us=5000, max_sample_us=100_000)),
                      targets=[TargetSpec(regions=[RegionSpec(0, 1 << 30)])])
    path = tmp_path / "kd.json"
    path.write_text(dk.dump_kdamonds([KdamondSpec(contexts=[ctx], refresh_ms=300)]))
    res = run_python_or_damo([sys.executable, "-c", DAMO_READ_618, str(path)], check=True)
    damo = json.loads(res.stdout)
    assert damo["refresh_ms"] == 300 and damo["addr_unit"] == 4096
    assert damo["intervals_goal"] == [400, 3, 5000, 100_000]
    [s] = damo["schemes"]
    assert s["target_nid"] == 1 and s["dests"] == [[1, 3], [0, 7]]
    assert s["goals"] == [["node_mem_free_bp", 2500, 0, 1, None],
                          ["some_mem_psi_us", 1234, 0, None, None],
                          ["user_input", 10, 7, None, None]]
    assert s["filters"] == [
        ["addr", True, False, None, [4096, 1 << 20], None, None],
        ["target", False, True, None, None, 2, None],
        ["memcg", True, False, "/a/b", None, None, None],
        ["hugepage_size", False, False, None, None, None, [2 << 20, 1 << 30]]]
