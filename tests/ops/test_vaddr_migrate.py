"""vaddr's ``migrate_hot``/``migrate_cold`` destinations (Linux 6.11 ``target_nid``, 6.16
``dests``) and the kernel's rule for a node without memory: nothing migrates."""

from __future__ import annotations

import numpy as np

from damond.core.build import build_scheme
from damond.core.spec import DestSpec, SchemeSpec
from damond.platform.pagesize import PAGE_SIZE
from damond.plugins.vaddr import migrate_nodes

ADDRS = np.arange(0, 12 * PAGE_SIZE, PAGE_SIZE, dtype=np.uint64)


def nodes_for(spec, memory_nodes=(0,)):
    return migrate_nodes(build_scheme(spec), ADDRS, list(memory_nodes))


def test_missing_or_unset_node_migrates_nothing():
    assert nodes_for(SchemeSpec(action="migrate_hot")) is None  # NUMA_NO_NODE
    assert nodes_for(SchemeSpec(action="migrate_hot", target_nid=3)) is None
    assert nodes_for(SchemeSpec(action="migrate_cold", dests=[DestSpec(0, 1), DestSpec(5, 1)])) \
        is None
    assert nodes_for(SchemeSpec(action="migrate_cold", target_nid=0)).tolist() == [0] * 12


def test_dests_interleave_by_weight():
    got = nodes_for(SchemeSpec(action="migrate_hot", dests=[DestSpec(0, 1), DestSpec(1, 2)]),
                    memory_nodes=(0, 1))
    assert got.tolist() == [0, 1, 1] * 4
    assert nodes_for(SchemeSpec(action="migrate_hot", dests=[DestSpec(0, 0)])) is None


def test_vaddr_refuses_ops_filters_only_where_the_kernel_would_use_them():
    import pytest

    from damond.core.context import Context
    from damond.core.spec import FilterSpec
    from damond.errors import DamonError
    from damond.ops import page_walk
    from damond.plugins.vaddr import validate_ops_filters

    young = [FilterSpec(type="young", matching=True)]
    ctx = Context(ops_name="vaddr")
    ctx.schemes = [build_scheme(SchemeSpec(action="pageout", filters=young))]
    validate_ops_filters(ctx)  # the kernel ignores ops filters for madvise actions
    for action in ("stat", "migrate_cold"):
        ctx.schemes = [build_scheme(SchemeSpec(action=action, filters=young))]
        with pytest.raises(DamonError) as e:
            validate_ops_filters(ctx)
        assert e.value.errno_name == "EINVAL" and "young" in e.value.why
        # filters user space can evaluate per page are accepted where pagemap shows PFNs
        ctx.schemes = [build_scheme(SchemeSpec(
            action=action, filters=[FilterSpec(type="anon", matching=True)]))]
        if page_walk.unavailable() is None:
            validate_ops_filters(ctx)
        else:
            with pytest.raises(DamonError):
                validate_ops_filters(ctx)
