"""The daemon's parts wired together: registry, scheduler, the sysfs and debugfs views.

``Daemon`` owns what every interface shares. The control socket, configuration loading and
systemd integration take a ``Daemon`` and drive it; nothing here listens on sockets.
"""

from __future__ import annotations

from damond.interfaces.debugfs import DebugfsDamon
from damond.interfaces.sysfs import SysfsAdmin
from damond.interfaces.vfs import DEBUGFS_DAMON, SYSFS_ADMIN, Vfs
from damond.ops.registry import OperationsRegistry, default_registry
from damond.scheduler import Scheduler


class Daemon:
    def __init__(self, registry: OperationsRegistry | None = None, *,
                 seed: int | None = None) -> None:
        self.registry = registry or default_registry()
        self.scheduler = Scheduler(self.registry, seed=seed)
        self.sysfs = SysfsAdmin(self.scheduler, self.registry.avail_operations)
        self.debugfs = DebugfsDamon(self.scheduler, self.registry)
        self.vfs = Vfs({SYSFS_ADMIN: self.sysfs.root, DEBUGFS_DAMON: self.debugfs.root})

    async def stop_all(self) -> None:
        await self.scheduler.stop_all()
