"""Shared parts of the offload tests: a real ``damond serve`` driven through its socket."""

from __future__ import annotations

from tests.control.conftest import Conn, sockdir, start_damond  # noqa: F401 - fixtures

EVENT = "damon_aggregated"


def status_of(c: Conn, kdamond: int) -> dict[str, str]:
    """``status`` lines of ``kdamond.K`` as a dict (keys without the ``kdamond.K.`` prefix)."""
    prefix = f"kdamond.{kdamond}."
    out = {}
    for line in c.ok("status"):
        key, _, value = line.partition(": ")
        if key.startswith(prefix):
            out[key[len(prefix):]] = value
    return out


def setup_context(c: Conn, ops: str, pid: int | None = None, *, sample_us: int = 5000,
                  aggr_us: int = 100_000, schemes: list[dict] | None = None,
                  regions: list[tuple[int, int]] | None = None) -> None:
    """kdamond 0 of damond's tree: one context of ``ops`` with one target."""
    c.ok("echo 1 > kdamonds/nr_kdamonds")
    c.ok("echo 1 > kdamonds/0/contexts/nr_contexts")
    ctx = "kdamonds/0/contexts/0"
    c.ok(f"echo {ops} > {ctx}/operations")
    c.ok(f"echo {sample_us} > {ctx}/monitoring_attrs/intervals/sample_us")
    c.ok(f"echo {aggr_us} > {ctx}/monitoring_attrs/intervals/aggr_us")
    c.ok(f"echo 1 > {ctx}/targets/nr_targets")
    if pid is not None:
        c.ok(f"echo {pid} > {ctx}/targets/0/pid_target")
    if regions:
        c.ok(f"echo {len(regions)} > {ctx}/targets/0/regions/nr_regions")
        for i, (s, e) in enumerate(regions):
            c.ok(f"echo {s} > {ctx}/targets/0/regions/{i}/start")
            c.ok(f"echo {e} > {ctx}/targets/0/regions/{i}/end")
    schemes = schemes or []
    c.ok(f"echo {len(schemes)} > {ctx}/schemes/nr_schemes")
    for i, files in enumerate(schemes):
        for rel, value in files.items():
            c.ok(f"echo {value} > {ctx}/schemes/{i}/{rel}")
