"""The DAMON debugfs interface (``<debugfs>/damon/``) as damond serves it.

The kernel's deprecated interface (v5.15-6.13, removed in 6.14) with v5.18 semantics: target
indices in ``init_regions`` and the tracepoint, 18-field ``schemes`` lines read back with the
five v5.17 statistics, ``paddr`` in ``target_ids``, and the parsing quirks scripts rely on
(``strncmp`` keyword prefixes, parsing that stops silently at the first malformed entry). The
checks and their order follow ``mm/damon/dbgfs.c``: input is parsed first (EINVAL), then a
running kdamond refuses changes (EBUSY). debugfs contexts start together and exclusively
(``damon_start(..., true)``), so they cannot run alongside sysfs kdamonds, and vice versa.

Each debugfs context holds its parameters directly (there is no separate ``commit``); like
the kernel's, its regions are gone once its kdamond has run, and its scheme statistics stay
readable until the schemes are rewritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from damond.core.attrs import validate_attrs
from damond.core.spec import (
    ACTIONS,
    WMARK_METRICS,
    AccessPatternSpec,
    AttrsSpec,
    ContextSpec,
    QuotaSpec,
    RegionSpec,
    SchemeSpec,
    TargetSpec,
    WatermarksSpec,
    clone,
)
from damond.errors import DamonError
from damond.interfaces.kparse import (
    SCHEME_FIELDS,
    count_numbers,
    dbgfs_keyword_match,
    parse_attrs,
    parse_init_regions,
    scan_schemes,
    sscanf_word,
    str_to_ints,
)
from damond.interfaces.scheme_stats import StatsRow, stats_by_index
from damond.interfaces.vfs import Dir, File, Node

if TYPE_CHECKING:
    from damond.ops.registry import OperationsRegistry
    from damond.scheduler import Kdamond, Scheduler

#: what ``target_ids`` shows for the physical address space ("just for fun", says dbgfs.c)
PADDR_TARGET_ID = 42
MAX_SCHEMES = 256


@dataclass
class DbgfsContext:
    name: str
    ops: str = "vaddr"
    attrs: AttrsSpec = field(default_factory=AttrsSpec)
    target_ids: list[int] = field(default_factory=list)
    regions: list[list[tuple[int, int]]] = field(default_factory=list)
    schemes: list[SchemeSpec] = field(default_factory=list)
    kdamond: Kdamond | None = None
    #: the kdamond whose scheme statistics ``schemes`` shows (until schemes are rewritten)
    stats_from: Kdamond | None = None
    regions_destroyed_by: Kdamond | None = None

    @property
    def running(self) -> bool:
        return self.kdamond is not None and self.kdamond.running

    def settle(self) -> None:
        """A kdamond that stopped destroyed the context's regions (``kdamond_fn()``'s exit)."""
        kd = self.kdamond
        if kd is not None and not kd.running and self.regions_destroyed_by is not kd:
            self.regions = [[] for _ in self.target_ids]
            self.regions_destroyed_by = kd

    def to_spec(self) -> ContextSpec:
        pid_targets = self.ops != "paddr"
        return ContextSpec(
            ops=self.ops, attrs=clone(self.attrs),
            targets=[TargetSpec(pid=tid if pid_targets else 0,
                                regions=[RegionSpec(s, e) for s, e in regs])
                     for tid, regs in zip(self.target_ids, self.regions, strict=True)],
            schemes=[clone(s) for s in self.schemes])


class DebugfsDamon:
    """The ``damon`` debugfs directory: the root context's files plus ``mk_contexts``,
    ``rm_contexts`` and ``monitor_on``, and one directory per extra context."""

    def __init__(self, scheduler: Scheduler, registry: OperationsRegistry) -> None:
        self.scheduler = scheduler
        self.registry = registry
        self.contexts: list[DbgfsContext] = [DbgfsContext("")]
        self.root = Dir(self._root_entries)

    # -- directories --------------------------------------------------------------------

    def _root_entries(self) -> dict[str, Node]:
        root = self.contexts[0]
        out = self._context_files(root)
        out.update({
            "monitor_on": File(self._read_monitor_on, self._write_monitor_on),
            "mk_contexts": File(None, self._write_mk_contexts, mode=0o600),
            "rm_contexts": File(None, self._write_rm_contexts, mode=0o600),
        })
        for ctx in self.contexts[1:]:
            out[ctx.name] = Dir(lambda c=ctx: self._context_files(c))
        return dict(sorted(out.items()))

    def _context_files(self, ctx: DbgfsContext) -> dict[str, Node]:
        return {
            "attrs": File(lambda: self._read_attrs(ctx), lambda d: self._write_attrs(ctx, d)),
            "target_ids": File(lambda: self._read_target_ids(ctx),
                               lambda d: self._write_target_ids(ctx, d)),
            "init_regions": File(lambda: self._read_init_regions(ctx),
                                 lambda d: self._write_init_regions(ctx, d)),
            "schemes": File(lambda: self._read_schemes(ctx),
                            lambda d: self._write_schemes(ctx, d)),
            "kdamond_pid": File(lambda: self._read_kdamond_pid(ctx), _no_write, mode=0o600),
        }

    # -- attrs ----------------------------------------------------------------------------

    @staticmethod
    def _read_attrs(ctx: DbgfsContext) -> str:
        a = ctx.attrs
        return (f"{a.sample_us} {a.aggr_us} {a.update_us} {a.min_nr_regions} "
                f"{a.max_nr_regions}\n")

    def _write_attrs(self, ctx: DbgfsContext, data: str) -> None:
        s, a, r, lo, hi = parse_attrs(data)
        self._refuse_if_running(ctx)
        attrs = AttrsSpec(sample_us=s, aggr_us=a, update_us=r, min_nr_regions=lo,
                          max_nr_regions=hi)
        validate_attrs(attrs)
        ctx.attrs = attrs

    # -- target_ids -----------------------------------------------------------------------

    @staticmethod
    def _read_target_ids(ctx: DbgfsContext) -> str:
        return " ".join(str(t) for t in ctx.target_ids) + "\n"

    def _write_target_ids(self, ctx: DbgfsContext, data: str) -> None:
        is_pid = True
        text = data
        if dbgfs_keyword_match(data, "paddr\n"):
            is_pid = False
            # dbgfs.c overwrites the input with "42    " (scnprintf bounded by the length)
            text = f"{PADDR_TARGET_ID}    "[:max(len(data) - 1, 0)]
        ids = str_to_ints(text)
        if is_pid:
            for pid in ids:
                if not _pid_exists(pid):
                    raise DamonError("EINVAL", f"no process with pid {pid}")
        self._refuse_if_running(ctx)
        ctx.target_ids = []
        ctx.regions = []
        if not ids:
            return
        ctx.ops = "vaddr" if is_pid else "paddr"
        ctx.target_ids = ids
        ctx.regions = [[] for _ in ids]
        ctx.regions_destroyed_by = ctx.kdamond

    # -- init_regions ---------------------------------------------------------------------

    def _read_init_regions(self, ctx: DbgfsContext) -> str:
        self._refuse_if_running(ctx)
        ctx.settle()
        return "".join(f"{i} {s} {e}\n" for i, regs in enumerate(ctx.regions)
                       for s, e in regs)

    def _write_init_regions(self, ctx: DbgfsContext, data: str) -> None:
        triples = parse_init_regions(data)
        self._refuse_if_running(ctx)
        ctx.settle()
        ctx.regions = [[] for _ in ctx.target_ids]
        for idx, start, end in triples:
            try:
                _add_init_region(ctx, idx, start, end)
            except DamonError:
                ctx.regions = [[] for _ in ctx.target_ids]
                raise

    # -- schemes --------------------------------------------------------------------------

    def _read_schemes(self, ctx: DbgfsContext) -> str:
        stats = self._scheme_stats(ctx)
        lines = []
        for s, st in zip(ctx.schemes, stats, strict=True):
            p, q, w = s.pattern, s.quota, s.wmarks
            fields = (p.min_sz, p.max_sz, p.min_nr_accesses, p.max_nr_accesses, p.min_age,
                      p.max_age, ACTIONS.index(s.action), q.ms, q.sz, q.reset_interval_ms,
                      q.weight_sz, q.weight_nr_accesses, q.weight_age,
                      WMARK_METRICS.index(w.metric), w.interval_us, w.high, w.mid, w.low) + st
            lines.append(" ".join(str(f) for f in fields) + "\n")
        return "".join(lines)

    @staticmethod
    def _scheme_stats(ctx: DbgfsContext) -> list[StatsRow]:
        """The counters of the kdamond that last ran these schemes (zeros once rewritten)."""
        kd = ctx.stats_from
        live = [] if kd is None else [s.stats.as_tuple() for s in kd.ctx.schemes]
        return stats_by_index(len(ctx.schemes), live)

    def _write_schemes(self, ctx: DbgfsContext, data: str) -> list[str]:
        """Returns notes about input the kernel ignores silently: it answers success and
        installs only the complete 18-number entries before it (v5.18; none for a short
        line), so damond does the same and says so."""
        fields, rest = scan_schemes(data, MAX_SCHEMES)
        schemes = [_scheme_from_fields(f) for f in fields]
        self._refuse_if_running(ctx)
        ctx.schemes = schemes
        ctx.stats_from = None
        return _ignored_schemes_notes(len(schemes), rest)

    # -- monitor_on, kdamond_pid ----------------------------------------------------------

    def _read_monitor_on(self) -> str:
        # dbgfs.c answers from damon_nr_running_ctxs(): sysfs kdamonds count too
        return "on\n" if self.scheduler.running else "off\n"

    async def _write_monitor_on(self, data: str) -> None:
        word = sscanf_word(data)
        if word is None:
            raise DamonError("EINVAL", "expected 'on' or 'off'")
        if dbgfs_keyword_match(word, "on", len(data)):
            await self._start_all()
        elif dbgfs_keyword_match(word, "off", len(data)):
            await self._stop_all()
        else:
            raise DamonError("EINVAL", f"{word!r} is neither 'on' nor 'off'")

    async def _start_all(self) -> None:
        for ctx in self.contexts:
            if not ctx.target_ids:
                name = ctx.name or "the root context"
                raise DamonError("EINVAL", f"{name} has no target (write target_ids first)")
        if any(c.running for c in self.contexts):
            raise DamonError("EBUSY", "debugfs kdamonds are already running")
        for ctx in self.contexts:
            ctx.settle()
        kds = await self.scheduler.start(
            [(i, c.to_spec()) for i, c in enumerate(self.contexts)], group="debugfs",
            exclusive=True)
        for ctx, kd in zip(self.contexts, kds, strict=True):
            ctx.kdamond = kd
            ctx.stats_from = kd

    async def _stop_all(self) -> None:
        if not self.contexts[0].running:
            raise DamonError("EPERM", "debugfs monitoring is not on")
        for ctx in self.contexts:
            if ctx.running:
                await ctx.kdamond.stop()
            ctx.settle()

    @staticmethod
    def _read_kdamond_pid(ctx: DbgfsContext) -> str:
        return f"{ctx.kdamond.pid}\n" if ctx.running else "none\n"

    # -- mk_contexts, rm_contexts ---------------------------------------------------------

    def _write_mk_contexts(self, data: str) -> None:
        name = sscanf_word(data)
        if not name:
            raise DamonError("EINVAL", "expected a context name")
        if self.scheduler.running:
            raise DamonError("EBUSY", "kdamonds are running")
        if "/" in name:
            raise DamonError("EACCES", f"{name!r}: a name cannot contain '/'")
        if name in (".", "..") or name in self._root_entries():
            raise DamonError("EEXIST", f"{name!r} already exists")
        self.contexts.append(DbgfsContext(name))

    def _write_rm_contexts(self, data: str) -> None:
        name = sscanf_word(data)
        if not name:
            raise DamonError("EINVAL", "expected a context name")
        if self.scheduler.running:
            raise DamonError("EBUSY", "kdamonds are running")
        entries = self._root_entries()
        if name not in entries:
            raise DamonError("ENOENT", f"no context named {name!r}")
        if not entries[name].is_dir():
            raise DamonError("EINVAL", f"{name!r} is a file, not a context directory")
        self.contexts = [c for c in self.contexts if c.name != name]

    @staticmethod
    def _refuse_if_running(ctx: DbgfsContext) -> None:
        if ctx.running:
            raise DamonError("EBUSY", "monitoring is on; write 'off' to monitor_on first")


def _no_write(_data: str) -> None:
    # kdamond_pid has no write handler: the write system call fails with EINVAL
    raise DamonError("EINVAL", "kdamond_pid cannot be written")


def _pid_exists(pid: int) -> bool:
    """``find_get_pid()``: does a process (or thread) with this id exist?"""
    if pid <= 0:
        return False
    return os.path.exists(f"/proc/{pid}")


def _add_init_region(ctx: DbgfsContext, idx: int, start: int, end: int) -> None:
    """``add_init_region()`` of dbgfs.c (v5.18: the first number is the target's index)."""
    if start >= end:
        raise DamonError("EINVAL", f"region {start}-{end}: start must be below end")
    if not 0 <= idx < len(ctx.target_ids):
        raise DamonError("EINVAL", f"no target with index {idx} "
                         f"({len(ctx.target_ids)} targets)")
    regs = ctx.regions[idx]
    if regs and regs[-1][1] > start:
        raise DamonError("EINVAL", f"region {start}-{end} of target {idx} starts below the "
                         f"previous region's end {regs[-1][1]}")
    regs.append((start, end))


def _ignored_schemes_notes(installed: int, rest: str) -> list[str]:
    """What to tell a user whose ``schemes`` write had text the kernel (v5.18) ignores."""
    if not rest.strip():
        return []
    kept = f"{installed} scheme{'s' if installed != 1 else ''} installed"
    if installed == MAX_SCHEMES:
        return [f"{kept}; text after the {MAX_SCHEMES}th entry was ignored (the kernel reads "
                f"at most {MAX_SCHEMES} schemes)"]
    found = count_numbers(rest)
    return [f"{kept}; the rest was ignored: it starts with {found} number"
            f"{'s' if found != 1 else ''} where a scheme needs {SCHEME_FIELDS} (min_sz max_sz "
            "min_nr_accesses max_nr_accesses min_age max_age action quota_ms quota_sz "
            "quota_reset_ms weight_sz weight_nr_accesses weight_age wmark_metric "
            "wmark_interval_us wmark_high wmark_mid wmark_low), as the kernel (v5.18) "
            "ignores it without an error"]


def _scheme_from_fields(f: tuple[int, ...]) -> SchemeSpec:
    """One 18-field line, checked as v5.17+ ``str_to_schemes()`` checks it."""
    (min_sz, max_sz, min_nr, max_nr, min_age, max_age, action, q_ms, q_sz, q_reset, w_sz,
     w_nr, w_age, metric, interval, high, mid, low) = f
    if not 0 <= action < len(ACTIONS):
        raise DamonError("EINVAL", f"unknown action {action} (0-5: {', '.join(ACTIONS)})")
    if min_sz > max_sz or min_nr > max_nr or min_age > max_age:
        raise DamonError("EINVAL", "a minimum of the access pattern is above its maximum")
    if high < mid or high < low or mid < low:
        raise DamonError("EINVAL", "watermarks must satisfy high >= mid >= low")
    if not 0 <= metric < len(WMARK_METRICS):
        raise DamonError("EINVAL", f"unknown watermark metric {metric} (0 none, "
                         "1 free_mem_rate)")
    return SchemeSpec(
        action=ACTIONS[action],
        pattern=AccessPatternSpec(min_sz, max_sz, min_nr, max_nr, min_age, max_age),
        quota=QuotaSpec(q_ms, q_sz, q_reset, w_sz, w_nr, w_age),
        wmarks=WatermarksSpec(WMARK_METRICS[metric], interval, high, mid, low))
