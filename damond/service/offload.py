"""Kernel offload: run a whole context as a kdamond of the running kernel's own DAMON.

Where the kernel's DAMON has a context's operation set, the kernel is the cheapest correct
sensor (a user-space sensor pays system calls and reverse-map walks: about 6x the kernel's cost
per region). damond then writes the kernel's sysfs files, turns the kdamond on and mirrors it:
``commit`` and ``update_schemes_stats`` go to the kernel, ``pid`` and the scheme stats read back
what the kernel says, and aggregations come from the kernel's ``damon:damon_aggregated``
tracepoint, read in a tracefs instance of damond's own and turned back into the core's
:class:`~damond.core.events.AggregationEvent`, so ``trace``, records, reports and metrics work
unchanged.

What it costs (measured in the guest, Linux 6.12 under emulation, issue 10): reading and
parsing every event line in Python cost damond more than twice the CPU the kernel's kdamond
spent monitoring. So the tracepoint is on only while someone subscribes to the kdamond's
aggregations (``trace``, a record, a live report); the event lines are read in blocks when
``trace_pipe`` polls readable and parsed in bulk (numpy); and the kdamond's end is learnt
from its thread's pidfd. An offloaded kdamond nobody subscribes to costs damond no wakeup at
all; ``status`` says whether its events are read (``events``).

Coexistence rules (why each exists):

* damond creates kernel kdamonds only in a tree that is empty or holds only kdamonds damond
  created: an ``nr_kdamonds`` write recreates every kdamond directory (another user's setup
  would be lost) and is refused while any kdamond runs.
* What damond created is recorded in ``STATE_DIR/offload-<daemon pid>.json`` (boot id, the
  daemon's pid and start time, the tree size it found and set, each slot's kernel pid, the trace
  instances). A later daemon removes exactly that after a SIGKILL, and only while the tree still
  looks as recorded; anything else is left alone with a warning.
* A context the kernel cannot take completely (an operation set the kernel lacks, a field
  damond does not convert) runs in user space, never half offloaded; ``status`` says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
import trio

from damond.core.build import commit_context
from damond.core.context import Context, SchemeStats
from damond.core.events import AggregationEvent, TargetSnapshot
from damond.core.regions import Regions
from damond.core.schemes import TriedRegion, WalkControl
from damond.core.spec import (
    AccessPatternSpec,
    AttrsSpec,
    ContextSpec,
    QuotaSpec,
    RegionSpec,
    SchemeSpec,
    TargetSpec,
    WatermarksSpec,
)
from damond.errors import DamonError
from damond.interfaces.scheme_stats import SCHEME_STATS
from damond.interfaces.tracepoint import TracepointColumns, empty_columns, parse_block
from damond.platform import kernel_damon
from damond.platform.kernel_damon import KernelDamonTree, TraceInstance
from damond.scheduler import KdamondStats

if TYPE_CHECKING:
    from damond.scheduler import Scheduler

log = structlog.get_logger("damond.service.offload")

MODES = ("auto", "never")
STATE_DIR = "/run/damond"
#: how often the kernel's ``state`` and ``pid`` are read to learn that its kdamond stopped,
#: only where the kernel has no pidfd (Linux < 5.3); with one, damond waits in ``poll()``
LIVENESS_POLL_S = 1.0
#: after ``trace_pipe`` turns readable (at an aggregation's first event), how long damond lets
#: the kernel finish emitting that aggregation before reading: one read per aggregation
#: instead of one per few events (capped at a quarter of the aggregation interval)
SETTLE_S = 0.02
#: operation sets that take a process as target (``pid_target``)
PROCESS_OPS = ("vaddr", "fvaddr")

# Fields damond converts into the kernel's files, per spec class. Any other field (a damond-only
# extension, or a newer kernel feature the converter does not write) that differs from its
# default makes the context run in user space, so nothing is ever silently dropped.
_CONVERTED: dict[type, set[str]] = {
    ContextSpec: {"ops", "attrs", "targets", "schemes", "offload"},
    AttrsSpec: {"sample_us", "aggr_us", "update_us", "min_nr_regions", "max_nr_regions"},
    TargetSpec: {"pid", "regions"},
    RegionSpec: {"start", "end"},
    SchemeSpec: {"action", "pattern", "quota", "wmarks", "apply_interval_us"},
    AccessPatternSpec: {f.name for f in dataclasses.fields(AccessPatternSpec)},
    QuotaSpec: {"ms", "sz", "reset_interval_ms", "weight_sz", "weight_nr_accesses",
                "weight_age"},
    WatermarksSpec: {f.name for f in dataclasses.fields(WatermarksSpec)},
}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def unconverted_field(obj: Any, path: str = "context") -> str | None:
    """The first field of spec ``obj`` that offload would not carry to the kernel, or None."""
    converted = _CONVERTED.get(type(obj), set())
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name not in converted:
            if value != _default(f):
                return f"{path}.{f.name}"
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if dataclasses.is_dataclass(item):
                sub = f"{path}.{f.name}[{i}]" if isinstance(value, list) else f"{path}.{f.name}"
                found = unconverted_field(item, sub)
                if found:
                    return found
    return None


class Unavailable(Exception):
    """Offload cannot take this context; the message is the reason ``status`` shows."""


# --------------------------------------------------------------------------------------------
# Spec -> the kernel's files
# --------------------------------------------------------------------------------------------


def _kwrite(tree: KernelDamonTree, rel: str, value: Any) -> None:
    try:
        tree.write(rel, value)
    except OSError as e:
        name = os.strerror(e.errno) if e.errno else str(e)
        raise DamonError(_errno_name(e), f"the kernel refused {value!r} for {rel} "
                         f"({name})") from None


def _errno_name(e: OSError) -> str:
    import errno as _errno

    return _errno.errorcode.get(e.errno or 0, "EIO")


def _set_nr(tree: KernelDamonTree, rel: str, nr: int) -> None:
    """``nr_*`` writes recreate every child: write only when the count changes (a commit then
    keeps the scheme directories and their stats files)."""
    if int(tree.read(rel)) != nr:
        _kwrite(tree, rel, nr)


def write_context(tree: KernelDamonTree, slot: int, spec: ContextSpec) -> None:
    """Write ``spec`` into kernel kdamond ``slot``'s one context directory."""
    _set_nr(tree, f"{slot}/contexts/nr_contexts", 1)
    c = f"{slot}/contexts/0"
    _kwrite(tree, f"{c}/operations", spec.ops)
    a = spec.attrs
    for name, value in (("sample_us", a.sample_us), ("aggr_us", a.aggr_us),
                        ("update_us", a.update_us)):
        _kwrite(tree, f"{c}/monitoring_attrs/intervals/{name}", value)
    _kwrite(tree, f"{c}/monitoring_attrs/nr_regions/min", a.min_nr_regions)
    _kwrite(tree, f"{c}/monitoring_attrs/nr_regions/max", a.max_nr_regions)
    _set_nr(tree, f"{c}/targets/nr_targets", len(spec.targets))
    for i, t in enumerate(spec.targets):
        d = f"{c}/targets/{i}"
        if spec.ops in PROCESS_OPS:
            _kwrite(tree, f"{d}/pid_target", t.pid)
        _set_nr(tree, f"{d}/regions/nr_regions", len(t.regions))
        for r, region in enumerate(t.regions):
            _kwrite(tree, f"{d}/regions/{r}/start", region.start)
            _kwrite(tree, f"{d}/regions/{r}/end", region.end)
    _set_nr(tree, f"{c}/schemes/nr_schemes", len(spec.schemes))
    for i, s in enumerate(spec.schemes):
        _write_scheme(tree, f"{c}/schemes/{i}", s)


def _write_scheme(tree: KernelDamonTree, d: str, s: SchemeSpec) -> None:
    _kwrite(tree, f"{d}/action", s.action)
    p, q, w = s.pattern, s.quota, s.wmarks
    for name, lo, hi in (("sz", p.min_sz, p.max_sz),
                         ("nr_accesses", p.min_nr_accesses, p.max_nr_accesses),
                         ("age", p.min_age, p.max_age)):
        _kwrite(tree, f"{d}/access_pattern/{name}/min", lo)
        _kwrite(tree, f"{d}/access_pattern/{name}/max", hi)
    if s.apply_interval_us:
        if not tree.exists(f"{d}/apply_interval_us"):
            raise Unavailable("the kernel lacks apply_interval_us (Linux 6.7+)")
        _kwrite(tree, f"{d}/apply_interval_us", s.apply_interval_us)
    _kwrite(tree, f"{d}/quotas/ms", q.ms)
    _kwrite(tree, f"{d}/quotas/bytes", q.sz)
    _kwrite(tree, f"{d}/quotas/reset_interval_ms", q.reset_interval_ms)
    _kwrite(tree, f"{d}/quotas/weights/sz_permil", q.weight_sz)
    _kwrite(tree, f"{d}/quotas/weights/nr_accesses_permil", q.weight_nr_accesses)
    _kwrite(tree, f"{d}/quotas/weights/age_permil", q.weight_age)
    _kwrite(tree, f"{d}/watermarks/metric", w.metric)
    for name in ("interval_us", "high", "mid", "low"):
        _kwrite(tree, f"{d}/watermarks/{name}", getattr(w, name))


def read_scheme_stats(tree: KernelDamonTree, slot: int, nr: int) -> list[tuple[int, ...]]:
    """The kernel's stats files of ``nr`` schemes (as the last ``update_schemes_stats`` left
    them)."""
    c = f"{slot}/contexts/0/schemes"
    return [tuple(int(tree.read(f"{c}/{i}/stats/{name}")) for name in SCHEME_STATS)
            for i in range(nr)]


def read_tried_regions(tree: KernelDamonTree, slot: int, nr: int, total_bytes_only: bool
                       ) -> tuple[dict[int, list[TriedRegion]], dict[int, int]]:
    """The kernel's ``tried_regions`` of ``nr`` schemes after an ``update_schemes_tried_*``
    write: regions (unless only the totals were asked for) and ``total_bytes`` per scheme.
    Files a kernel lacks (``total_bytes`` before 6.6, ``sz_filter_passed`` before 6.14) read
    as 0."""
    c = f"{slot}/contexts/0/schemes"

    def number(rel: str) -> int:
        return int(tree.read(rel)) if tree.exists(rel) else 0

    regions: dict[int, list[TriedRegion]] = {}
    totals: dict[int, int] = {}
    for i in range(nr):
        d = f"{c}/{i}/tried_regions"
        totals[i] = number(f"{d}/total_bytes")
        if total_bytes_only:
            continue
        found = []
        r = 0
        while tree.exists(f"{d}/{r}"):
            found.append(TriedRegion(number(f"{d}/{r}/start"), number(f"{d}/{r}/end"),
                                     number(f"{d}/{r}/nr_accesses"), number(f"{d}/{r}/age"),
                                     number(f"{d}/{r}/sz_filter_passed")))
            r += 1
        regions[i] = found
        if not tree.exists(f"{d}/total_bytes"):
            totals[i] = sum(t.end - t.start for t in found)
    return regions, totals


# --------------------------------------------------------------------------------------------
# Tracepoint lines -> AggregationEvents
# --------------------------------------------------------------------------------------------


class KernelTraceGrouper:
    """Groups one kernel kdamond's ``damon_aggregated`` lines from tracefs into aggregations.

    tracefs stamps every event with its own time (the regions of one aggregation differ by
    microseconds), so aggregations are told apart by counting, as the kernel emits them: per
    target in index order, ``nr_regions`` consecutive events, all in one burst (the kernel
    emits an aggregation's events in one loop without sleeping; bursts are ``aggr_us`` apart).
    An aggregation is complete when the last target's snapshot is. Events that do not continue
    the expected sequence (lost to a full buffer) drop the aggregation in progress
    (``dropped``); reading resumes at the next burst, which starts after a pause of more than
    half an aggregation interval. Blocks are parsed in bulk (:func:`parse_block`); the
    partial aggregation at a block's end waits for the next block. A burst cut by enabling
    the tracepoint in its middle is skipped without counting as dropped.
    """

    def __init__(self, nr_targets: int, sample_us: int, aggr_us: int) -> None:
        self.nr_targets = nr_targets
        self.sample_us, self.aggr_us = sample_us, aggr_us
        self.dropped = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything read (the tracepoint was off: the next line may be anywhere)."""
        self._pend = empty_columns()
        self._prev_time: int | None = None  # of the row just before ``_pend``
        self._previous_end_ns: int | None = None
        self._synced = False

    def feed(self, line: str) -> AggregationEvent | None:
        """One line; the aggregation it completed, if any."""
        done = self.feed_block(line if line.endswith("\n") else line + "\n")
        return done[-1] if done else None

    def feed_block(self, text: str) -> list[AggregationEvent]:
        """Complete lines from ``trace_pipe``; the aggregations they completed, in order."""
        new = parse_block(text, missing_age=0)
        if not len(new):
            return []
        cols = TracepointColumns.concat(self._pend, new) if len(self._pend) else new
        n = len(cols)
        time_ns = cols.time_ns
        gap = np.empty(n, dtype=bool)
        gap[0] = self._prev_time is None or time_ns[0] - self._prev_time > self.aggr_us * 500
        gap[1:] = np.diff(time_ns) > self.aggr_us * 500
        out: list[AggregationEvent] = []
        i = 0
        while i < n:
            verdict, j = self._match(cols, gap, i, n)
            if verdict == "done":
                out.append(self._event(cols, i, j))
                self._synced = True
                i = j
                continue
            if verdict == "more":
                if i:
                    self._prev_time = int(time_ns[i - 1])
                self._pend = cols.slice(i)
                return out
            if self._synced:
                self.dropped += 1
            starts = np.flatnonzero(gap[i + 1:] & (cols.target_id[i + 1:] == 0))
            i = i + 1 + int(starts[0]) if len(starts) else n
        self._prev_time = int(time_ns[-1])
        self._pend = empty_columns()
        return out

    def _match(self, cols: TracepointColumns, gap: np.ndarray, i: int, n: int
               ) -> tuple[str, int]:
        """Whether the rows from ``i`` are one complete aggregation ("done", its end), its
        valid beginning ("more") or not an aggregation ("bad")."""
        k, target = i, 0
        while True:
            if k >= n:
                return "more", n
            nr = int(cols.nr_regions[k])
            if int(cols.target_id[k]) != target or nr < 1 or (k > i and gap[k]):
                return "bad", k
            e = min(k + nr, n)
            if (np.any(cols.target_id[k:e] != target) or np.any(cols.nr_regions[k:e] != nr)
                    or np.any(gap[k + 1:e])):
                return "bad", k
            if k + nr > n:
                return "more", n
            k, target = k + nr, target + 1
            if target == self.nr_targets:
                return "done", k

    def _event(self, cols: TracepointColumns, i: int, j: int) -> AggregationEvent:
        end_ns = int(cols.time_ns[i])
        aggr_ns = self.aggr_us * 1000
        start_ns = self._previous_end_ns
        if start_ns is None or not 0 < end_ns - start_ns <= 1.5 * aggr_ns:
            start_ns = end_ns - aggr_ns
        self._previous_end_ns = end_ns
        targets = []
        k = i
        for tid in range(self.nr_targets):
            e = k + int(cols.nr_regions[k])
            targets.append(TargetSnapshot(tid, cols.start[k:e].copy(), cols.end[k:e].copy(),
                                          cols.nr_accesses[k:e].copy(), cols.age[k:e].copy()))
            k = e
        return AggregationEvent(0, 0, start_ns, end_ns, self.sample_us, self.aggr_us,
                                tuple(targets))


# --------------------------------------------------------------------------------------------
# Ownership: what damond created in the kernel's tree
# --------------------------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class Ownership:
    """The state file's content."""

    found_nr: int = 0  # nr_kdamonds before damond grew the tree
    nr: int = 0  # nr_kdamonds damond set
    slots: dict[int, int] = field(default_factory=dict)  # slot -> kernel pid (-1: off)
    instances: list[str] = field(default_factory=list)


class OffloadManager:
    """Decides per context whether it runs in the kernel, owns the kernel kdamonds damond
    created (slots), and cleans up what a killed previous daemon left."""

    def __init__(self, mode: str = "auto", *, tree: KernelDamonTree | None = None,
                 tracefs: str | None = None, state_dir: str = STATE_DIR,
                 slots_hint: Callable[[], int] = lambda: 1) -> None:
        if mode not in MODES:
            raise DamonError("EINVAL", f"offload mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.tree = tree or KernelDamonTree()
        self._tracefs = tracefs
        self.state_dir = state_dir
        self.slots_hint = slots_hint
        self.own = Ownership()
        self.busy: dict[int, OffloadedKdamond] = {}
        self.state_path = os.path.join(state_dir, f"offload-{os.getpid()}.json")

    # -- facts ---------------------------------------------------------------------------

    @property
    def tracefs(self) -> str | None:
        return self._tracefs or kernel_damon.find_tracefs()

    def kernel_operations(self) -> list[str] | None:
        """The kernel's operation sets, read without changing the tree (None: unknown, the
        tree has no context directory; the guest and host kernels list theirs in any)."""
        if not self.tree.present():
            return None
        return self.tree.avail_operations()

    def tree_blocker(self) -> str | None:
        """Why damond may not create kdamonds in the kernel's tree now, or None."""
        if not self.tree.present():
            return "the kernel has no DAMON sysfs interface (/sys/kernel/mm/damon/admin)"
        if not os.access(self.tree.path("nr_kdamonds"), os.W_OK):
            return "no permission to write the kernel's DAMON files (root needed)"
        nr = self.tree.nr_kdamonds()
        if nr == 0 or nr == self.own.nr:
            return None
        running = self.tree.running()
        who = (f"kdamond {', '.join(map(str, running))} runs" if running
               else f"{nr} kdamond directories exist")
        return (f"the kernel's DAMON tree is in use by someone else ({who}, not created by "
                "damond); writing nr_kdamonds would recreate their directories, and the "
                "kernel refuses it (EBUSY) while any kdamond runs")

    def refusal(self, spec: ContextSpec, group: str) -> str | None:
        """Why ``spec`` cannot run offloaded (None: it can, as far as reading tells)."""
        if self.mode == "never":
            return "offload is off (damond serve --offload never)"
        if getattr(spec, "offload", "auto") == "never":
            return "the configuration asks for user space (damond_offload: never)"
        if group != "sysfs":
            return f"{group} kdamonds run in user space (offload serves the sysfs interface)"
        if not self.tree.present():
            return "the kernel has no DAMON sysfs interface (/sys/kernel/mm/damon/admin)"
        ops = self.kernel_operations()
        if ops is not None and spec.ops not in ops:
            return (f"the kernel's DAMON lacks the {spec.ops} operations (it has "
                    f"{', '.join(ops) or 'none'})")
        blocker = self.tree_blocker()
        if blocker:
            return blocker
        missing = unconverted_field(spec)
        if missing:
            return f"{missing} is set and offload does not carry it to the kernel"
        if self.tracefs is None:
            return "tracefs with DAMON's events is not mounted (no damon_aggregated events)"
        if ops is None and spec.ops not in ("vaddr", "fvaddr", "paddr"):
            return f"the kernel's DAMON has no {spec.ops} operations"
        return None

    def feature_lines(self) -> list[str]:
        """``features`` lines: the kernel's DAMON, its operation sets, offload per set."""
        if not self.tree.present():
            return ["kernel_damon: no (no /sys/kernel/mm/damon/admin)",
                    f"offload: {self.mode} (unavailable: the kernel has no DAMON sysfs)"]
        ops = self.kernel_operations()
        lines = [f"kernel_damon: yes (nr_kdamonds {self.tree.nr_kdamonds()}, running "
                 f"{len(self.tree.running())}, {len(self.busy)} of them damond's)",
                 "kernel_damon operations: " + (" ".join(ops) if ops is not None else
                                                "unknown (no context directory to read)")]
        lines.append(f"offload mode: {self.mode}")
        for name in ("vaddr", "fvaddr", "paddr"):
            why = self.refusal(ContextSpec(ops=name), "sysfs")
            lines.append(f"offload {name}: " + ("yes" if why is None else f"no ({why})"))
        return lines

    # -- slots ---------------------------------------------------------------------------

    def acquire(self) -> int:
        """A free kernel kdamond slot of damond's, growing the tree when it may."""
        free = [s for s in self.own.slots if s not in self.busy]
        if free:
            return min(free)
        blocker = self.tree_blocker()
        if blocker:
            raise Unavailable(blocker)
        found = self.tree.nr_kdamonds() if not self.own.nr else self.own.found_nr
        want = max(self.own.nr - found + 1, self.slots_hint(), 1)
        if self.busy:
            raise Unavailable(
                f"all {self.own.nr - found} kernel kdamonds damond created are busy, and the "
                "kernel refuses nr_kdamonds writes (EBUSY) while one runs")
        self._save(Ownership(found, found + want, {found + i: -1 for i in range(want)},
                             self.own.instances))  # recorded before the write: a kill after
        try:
            self.tree.set_nr_kdamonds(found + want)
        except OSError as e:
            self._save(Ownership())
            raise Unavailable(f"the kernel refused nr_kdamonds {found + want} "
                              f"({os.strerror(e.errno or 0)})") from None
        return found

    def mark(self, slot: int, kernel_pid: int, runner: OffloadedKdamond | None) -> None:
        """Record slot ``slot``'s kernel thread (-1: off) and who uses it (None: free)."""
        self.own.slots[slot] = kernel_pid
        if runner is None:
            self.busy.pop(slot, None)
        else:
            self.busy[slot] = runner
        self._save(self.own)

    def note_instance(self, name: str, present: bool) -> None:
        """Record a trace instance damond created (before creating it) or removed."""
        if present and name not in self.own.instances:
            self.own.instances.append(name)
        elif not present and name in self.own.instances:
            self.own.instances.remove(name)
        self._save(self.own)

    def release_all_if_idle(self) -> None:
        """When no slot is busy: shrink the tree back to what damond found."""
        if self.busy or not self.own.nr:
            return
        try:
            if self.tree.nr_kdamonds() == self.own.nr and not self.tree.running():
                self.tree.set_nr_kdamonds(self.own.found_nr)
        except OSError as e:
            log.warning("could not remove damond's kernel kdamonds", error=str(e))
            return
        self._save(Ownership())

    def _save(self, own: Ownership) -> None:
        self.own = own
        if not own.nr and not own.instances:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state_path)
            return
        os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
        doc = {"boot_id": _boot_id(), "pid": os.getpid(), "start": _start_time(os.getpid()),
               "admin": self.tree.admin, "tracefs": self.tracefs, "found_nr": own.found_nr,
               "nr": own.nr, "slots": {str(k): v for k, v in own.slots.items()},
               "instances": own.instances}
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.state_path)

    # -- after a SIGKILL -----------------------------------------------------------------

    def recover(self) -> list[str]:
        """Remove what dead damond daemons created (per their state files) while the tree
        still looks as they recorded; returns what was done, one sentence each."""
        done = []
        for path in sorted(glob.glob(os.path.join(self.state_dir, "offload-*.json"))):
            if path == self.state_path:
                continue
            try:
                with open(path) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                continue
            if doc.get("boot_id") == _boot_id() and _start_time(doc.get("pid", 0)) == \
                    doc.get("start"):
                continue  # its daemon still runs
            if doc.get("admin") == self.tree.admin and doc.get("boot_id") == _boot_id():
                done.append(self._clean(doc))
            with contextlib.suppress(OSError):
                os.unlink(path)
        for line in done:
            log.info("offload recovery", action=line)
        return done

    def _clean(self, doc: dict) -> str:
        tree, pid = self.tree, doc.get("pid")
        for name in doc.get("instances", []):
            root = doc.get("tracefs") or self.tracefs
            if root:
                with contextlib.suppress(OSError):
                    TraceInstance(root, name).remove()
        try:
            if tree.nr_kdamonds() != doc["nr"]:
                return (f"left the kernel tree of dead damond {pid} alone: nr_kdamonds is "
                        f"{tree.nr_kdamonds()}, it had set {doc['nr']}")
            slots = {int(k): v for k, v in doc["slots"].items()}
            for slot, kpid in slots.items():
                if tree.state(slot) == "on" and tree.pid(slot) != kpid:
                    return (f"left the kernel tree of dead damond {pid} alone: kdamond {slot} "
                            "runs a thread it did not start")
            others = [i for i in range(doc["nr"]) if i not in slots and tree.state(i) == "on"]
            if others:
                return (f"left the kernel tree of dead damond {pid} alone: kdamonds "
                        f"{others} run")
            for slot in slots:
                if tree.state(slot) == "on":
                    tree.write(f"{slot}/state", "off")
            tree.set_nr_kdamonds(doc["found_nr"])
        except (OSError, KeyError, ValueError) as e:
            return f"could not clean the kernel tree of dead damond {pid}: {e}"
        return (f"removed {len(slots)} kernel kdamonds of dead damond {pid} "
                f"(nr_kdamonds back to {doc['found_nr']})")

    # -- starting ------------------------------------------------------------------------

    async def start(self, index: int, spec: ContextSpec, ctx: Context, scheduler: Scheduler,
                    *, group: str) -> OffloadedKdamond:
        """Start ``spec`` as a kernel kdamond; :class:`Unavailable` (with the reason) when
        offload cannot or should not take it (the caller runs it in user space)."""
        why = self.refusal(spec, group)
        if why:
            raise Unavailable(why)
        kd = OffloadedKdamond(index, spec, ctx, self, scheduler, group=group)
        await trio.to_thread.run_sync(kd.kernel_start)
        return kd

    async def try_start(self, index: int, spec: ContextSpec, ctx: Context,
                        scheduler: Scheduler, *, group: str
                        ) -> tuple[OffloadedKdamond | None, str]:
        """The scheduler's hook: an offloaded kdamond, or None and why it runs in user
        space."""
        try:
            return await self.start(index, spec, ctx, scheduler, group=group), ""
        except Unavailable as e:
            return None, str(e)
        except OSError as e:  # reading the kernel's tree failed: no offload, say why
            return None, f"the kernel's DAMON files could not be read ({e})"


class OffloadedKdamond:
    """A kdamond whose context runs in the kernel's DAMON; the same surface as
    :class:`damond.scheduler.Kdamond` (call, commit, stop, subscribe, status...)."""

    exclusive = False
    context_index = 0

    def __init__(self, index: int, spec: ContextSpec, ctx: Context, manager: OffloadManager,
                 scheduler: Scheduler, *, group: str) -> None:
        self.index = index
        self.name = f"kdamond.{index}"
        self.spec = spec
        self.ctx = ctx
        self.group = group
        self.manager = manager
        self.stats = KdamondStats()
        self.subscribers: list[Callable[[AggregationEvent], None]] = []
        self.running = False
        self.pid = -1
        self.finished = trio.Event()
        self.stop_reason: str | None = None
        self.placement = "kernel"
        self.slot = -1
        self._scheduler = scheduler
        self._cancel_scope = trio.CancelScope()
        self._lock = trio.Lock()
        self._instance: TraceInstance | None = None
        self._grouper = KernelTraceGrouper(len(spec.targets), spec.attrs.sample_us,
                                           spec.attrs.aggr_us)
        self._cpu0_ns = 0
        self.kernel_cpu_ns = 0
        #: whether the kernel's tracepoint is on in damond's instance (only while subscribed)
        self.events_on = False
        self.events_why = "no subscriber yet"
        self.event_reads = 0  # trace_pipe drains (each after a poll said readable)
        self._subscribed = trio.Event()
        self._wait_scope: trio.CancelScope | None = None

    @property
    def ops(self):
        return self.ctx.ops

    # -- kernel side (run in a worker thread) --------------------------------------------

    def kernel_start(self) -> None:
        m, tree = self.manager, self.manager.tree
        slot = m.acquire()
        self.slot = slot
        m.mark(slot, -1, self)
        try:
            write_context(tree, slot, self.spec)
            _kwrite(tree, f"{slot}/state", "on")
            self.pid = tree.pid(slot)
            m.mark(slot, self.pid, self)
            inst = TraceInstance(m.tracefs or "", f"damond-{os.getpid()}-k{slot}")
            if inst.exists():
                inst.remove()
            m.note_instance(inst.name, True)
            self._instance = inst
            inst.create()  # the event stays off until someone subscribes
        except (OSError, DamonError, Unavailable) as e:
            self.kernel_stop()
            if isinstance(e, Unavailable):
                raise
            raise Unavailable(f"the kernel did not take the context: {e}") from None
        self._cpu0_ns = kernel_damon.kernel_thread_cpu_ns(self.pid) or 0

    def kernel_stop(self) -> None:
        """Turn the kernel kdamond off (if it is still the one damond started), remove the
        trace instance, give the slot back; never raises."""
        m, tree, slot = self.manager, self.manager.tree, self.slot
        if slot < 0:
            return
        if self._instance is not None:
            with contextlib.suppress(OSError):
                self._instance.remove()
            m.note_instance(self._instance.name, False)
            self._instance = None
        try:
            if tree.state(slot) == "on" and tree.pid(slot) == self.pid:
                tree.write(f"{slot}/state", "off")
        except OSError as e:
            log.warning("could not turn the kernel kdamond off", slot=slot, error=str(e))
        m.mark(slot, -1, None)
        m.release_all_if_idle()
        self.slot = -1

    def _kernel_alive(self) -> bool:
        try:
            return self.manager.tree.state(self.slot) == "on" and \
                self.manager.tree.pid(self.slot) == self.pid
        except OSError:
            return False

    # -- control (from other tasks) ------------------------------------------------------

    async def call(self, fn: Callable[[Context], Any]) -> Any:
        """``fn(ctx)`` on the mirror context, after the kernel refreshed the scheme stats
        (``update_schemes_stats``) and damond read them back."""
        if not self.running:
            raise DamonError("EINVAL", f"{self.name} is not running")
        async with self._lock:
            await trio.to_thread.run_sync(self._refresh_stats)
            return fn(self.ctx)

    def _refresh_stats(self) -> None:
        """The kernel's scheme stats and (6.9+) effective size quotas, into the mirror."""
        if not self.ctx.schemes:
            return
        tree = self.manager.tree
        _kwrite(tree, f"{self.slot}/state", "update_schemes_stats")
        rows = read_scheme_stats(tree, self.slot, len(self.ctx.schemes))
        for scheme, row in zip(self.ctx.schemes, rows, strict=True):
            scheme.stats = SchemeStats(*row)
        c = f"{self.slot}/contexts/0/schemes"
        if tree.exists(f"{c}/0/quotas/effective_bytes"):
            _kwrite(tree, f"{self.slot}/state", "update_schemes_effective_quotas")
            for i, scheme in enumerate(self.ctx.schemes):
                scheme.quota.esz = int(tree.read(f"{c}/{i}/quotas/effective_bytes"))

    async def walk_schemes(self, *, total_bytes_only: bool = False) -> WalkControl:
        """``update_schemes_tried_regions`` / ``_tried_bytes``: the kernel's own walk. The
        keyword goes to the kernel's ``state`` file (which returns once every scheme completed
        its next apply pass) and its ``tried_regions`` directories are read back. ECANCELED
        from the kernel (no pass can come) becomes a canceled walk, as damond's own."""
        if not self.running:
            raise DamonError("EINVAL", f"{self.name} is not running")
        keyword = ("update_schemes_tried_bytes" if total_bytes_only
                   else "update_schemes_tried_regions")
        control = WalkControl(total_bytes_only=total_bytes_only)
        if not self.ctx.schemes:
            control.canceled = control.done = True
            return control
        async with self._lock:
            try:
                await trio.to_thread.run_sync(_kwrite, self.manager.tree,
                                              f"{self.slot}/state", keyword)
            except DamonError as e:
                if e.errno_name != "ECANCELED":
                    raise
                control.canceled = control.done = True
                return control
            regions, totals = await trio.to_thread.run_sync(
                read_tried_regions, self.manager.tree, self.slot, len(self.ctx.schemes),
                total_bytes_only)
        control.regions, control.total_bytes, control.done = regions, totals, True
        return control

    async def commit(self, spec: ContextSpec) -> None:
        """Validate ``spec`` as damond would, then write it to the kernel and ``commit``."""
        new_ctx = self._scheduler.build(spec, ops_check=False)
        why = unconverted_field(spec)
        ops = self.manager.kernel_operations()
        if why is None and ops is not None and spec.ops not in ops:
            why = f"operations {spec.ops} (the kernel's DAMON lacks it)"
        if why:
            raise DamonError("EINVAL", f"{self.name} runs in the kernel's DAMON, which cannot "
                             f"take {why}; turn it off and on to run it in damond")
        if not self.running:
            raise DamonError("EINVAL", f"{self.name} is not running")
        async with self._lock:
            def write() -> None:
                write_context(self.manager.tree, self.slot, spec)
                _kwrite(self.manager.tree, f"{self.slot}/state", "commit")

            await trio.to_thread.run_sync(write)
            commit_context(self.ctx, new_ctx)
            self.spec = spec
            self._grouper = KernelTraceGrouper(len(spec.targets), spec.attrs.sample_us,
                                               spec.attrs.aggr_us)

    async def stop(self) -> None:
        self.stop_reason = self.stop_reason or "stopped by request"
        self._cancel_scope.cancel()
        await self.finished.wait()

    def subscribe(self, fn: Callable[[AggregationEvent], None]) -> Callable[[], None]:
        """Receive every aggregation (``Kdamond.subscribe``). The first subscriber turns the
        kernel's tracepoint on in damond's instance, the last one leaving turns it off:
        reading and parsing the kernel's events costs damond far more CPU than the kernel's
        kdamond spends monitoring, so nobody pays for events nobody reads."""
        self.subscribers.append(fn)
        self._subscribed.set()

        def unsubscribe() -> None:
            if fn in self.subscribers:
                self.subscribers.remove(fn)
            self._wake_if_unsubscribed()

        return unsubscribe

    def _wake_if_unsubscribed(self) -> None:
        if not self.subscribers and self._wait_scope is not None:
            self._wait_scope.cancel()

    # -- the mirror loop -------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Relay the kernel's events while someone subscribes, until stopped or the kernel's
        kdamond ends. The task waits in the kernel for the kdamond thread's exit (a pidfd)
        and, while subscribed, for events (``trace_pipe``); the one timer is the short settle
        after an aggregation's first event, while subscribed."""
        self.running = True
        try:
            with self._cancel_scope:
                task_status.started(self)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._relay)
                    await self._wait_kernel_exit()
                    nursery.cancel_scope.cancel()
                self.stop_reason = self.stop_reason or (
                    "the kernel's kdamond stopped (every target is gone)")
        finally:
            self.running = False
            with trio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    if self.events_on:
                        self._drain()
                self._account_kernel_cpu()
                await trio.to_thread.run_sync(self.kernel_stop)
                self.events_on = False
                self.pid = -1
                self._scheduler._forget(self)
                self.finished.set()
            log.info("offloaded kdamond stopped", kdamond=self.index, reason=self.stop_reason)

    async def _wait_kernel_exit(self) -> None:
        """Return once the kernel's kdamond thread has exited (someone turned it off, or its
        targets are gone)."""
        try:
            fd = kernel_damon.open_pidfd(self.pid)
        except ProcessLookupError:
            return  # the thread is already gone
        except OSError as e:
            log.warning("no pidfd for the kernel's kdamond: polling its state", error=str(e))
            fd = None
        if fd is not None:
            try:
                await trio.lowlevel.wait_readable(fd)
            finally:
                os.close(fd)
            return
        while self._kernel_alive():
            await trio.sleep(LIVENESS_POLL_S)

    async def _relay(self) -> None:
        """While anyone subscribes: the tracepoint on, events read as they come."""
        while True:
            while not self.subscribers:
                self._subscribed = trio.Event()
                await self._subscribed.wait()
            inst = self._instance
            if inst is None:
                return
            try:
                await trio.to_thread.run_sync(self._events_switch, True)
            except OSError as e:
                self.events_why = f"the kernel's tracepoint could not be turned on ({e})"
                log.warning("damon_aggregated could not be enabled", kdamond=self.index,
                            error=str(e))
                return
            try:
                fd = inst.pipe_fd()
                settle = min(SETTLE_S, self.spec.attrs.aggr_us / 4e6)
                while self.subscribers:
                    with trio.CancelScope() as self._wait_scope:
                        await trio.lowlevel.wait_readable(fd)
                        await trio.sleep(settle)
                    self._wait_scope = None
                    self._drain()
            finally:
                self._wait_scope = None
                with trio.CancelScope(shield=True), contextlib.suppress(OSError):
                    await trio.to_thread.run_sync(self._events_switch, False)

    def _events_switch(self, on: bool) -> None:
        """Turn the tracepoint on (an empty buffer, the grouper reset: the first events may
        be the middle of an aggregation) or off (the unread rest discarded, the pipe closed)."""
        inst = self._instance
        if inst is None:
            return
        if on:
            inst.clear()
            self._grouper.reset()
            inst.enable([self.pid])
            self.events_on = True
            self.events_why = ""
            return
        self.events_on = False
        self.events_why = "no subscriber since the last one left"
        inst.disable()
        inst.close_pipe()
        inst.clear()

    def _account_kernel_cpu(self) -> None:
        if self.pid > 0:
            now = kernel_damon.kernel_thread_cpu_ns(self.pid)
            if now is not None:
                self.kernel_cpu_ns = now - self._cpu0_ns

    def _drain(self) -> None:
        inst = self._instance
        if inst is None:
            return
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        try:
            block = inst.read_block()
        except OSError as e:
            log.warning("trace_pipe read failed", kdamond=self.index, error=str(e))
            return
        self.event_reads += 1
        if block:
            for ev in self._grouper.feed_block(block.decode(errors="replace")):
                self._emit(ev)
        self.stats.cpu_ns += time.thread_time_ns() - c0
        self.stats.busy_ns += time.perf_counter_ns() - w0

    def _emit(self, ev: AggregationEvent) -> None:
        self.stats.aggregations += 1
        for t in ev.targets:
            if t.target_index < len(self.ctx.targets):
                self.ctx.targets[t.target_index].regions = Regions(
                    t.start, t.end, nr_accesses=t.nr_accesses, age=t.age)
        if not self.subscribers:
            return
        event = dataclasses.replace(ev, kdamond_index=self.index)
        for fn in list(self.subscribers):
            try:
                fn(event)
            except Exception:  # a subscriber's bug must not stop relaying
                log.exception("aggregation subscriber failed", kdamond=self.index)
                self.subscribers.remove(fn)
                self._wake_if_unsubscribed()

    def events_status(self) -> str:
        """What ``status`` says about the kernel's events (``events``)."""
        if self.events_on:
            return (f"relayed to {len(self.subscribers)} subscriber(s): the kernel's "
                    "damon_aggregated tracepoint is on in damond's tracefs instance")
        return (f"not read ({self.events_why}): the kernel's tracepoint is off until a "
                "trace, record or live report subscribes; aggregations and nr_regions count "
                "only what was read")

    def status(self) -> dict[str, Any]:
        s = self.stats
        if self.running:
            self._account_kernel_cpu()
        return {
            "kdamond": self.index, "state": "on" if self.running else "off",
            "ops": self.spec.ops, "runs": "kernel",
            "runs_why": f"offloaded to the kernel's DAMON (kernel kdamond {self.slot}, "
                        f"thread {self.pid})",
            "nr_targets": len(self.ctx.targets), "nr_regions": self.ctx.nr_regions(),
            "aggregations": s.aggregations, "cpu_s": s.cpu_ns / 1e9,
            "kernel_cpu_s": self.kernel_cpu_ns / 1e9,
            "kernel_kdamond": self.slot, "kernel_pid": self.pid,
            "trace_dropped": self._grouper.dropped, "event_reads": self.event_reads,
            "events": self.events_status(),
        }
