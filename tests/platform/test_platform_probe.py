"""probe() must agree with what the host really offers, checked independently where possible."""

from __future__ import annotations

import json
import os

from damond.platform import pagemap as pm
from damond.platform import probe as pr
from damond.platform.page_idle import BITMAP_PATH
from damond.platform.refs import CLEAR_REFS_SOFT_DIRTY, clear_refs

NAMES = {"page_idle", "pagemap", "pagemap_pfn", "soft_dirty", "clear_refs", "smaps",
         "kpageflags", "pidfd_open", "process_madvise", "madv_collapse", "iomem", "meminfo",
         "thp", "zram"}


def test_every_facility_is_described():
    facilities = pr.probe()
    assert set(facilities) == NAMES
    for name, f in facilities.items():
        assert f.name == name
        assert f.reason and f.since and f.privilege


def test_cached_until_refreshed():
    first = pr.probe()
    assert all(first[n] is f for n, f in pr.probe().items())
    again = pr.probe(refresh=True)
    assert any(first[n] is not f for n, f in again.items())
    assert {n: f.available for n, f in again.items()} == {n: f.available for n, f in first.items()}


def test_page_idle_thp_zram_match_the_files():
    f = pr.probe()
    assert f["page_idle"].available == (os.path.exists(BITMAP_PATH) and os.geteuid() == 0)
    if not os.path.exists(BITMAP_PATH):
        assert "CONFIG_IDLE_PAGE_TRACKING" in f["page_idle"].reason
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    if os.path.exists(thp):
        with open(thp) as fh:
            mode = fh.read()
        assert f["thp"].available == ("[never]" not in mode)
        assert mode[mode.index("[") + 1 : mode.index("]")] in f["thp"].reason
    else:
        assert not f["thp"].available
    has_zram = os.path.exists("/sys/class/zram-control") or any(
        n.startswith("zram") for n in os.listdir("/sys/block"))
    assert f["zram"].available == (has_zram and os.geteuid() == 0)


def test_privileges_match_capabilities():
    f = pr.probe()
    assert f["pagemap_pfn"].available == pr.has_capability(pr.CAP_SYS_ADMIN)
    assert f["iomem"].available == pr.has_capability(pr.CAP_SYS_ADMIN)
    if f["process_madvise"].available:
        assert pr.has_capability(pr.CAP_SYS_NICE)


def test_soft_dirty_verdict_matches_a_child_process(spawn):
    child = spawn(2)
    clear_refs(child.pid, CLEAR_REFS_SOFT_DIRTY)
    child.write(0, 1)
    child.read(1, 2)
    with pm.Pagemap(child.pid) as p:
        sd = pm.is_soft_dirty(p.read(child.page_addrs()))
    assert pr.probe()["soft_dirty"].available == bool(sd[0] and not sd[1])


def test_unprivileged_probe_names_the_missing_capabilities(run_without_caps):
    code = (
        "import json\n"
        "from damond.platform.probe import probe\n"
        "print(json.dumps({n: [f.available, f.reason] for n, f in probe().items()}))\n"
    )
    res = run_without_caps(code, (pr.CAP_SYS_ADMIN, pr.CAP_SYS_NICE))
    assert res.returncode == 0, res.stderr
    f = json.loads(res.stdout)
    assert not f["pagemap_pfn"][0] and "CAP_SYS_ADMIN" in f["pagemap_pfn"][1]
    assert not f["iomem"][0] and "CAP_SYS_ADMIN" in f["iomem"][1]
    if pr.probe()["process_madvise"].available:
        assert not f["process_madvise"][0] and "CAP_SYS_NICE" in f["process_madvise"][1]
    assert f["pagemap"][0] and f["meminfo"][0] and f["smaps"][0]


def test_probe_leaves_no_mapping_behind():
    def anon_count() -> int:
        with open("/proc/self/maps") as fh:
            return sum(1 for line in fh if len(line.split()) == 5)

    pr.probe(refresh=True)
    before = anon_count()
    pr.probe(refresh=True)
    assert anon_count() <= before


def test_probe_text_lists_every_facility():
    text = pr.probe_text()
    for name, f in pr.probe().items():
        line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
        assert ("yes" if f.available else "no") in line.split()
        assert f.reason in text
