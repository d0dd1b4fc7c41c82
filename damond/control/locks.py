"""Who may change which part of the tree while others wait: per-kdamond write locks.

The control socket lets one step of control work run at a time (its gate), but a command that
waits for a kdamond (``commit`` or ``update_schemes_stats`` wait for the kdamond's next sample,
20 s at a 20 s sampling interval) must not hold that gate while it waits, or every other client
waits with it. So writes run outside the gate, and what they may not do concurrently is decided
here, per part of the tree, as the kernel's ``damon_sysfs_lock`` decides it for the whole tree
(for the writes that need it, :func:`needs_lock`):

* a write below ``kdamonds/<N>/`` waits only for other writes to kdamond N;
* a write elsewhere in the sysfs tree (``nr_kdamonds``, a ``reload``) waits for every sysfs
  write, and every sysfs write waits for it;
* debugfs writes wait for each other (``monitor_on`` starts and stops all its contexts).

Reads take no lock: like the kernel's files, each read shows the state between two writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from damond.interfaces.vfs import DEBUGFS_DAMON, SYSFS_ADMIN

#: (area, kdamond index or None for the whole area)
LockKey = tuple[str, int | None]

_KDAMONDS = SYSFS_ADMIN + "/kdamonds/"


def needs_lock(path: str) -> bool:
    """Whether a write to ``path`` (normalised) may race with another write: ``state`` writes
    wait for kdamonds, ``nr_*`` writes replace directories, debugfs writes start and stop
    contexts. Attribute files (``sample_us``, ``pid_target``, ...) are single assignments
    that take effect at the next ``on``/``commit``: the kernel takes no lock for them either,
    so they never wait."""
    name = path.rsplit("/", 1)[-1]
    if path == DEBUGFS_DAMON or path.startswith(DEBUGFS_DAMON + "/"):
        return True
    return name == "state" or name.startswith("nr")


def lock_key(path: str) -> LockKey:
    """The part of the tree a write to the normalised ``path`` changes."""
    if path.startswith(_KDAMONDS):
        index = path[len(_KDAMONDS):].split("/", 1)[0]
        if index.isdigit():
            return ("sysfs", int(index))
        return ("sysfs", None)
    if path == DEBUGFS_DAMON or path.startswith(DEBUGFS_DAMON + "/"):
        return ("debugfs", None)
    return ("sysfs", None)


def _conflict(a: LockKey, b: LockKey) -> bool:
    return a[0] == b[0] and (a[1] is None or b[1] is None or a[1] == b[1])


class TreeLocks:
    """Write locks by part of the tree. One per daemon, shared by every connection."""

    def __init__(self) -> None:
        self._writers: list[LockKey] = []
        self._waiting = 0
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @asynccontextmanager
    async def write(self, key: LockKey | None) -> AsyncIterator[None]:
        """Hold ``key`` for one write (uncontended: no wait, no checkpoint; None: no lock)."""
        if key is None:
            yield
            return
        if any(_conflict(key, k) for k in self._writers):
            self._waiting += 1
            try:
                while any(_conflict(key, k) for k in self._writers):
                    await self._changed.wait()
            finally:
                self._waiting -= 1
        self._writers.append(key)
        try:
            yield
        finally:
            self._writers.remove(key)
            self._notify()

    def busy(self) -> dict[str, int]:
        """Counts for ``status``: writes running and writes waiting for another."""
        return {"writes": len(self._writers), "writes_waiting": self._waiting}
