"""``/sys/kernel/mm/damon/admin``: the kdamond and context directories and the ``state`` file
(Linux 6.18 ``mm/damon/sysfs.c``).

The files only edit a ``KdamondSpec`` per kdamond directory; a running kdamond has its own
copy and sees changes only through ``commit`` (or, for quota goals,
``commit_schemes_quota_goals``). Cross-field checks happen only at ``on``/``commit``, when a
context is built from the tree, as in the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
import trio

from damond.core.build import commit_schemes_quota_goals
from damond.core.spec import ContextSpec, KdamondSpec, clone
from damond.errors import DamonError
from damond.interfaces.kparse import kstrtouint, sysfs_streq
from damond.interfaces.sysfs import state
from damond.interfaces.sysfs.files import aliases, attr, indexed, keyword, nr_file, number
from damond.interfaces.sysfs.monitoring import monitoring_attrs_dir
from damond.interfaces.sysfs.schemes import schemes_dir
from damond.interfaces.sysfs.targets import targets_dir
from damond.interfaces.sysfs.views import SysfsContext, SysfsKdamond
from damond.interfaces.vfs import Dir, File

if TYPE_CHECKING:
    from damond.scheduler import Kdamond, Scheduler

log = structlog.get_logger("damond.interfaces.sysfs")

#: ``state`` keywords of 6.18 that damond does not implement, with the reason: writing one is
#: refused with EINVAL, as a kernel predating the keyword refuses it. (None at the moment.)
UNIMPLEMENTED: dict[str, str] = {}
#: The ``state`` keywords damond accepts.
STATE_COMMANDS = tuple(k for k in state.STATE_KEYWORDS if k not in UNIMPLEMENTED)


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
        self.kdamonds = [SysfsKdamond(contexts=[SysfsContext.holding(c) for c in k.contexts],
                                      refresh_ms=k.refresh_ms)
                         for k in specs]

    def is_running(self, index: int) -> bool:
        """Whether kdamond ``index`` exists and runs."""
        return index < len(self.kdamonds) and self.kdamonds[index].running

    def set_context(self, index: int, spec: ContextSpec) -> None:
        """Make kdamond ``index`` (an existing one, or a new one right after the last) hold
        ``spec`` as its one context. Its scheme directories keep what their kernel-filled
        files showed, matched by index, as the running schemes keep their counters across a
        commit."""
        if index == len(self.kdamonds):
            self.kdamonds.append(SysfsKdamond())
        kd = self.kdamonds[index]
        shown = kd.contexts[0].views if kd.contexts else []
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

        nr = nr_file(self.kdamonds, SysfsKdamond, busy=busy)
        return Dir(indexed("nr_kdamonds", nr, lambda: len(self.kdamonds), self._kdamond_dir),
                   aliases("nr_kdamonds"))

    def _kdamond_dir(self, k: int) -> Dir:
        kd = self.kdamonds[k]
        return Dir(lambda: {
            "state": File(lambda: "on\n" if kd.running else "off\n",
                          lambda data: self._write_state(k, kd, data)),
            "pid": File(lambda: f"{kd.kdamond.pid if kd.running else -1}\n"),
            "refresh_ms": number(lambda: kd.refresh_ms, kd.set_refresh_ms, kstrtouint),
            "contexts": self._contexts_dir(kd),
        })

    def _contexts_dir(self, kd: SysfsKdamond) -> Dir:
        nr = nr_file(kd.contexts, SysfsContext, max_nr=1)
        return Dir(indexed("nr_contexts", nr, lambda: len(kd.contexts),
                           lambda c: self._context_dir(kd.contexts[c])),
                   aliases("nr_contexts"))

    def _context_dir(self, c: SysfsContext) -> Dir:
        spec = c.spec
        return Dir(lambda: {
            "avail_operations": File(lambda: "".join(f"{n}\n" for n in self.avail_operations())),
            "operations": keyword(spec, "ops", self.avail_operations, "avail_operations"),
            "addr_unit": attr(spec, "addr_unit", check=_nonzero_addr_unit),
            "monitoring_attrs": monitoring_attrs_dir(spec.attrs),
            "targets": targets_dir(spec.targets),
            "schemes": schemes_dir(c),
        })

    # -- state ----------------------------------------------------------------------------

    async def _write_state(self, index: int, kd: SysfsKdamond, data: str) -> None:
        cmd = next((c for c in state.STATE_KEYWORDS if sysfs_streq(data, c)), None)
        word = data.rstrip("\n")
        if cmd is None:
            raise DamonError("EINVAL", f"{word!r} is not one of {', '.join(STATE_COMMANDS)}")
        if cmd in UNIMPLEMENTED:
            raise DamonError("EINVAL", f"{word!r} (Linux {state.STATE_KEYWORDS[cmd]}) is not "
                             f"implemented by damond: {UNIMPLEMENTED[cmd]}")
        if cmd != "off":
            self._one_context(kd)  # damon_sysfs_handle_cmd(): every other keyword needs one
        if cmd == "on":
            await self._turn_on(index, kd)
        elif cmd == "off":
            await self._turn_off(kd)
        elif cmd == "commit":
            await self._commit(kd)
        elif cmd == "update_schemes_stats":
            rows = await self._require_running(kd).call(state.read_schemes_stats)
            state.show_schemes_stats(kd, rows)
        elif cmd == "update_schemes_effective_quotas":
            esz = await self._require_running(kd).call(state.read_effective_quotas)
            state.show_effective_quotas(kd, esz)
        elif cmd == "update_tuned_intervals":
            intervals = await self._require_running(kd).call(state.read_tuned_intervals)
            state.show_tuned_intervals(kd, intervals)
        elif cmd in ("update_schemes_tried_regions", "update_schemes_tried_bytes"):
            await self._update_tried_regions(kd, cmd == "update_schemes_tried_bytes")
        elif cmd == "clear_schemes_tried_regions":
            state.clear_tried_regions(kd)
        elif cmd == "commit_schemes_quota_goals":
            await self._commit_quota_goals(kd)
        else:  # pragma: no cover - every keyword of STATE_KEYWORDS is handled above
            raise DamonError("EINVAL", f"{word!r} is not handled")

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
        trio.lowlevel.spawn_system_task(_refresher, kd, kdamond, name=f"{kdamond.name}.refresh")

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

    async def _update_tried_regions(self, kd: SysfsKdamond, total_bytes_only: bool) -> None:
        """``damon_sysfs_update_schemes_tried_regions()``: EINVAL before any first ``on``;
        otherwise the directories are emptied first, then filled by a walk of the running
        kdamond (EINVAL if it is not running, ECANCELED if no apply pass can come)."""
        if kd.kdamond is None:
            raise DamonError("EINVAL", "the kdamond was never turned on")
        state.clear_tried_regions(kd)
        kdamond = self._require_running(kd)
        control = await kdamond.walk_schemes(total_bytes_only=total_bytes_only)
        if control.canceled:
            raise DamonError("ECANCELED", "no apply pass came (no scheme is active, or the "
                             "kdamond stopped)")
        state.show_tried_regions(kd, control)

    async def _commit_quota_goals(self, kd: SysfsKdamond) -> None:
        kdamond = self._require_running(kd)
        built = self.scheduler.build(state.goals_only(self._one_context(kd).spec))
        await kdamond.call(lambda ctx: commit_schemes_quota_goals(ctx, built))

    async def _commit(self, kd: SysfsKdamond) -> None:
        kdamond = self._require_running(kd)
        ctx = self._one_context(kd)
        await kdamond.commit(clone(ctx.spec))


def _nonzero_addr_unit(value: int) -> None:
    if value == 0:
        raise DamonError("EINVAL", "addr_unit must be at least 1")


async def _refresher(kd: SysfsKdamond, kdamond: Kdamond) -> None:
    """``refresh_ms`` (Linux 6.17): while ``kdamond`` runs, every ``refresh_ms`` milliseconds,
    copy its tuned intervals, scheme stats and effective quotas into the files. The period is
    re-read whenever the file is written; 0 pauses refreshing. Like the kernel's first
    deadline (set when the kdamond started), a period that elapsed while refreshing was off
    refreshes at once when it is turned on."""
    try:
        async with trio.open_nursery() as nursery:

            async def stop_with_kdamond() -> None:
                await kdamond.finished.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_with_kdamond)
            next_at = trio.current_time() + kd.refresh_ms / 1000
            while kdamond.running:
                changed = kd.refresh_changed
                if kd.refresh_ms == 0:
                    await changed.wait()
                    continue
                with trio.move_on_at(next_at):
                    await changed.wait()
                    continue
                next_at = trio.current_time() + kd.refresh_ms / 1000
                if kd.kdamond is not kdamond:
                    break
                await kdamond.call(lambda ctx: state.refresh_all(kd, ctx))
            nursery.cancel_scope.cancel()
    except DamonError:
        pass  # the kdamond stopped between the deadline and the call
    except Exception:  # a bug here must not take the daemon down (this is a system task)
        log.exception("refresh_ms updater failed")
