"""A damo kdamonds file with Linux 6.18 features (a filter in each layer damo writes, a quota
goal, dests, ``target_nid``, an intervals goal, an apply interval, ``addr_unit``,
``refresh_ms``) given to ``damond serve --config``: it loads, its kdamond runs, the sysfs files
show it, and ``dump`` prints it back so that it loads to the same configuration."""

from __future__ import annotations

import json

from damond.formats.damo.kdamonds import load_kdamonds

K = "kdamonds/0"
S = f"{K}/contexts/0/schemes/0"

CONFIG = {"kdamonds": [{
    "refresh_ms": "250 ms",
    "contexts": [{
        "ops": "sim",
        "addr_unit": "1 B",
        "targets": [{"pid": None, "regions": []}],
        "intervals": {"sample_us": "5 ms", "aggr_us": "100 ms", "ops_update_us": "1 s",
                      "intervals_goal": {"access_bp": "4 %", "aggrs": "3",
                                         "min_sample_us": "1 ms", "max_sample_us": "10 ms"}},
        "nr_regions": {"min": "10", "max": "1,000"},
        "schemes": [{
            "action": "migrate_cold",
            "target_nid": 0,
            "dests": [{"id": 0, "weight": 1}],
            "access_pattern": {"sz_bytes": {"min": "0 B", "max": "max"},
                               "nr_accesses": {"min": "0 %", "max": "100 %"},
                               "age": {"min": "0 ns", "max": "max"}},
            "apply_interval_us": "200 ms",
            "quotas": {"time_ms": "0 ns", "sz_bytes": "64 MiB", "reset_interval_ms": "1 s",
                       "goals": [{"metric": "user_input", "target_value": "10,000",
                                  "current_value": "5,000"}],
                       "weights": {"sz_permil": "0 %", "nr_accesses_permil": "0 %",
                                   "age_permil": "0 %"}},
            "watermarks": {"metric": "none", "interval_us": "0 ns", "high_permil": "0 %",
                           "mid_permil": "0 %", "low_permil": "0 %"},
            "filters": [{"filter_type": "addr", "matching": True, "allow": False,
                         "memcg_path": None,
                         "address_range": {"start": "0", "end": "4096"},
                         "damon_target_idx": None, "hugepage_size": None,
                         "probe_hits_wsum_range": None}],
        }],
    }],
}]}


def test_a_6_18_configuration_loads_runs_and_dumps_back(start_damond, tmp_path):
    path = tmp_path / "kdamonds.json"
    path.write_text(json.dumps(CONFIG))
    expected, _ = load_kdamonds(path.read_text())
    d = start_damond("--config", str(path), "--cpu-budget", "1")
    with d.conn() as c:
        assert c.value(f"{K}/state") == "on"
        assert c.value(f"{K}/refresh_ms") == "250"
        # damo writes an addr filter to core_filters/ on 6.18
        assert c.value(f"{S}/core_filters/nr_filters") == "1"
        assert c.value(f"{S}/core_filters/0/type") == "addr"
        assert c.value(f"{S}/core_filters/0/addr_end") == "4096"
        assert c.value(f"{S}/ops_filters/nr_filters") == "0"
        assert c.value(f"{S}/quotas/goals/0/current_value") == "5000"
        assert c.value(f"{S}/dests/0/weight") == "1"
        assert c.value(f"{S}/target_nid") == "0"
        assert c.value(f"{S}/apply_interval_us") == "200000"
        goal = f"{K}/contexts/0/monitoring_attrs/intervals/intervals_goal"
        assert c.value(f"{goal}/access_bp") == "400"
        assert c.value(f"{goal}/max_sample_us") == "10000"
        # refresh_ms copies the tuned intervals into the files: dump after it stopped
        c.ok(f"echo 0 > {K}/refresh_ms")
        dumped = "\n".join(c.ok("dump"))
    specs, warnings = load_kdamonds(dumped)
    assert warnings == []
    ctx, want = specs[0].contexts[0], expected[0].contexts[0]
    assert specs[0].refresh_ms == 0 and expected[0].refresh_ms == 250
    assert ctx.schemes == want.schemes
    assert ctx.attrs.intervals_goal == want.attrs.intervals_goal
    assert (ctx.ops, ctx.addr_unit, ctx.targets) == (want.ops, want.addr_unit, want.targets)
