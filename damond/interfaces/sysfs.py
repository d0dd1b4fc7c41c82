"""The DAMON sysfs interface (``/sys/kernel/mm/damon/admin``) as damond serves it.

The tree is the v5.18 hierarchy of the kernel's usage document plus the v5.19 additions
(``avail_operations``, the ``fvaddr`` operations, ``commit``), with the kernel's defaults, its
``nr_*`` directory creation (writing N always recreates N fresh children), its number parsing
(``kstrto*``: base 0, one trailing newline, ERANGE on overflow), its exact keyword matching
(``sysfs_streq``) and its errnos (``mm/damon/sysfs.c`` of v5.18/5.19). Cross-field checks happen
only at ``on``/``commit``, when a context is built from the tree, as in the kernel.

The files only edit a ``KdamondSpec`` per kdamond directory; a running kdamond has its own
copy and sees changes only through ``commit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from damond.core.spec import (
    ACTIONS,
    WMARK_METRICS,
    ContextSpec,
    KdamondSpec,
    RegionSpec,
    SchemeSpec,
    TargetSpec,
    clone,
)
from damond.errors import DamonError
from damond.interfaces.kparse import kstrtoint, kstrtouint, kstrtoul, sysfs_streq
from damond.interfaces.scheme_stats import SCHEME_STATS, StatsRow, stats_by_index
from damond.interfaces.vfs import Dir, File, Node

if TYPE_CHECKING:
    from damond.scheduler import Kdamond, Scheduler

#: ``state`` keywords damond implements (v5.18: on, off, update_schemes_stats; v5.19: commit).
STATE_COMMANDS = ("on", "off", "commit", "update_schemes_stats")
#: Later kernels' ``state`` keywords, refused with the version that introduced them.
LATER_STATE_COMMANDS = {
    "update_schemes_tried_regions": "6.2", "clear_schemes_tried_regions": "6.2",
    "update_schemes_tried_bytes": "6.6", "commit_schemes_quota_goals": "6.8",
    "update_schemes_effective_quotas": "6.9", "update_tuned_intervals": "6.15",
}
#: The kernel creates N directories for any N its allocator can hold and fails with ENOMEM
#: beyond; damond refuses earlier, before a single write could exhaust the daemon's memory.
MAX_NR_DIRS = 1 << 16


@dataclass
class SysfsContext:
    spec: ContextSpec = field(default_factory=ContextSpec)
    #: the stats files' content: refreshed only by ``update_schemes_stats`` (as in 5.18)
    scheme_stats: list[StatsRow] = field(default_factory=list)

    @classmethod
    def holding(cls, spec: ContextSpec, shown: list[StatsRow] | None = None) -> SysfsContext:
        """A context directory holding a copy of ``spec``, its stats files showing what
        ``shown`` showed for the schemes matched by index (zeros for the others)."""
        return cls(clone(spec), stats_by_index(len(spec.schemes), shown or []))


@dataclass
class SysfsKdamond:
    contexts: list[SysfsContext] = field(default_factory=list)
    kdamond: Kdamond | None = None
    #: set once ``on`` built and started a context (``off`` then answers EPERM, not EINVAL)
    ever_started: bool = False

    @property
    def running(self) -> bool:
        return self.kdamond is not None and self.kdamond.running

    def to_spec(self) -> KdamondSpec:
        return KdamondSpec(contexts=[clone(c.spec) for c in self.contexts])


def _ul(get: Callable[[], int], set_: Callable[[int], None],
        parse: Callable[[str], int] = kstrtoul) -> File:
    def write(data: str) -> None:
        set_(parse(data))

    return File(lambda: f"{get()}\n", write)


def _attr(obj, name: str, parse: Callable[[str], int] = kstrtoul) -> File:
    return _ul(lambda: getattr(obj, name), lambda v: setattr(obj, name, v), parse)


def _keyword(get: Callable[[], str], set_: Callable[[str], None],
             choices: Callable[[], tuple[str, ...] | list[str]], what: str) -> File:
    def write(data: str) -> None:
        for c in choices():
            if sysfs_streq(data, c):
                set_(c)
                return
        raise DamonError("EINVAL", f"{data.rstrip(chr(10))!r} is not one of "
                         f"{', '.join(choices())} ({what})")

    return File(lambda: f"{get()}\n", write)


def _nr_file(items: list, make: Callable[[], object], *, max_nr: int | None = None,
             busy: Callable[[], str | None] | None = None,
             after: Callable[[int], None] | None = None) -> File:
    """An ``nr_*`` file: writing N removes every child and creates N fresh ones."""

    def write(data: str) -> None:
        nr = kstrtoint(data)
        if nr < 0:
            raise DamonError("EINVAL", f"{nr} is negative")
        if max_nr is not None and nr > max_nr:
            raise DamonError("EINVAL", f"at most {max_nr} supported")
        if nr > MAX_NR_DIRS:
            raise DamonError("ENOMEM", f"cannot create {nr} directories (damond's limit is "
                             f"{MAX_NR_DIRS})")
        if busy is not None and (why := busy()):
            raise DamonError("EBUSY", why)
        items[:] = [make() for _ in range(nr)]
        if after is not None:
            after(nr)

    return File(lambda: f"{len(items)}\n", write)


def _indexed(nr_name: str, nr_file: File, items: list, child: Callable[[int], Node]
             ) -> Callable[[], dict[str, Node]]:
    def entries() -> dict[str, Node]:
        out: dict[str, Node] = {nr_name: nr_file}
        for i in range(len(items)):
            out[str(i)] = child(i)
        return out

    return entries


def _alias_nr(nr_name: str | None, extra: dict[str, str] | None = None):
    """The kernel documentation spells some files loosely (``kdamonds/nr``, ``targets/0/pid``,
    ``access_patterns/``): damond accepts those spellings for the real files, with a note."""

    def alias(name: str):
        if name == "nr" and nr_name:
            return nr_name, f"'nr' is accepted as '{nr_name}' (the kernel's file name)"
        if extra and name in extra:
            return extra[name], f"'{name}' is accepted as '{extra[name]}' (the kernel's name)"
        return None

    return alias


class SysfsAdmin:
    """The ``admin`` directory and everything below it."""

    def __init__(self, scheduler: Scheduler, avail_operations: Callable[[], list[str]]) -> None:
        self.scheduler = scheduler
        self.avail_operations = avail_operations
        self.kdamonds: list[SysfsKdamond] = []
        self.root = Dir(lambda: {"kdamonds": self._kdamonds_dir()})

    # -- whole-tree access (configuration files, dumps) ---------------------------------
    #
    # A configuration file drives the tree only through these methods. Starting, committing
    # and stopping run the code the ``state`` file runs (same checks, same errnos); the others
    # do at once what writing every file of a kdamond directory would do.

    def specs(self) -> list[KdamondSpec]:
        return [k.to_spec() for k in self.kdamonds]

    def load(self, specs: list[KdamondSpec]) -> None:
        """Replace the tree's content (as writing every file would). EBUSY while running."""
        if any(k.running for k in self.kdamonds):
            raise DamonError("EBUSY", "kdamonds are running")
        self.kdamonds = [SysfsKdamond(contexts=[SysfsContext.holding(c) for c in k.contexts])
                         for k in specs]

    def is_running(self, index: int) -> bool:
        """Whether kdamond ``index`` exists and runs."""
        return index < len(self.kdamonds) and self.kdamonds[index].running

    def set_context(self, index: int, spec: ContextSpec) -> None:
        """Make kdamond ``index`` (an existing one, or a new one right after the last) hold
        ``spec`` as its one context. Its stats files keep what they showed for the schemes
        matched by index, as the running schemes keep their counters across a commit."""
        if index == len(self.kdamonds):
            self.kdamonds.append(SysfsKdamond())
        kd = self.kdamonds[index]
        shown = kd.contexts[0].scheme_stats if kd.contexts else []
        kd.contexts[:] = [SysfsContext.holding(spec, shown)]

    async def turn_on(self, index: int) -> None:
        """What writing ``on`` to ``kdamonds/<index>/state`` does."""
        await self._turn_on(index, self.kdamonds[index])

    async def commit_context(self, index: int, spec: ContextSpec) -> None:
        """Commit ``spec`` to running kdamond ``index`` online (as writing its files and then
        ``commit`` does); the files show ``spec`` only once the commit succeeded."""
        kdamond = self._require_running(self.kdamonds[index])
        await kdamond.commit(clone(spec))
        self.set_context(index, spec)

    async def stop(self, index: int) -> bool:
        """Stop kdamond ``index`` if it runs (as writing ``off`` does); True if it ran."""
        kd = self.kdamonds[index]
        if not kd.running:
            return False
        await self._turn_off(kd)
        return True

    async def truncate(self, nr: int) -> list[int]:
        """Keep the first ``nr`` kdamonds: stop and remove the others, last first. Returns the
        indices of those that were running, in the order they were stopped."""
        stopped = []
        for i in range(len(self.kdamonds) - 1, nr - 1, -1):
            if await self.stop(i):
                stopped.append(i)
            del self.kdamonds[i]
        return stopped

    # -- directories ----------------------------------------------------------------------

    def _kdamonds_dir(self) -> Dir:
        def busy() -> str | None:
            running = [str(i) for i, k in enumerate(self.kdamonds) if k.running]
            return f"kdamond {', '.join(running)} is running" if running else None

        nr = _nr_file(self.kdamonds, SysfsKdamond, busy=busy)
        return Dir(_indexed("nr_kdamonds", nr, self.kdamonds, self._kdamond_dir),
                   _alias_nr("nr_kdamonds"))

    def _kdamond_dir(self, k: int) -> Dir:
        kd = self.kdamonds[k]
        return Dir(lambda: {
            "state": File(lambda: "on\n" if kd.running else "off\n",
                          lambda data: self._write_state(k, kd, data)),
            "pid": File(lambda: f"{kd.kdamond.pid if kd.running else -1}\n"),
            "contexts": self._contexts_dir(kd),
        })

    def _contexts_dir(self, kd: SysfsKdamond) -> Dir:
        nr = _nr_file(kd.contexts, SysfsContext, max_nr=1)
        return Dir(_indexed("nr_contexts", nr, kd.contexts,
                            lambda c: self._context_dir(kd.contexts[c])),
                   _alias_nr("nr_contexts"))

    def _context_dir(self, c: SysfsContext) -> Dir:
        spec = c.spec
        return Dir(lambda: {
            "avail_operations": File(lambda: "".join(f"{n}\n" for n in self.avail_operations())),
            "operations": _keyword(lambda: spec.ops, lambda v: setattr(spec, "ops", v),
                                   self.avail_operations, "avail_operations"),
            "monitoring_attrs": _monitoring_attrs_dir(spec),
            "targets": _targets_dir(spec),
            "schemes": _schemes_dir(c),
        })

    # -- state ----------------------------------------------------------------------------

    async def _write_state(self, index: int, kd: SysfsKdamond, data: str) -> None:
        cmd = next((c for c in STATE_COMMANDS if sysfs_streq(data, c)), None)
        if cmd is None:
            word = data.rstrip("\n")
            later = LATER_STATE_COMMANDS.get(word)
            if later:
                raise DamonError("EINVAL", f"{word!r} (Linux {later}) is not implemented by "
                                 f"damond; it implements {', '.join(STATE_COMMANDS)}")
            raise DamonError("EINVAL", f"{word!r} is not one of {', '.join(STATE_COMMANDS)}")
        if cmd == "on":
            await self._turn_on(index, kd)
        elif cmd == "off":
            await self._turn_off(kd)
        elif cmd == "commit":
            await self._commit(kd)
        else:
            await self._update_schemes_stats(kd)

    def _one_context(self, kd: SysfsKdamond) -> SysfsContext:
        if len(kd.contexts) != 1:
            raise DamonError("EINVAL", f"nr_contexts is {len(kd.contexts)}; exactly 1 context "
                             "is supported")
        return kd.contexts[0]

    async def _turn_on(self, index: int, kd: SysfsKdamond) -> None:
        if kd.running:
            raise DamonError("EBUSY", f"kdamond {index} is already running")
        ctx = self._one_context(kd)
        kd.ever_started = False  # the kernel destroys the previous context first
        [kdamond] = await self.scheduler.start([(index, clone(ctx.spec))], group="sysfs",
                                               exclusive=False)
        kd.kdamond = kdamond
        kd.ever_started = True

    async def _turn_off(self, kd: SysfsKdamond) -> None:
        if not kd.ever_started:
            raise DamonError("EINVAL", "the kdamond was never turned on")
        if not kd.running:
            raise DamonError("EPERM", "the kdamond is not running")
        await kd.kdamond.stop()

    def _require_running(self, kd: SysfsKdamond) -> Kdamond:
        if not kd.running:
            raise DamonError("EINVAL", "the kdamond is not running")
        return kd.kdamond

    async def _commit(self, kd: SysfsKdamond) -> None:
        kdamond = self._require_running(kd)
        ctx = self._one_context(kd)
        await kdamond.commit(clone(ctx.spec))

    async def _update_schemes_stats(self, kd: SysfsKdamond) -> None:
        kdamond = self._require_running(kd)
        stats = await kdamond.call(lambda c: [s.stats.as_tuple() for s in c.schemes])
        for ctx in kd.contexts[:1]:
            # a scheme directory the running context lacks keeps what its files showed
            ctx.scheme_stats[:] = stats_by_index(len(ctx.scheme_stats), stats, ctx.scheme_stats)


def _monitoring_attrs_dir(spec: ContextSpec) -> Dir:
    a = spec.attrs
    intervals = Dir(lambda: {"sample_us": _attr(a, "sample_us"), "aggr_us": _attr(a, "aggr_us"),
                             "update_us": _attr(a, "update_us")})
    nr_regions = Dir(lambda: {"min": _attr(a, "min_nr_regions"),
                              "max": _attr(a, "max_nr_regions")})
    return Dir(lambda: {"intervals": intervals, "nr_regions": nr_regions})


def _targets_dir(spec: ContextSpec) -> Dir:
    nr = _nr_file(spec.targets, TargetSpec)
    return Dir(_indexed("nr_targets", nr, spec.targets, lambda t: _target_dir(spec.targets[t])),
               _alias_nr("nr_targets"))


def _target_dir(t: TargetSpec) -> Dir:
    nr = _nr_file(t.regions, RegionSpec)
    regions = Dir(_indexed("nr_regions", nr, t.regions, lambda r: _region_dir(t.regions[r])),
                  _alias_nr("nr_regions"))
    return Dir(lambda: {"pid_target": _attr(t, "pid", kstrtoint), "regions": regions},
               _alias_nr(None, {"pid": "pid_target"}))


def _region_dir(r: RegionSpec) -> Dir:
    return Dir(lambda: {"start": _attr(r, "start"), "end": _attr(r, "end")})


def _schemes_dir(c: SysfsContext) -> Dir:
    spec = c.spec

    def resize(nr: int) -> None:
        c.scheme_stats[:] = stats_by_index(nr)

    nr = _nr_file(spec.schemes, SchemeSpec, after=resize)
    return Dir(_indexed("nr_schemes", nr, spec.schemes, lambda s: _scheme_dir(c, s)),
               _alias_nr("nr_schemes"))


def _scheme_dir(c: SysfsContext, index: int) -> Dir:
    s = c.spec.schemes[index]
    p, q, w = s.pattern, s.quota, s.wmarks

    def minmax(lo: str, hi: str) -> Dir:
        return Dir(lambda: {"min": _attr(p, lo), "max": _attr(p, hi)})

    access_pattern = Dir(lambda: {"sz": minmax("min_sz", "max_sz"),
                                  "nr_accesses": minmax("min_nr_accesses", "max_nr_accesses"),
                                  "age": minmax("min_age", "max_age")})
    weights = Dir(lambda: {"sz_permil": _attr(q, "weight_sz", kstrtouint),
                           "nr_accesses_permil": _attr(q, "weight_nr_accesses", kstrtouint),
                           "age_permil": _attr(q, "weight_age", kstrtouint)})
    quotas = Dir(lambda: {"ms": _attr(q, "ms"), "bytes": _attr(q, "sz"),
                          "reset_interval_ms": _attr(q, "reset_interval_ms"),
                          "weights": weights})
    watermarks = Dir(lambda: {
        "metric": _keyword(lambda: w.metric, lambda v: setattr(w, "metric", v),
                           lambda: WMARK_METRICS, "watermark metrics"),
        "interval_us": _attr(w, "interval_us"), "high": _attr(w, "high"),
        "mid": _attr(w, "mid"), "low": _attr(w, "low")})

    def stat_file(i: int) -> File:
        return File(lambda: f"{c.scheme_stats[index][i] if index < len(c.scheme_stats) else 0}\n")

    stats = Dir(lambda: {name: stat_file(i) for i, name in enumerate(SCHEME_STATS)})
    return Dir(lambda: {
        "action": _keyword(lambda: s.action, lambda v: setattr(s, "action", v),
                           lambda: ACTIONS, "DAMOS actions"),
        "access_pattern": access_pattern, "quotas": quotas, "watermarks": watermarks,
        "stats": stats,
    }, _alias_nr(None, {"access_patterns": "access_pattern"}))
