"""Offload on this host's kernel (Linux 6.18 with DAMON ``paddr`` only, its admin tree holding a
running kdamond of someone else): damond must refuse offload for each reason and leave the
kernel's tree exactly as it found it. Skipped where the kernel has no DAMON sysfs or its tree
is not busy (the guest lane covers free trees)."""

from __future__ import annotations

import os

import pytest

from damond.platform.kernel_damon import KernelDamonTree
from tests.offload.conftest import setup_context, status_of

TREE = KernelDamonTree()


def _busy_paddr_only() -> str | None:
    if not TREE.present():
        return "the kernel has no DAMON sysfs interface"
    if os.geteuid() != 0:
        return "reading the kernel's DAMON files needs root"
    if not TREE.running():
        return "no kdamond of someone else runs in the kernel's tree"
    if (TREE.avail_operations() or []) != ["paddr"]:
        return f"the kernel's DAMON has {TREE.avail_operations()}, not paddr only"
    return None


pytestmark = pytest.mark.skipif(_busy_paddr_only() is not None,
                                reason=str(_busy_paddr_only()))


@pytest.mark.parametrize("ops, why", [
    ("vaddr", "the kernel's DAMON lacks the vaddr operations (it has paddr)"),
    ("paddr", "the kernel's DAMON tree is in use by someone else (kdamond 0 runs"),
])
def test_offload_refused_with_its_reason_and_kernel_tree_untouched(start_damond, ops, why):
    before = TREE.listing()
    d = start_damond("--offload", "auto")
    with d.conn() as c:
        setup_context(c, ops, os.getpid() if ops == "vaddr" else None, sample_us=20_000,
                      aggr_us=200_000)
        if ops == "vaddr":
            c.ok("echo on > kdamonds/0/state")
            st = status_of(c, 0)
            assert st["runs"] == "user space"
            assert st["runs_why"].startswith(why), st
            c.ok("echo off > kdamonds/0/state")
        else:  # damond's own paddr needs page_idle, which this kernel lacks: both reasons
            data, status = c.cmd("echo on > kdamonds/0/state")
            assert status.startswith("ERR EINVAL") and "page_idle" in status, status
            assert f"cannot run in the kernel's DAMON: {why}" in status, status
        features = c.ok("features")
        assert "kernel_damon operations: paddr" in features
        assert any(f.startswith(f"offload {ops}: no ({why}") for f in features), features
        assert TREE.listing() == before  # nothing written
    assert d.stop() == 0
    assert TREE.listing() == before
    assert not [f for f in os.listdir("/run/damond") if f.startswith(f"offload-{d.proc.pid}")] \
        if os.path.isdir("/run/damond") else True


def test_offload_never_is_said_and_kernel_tree_untouched(start_damond):
    before = TREE.listing()
    d = start_damond("--offload", "never")
    with d.conn() as c:
        setup_context(c, "vaddr", os.getpid(), sample_us=20_000, aggr_us=200_000)
        c.ok("echo on > kdamonds/0/state")
        st = status_of(c, 0)
        assert (st["runs"], st["runs_why"]) == (
            "user space", "offload is off (damond serve --offload never)")
        assert "offload mode: never" in c.ok("features")
    assert d.stop() == 0
    assert TREE.listing() == before
