"""The daemon's parts wired together: registry, scheduler, the sysfs and debugfs views.

``Daemon`` owns what every interface shares. The control socket, configuration loading and
systemd integration take a ``Daemon`` and drive it; nothing here listens on sockets. What the
control commands need from the service layer (the configuration manager, the metrics, the
machine's features) they reach through the ``Daemon`` they are handed, never by importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from damond.core.budget import DEFAULT_CPU_BUDGET
from damond.interfaces.debugfs import DebugfsDamon
from damond.interfaces.sysfs import SysfsAdmin
from damond.interfaces.vfs import DEBUGFS_DAMON, SYSFS_ADMIN, Vfs
from damond.ops.registry import OperationsRegistry
from damond.scheduler import Scheduler
from damond.service.features import offload_lines, probe_features
from damond.service.metrics import render_metrics
from damond.service.offload import OffloadManager

if TYPE_CHECKING:
    from damond.service.config import ConfigManager


class Daemon:
    """One daemon's state. ``probe_features`` answers the machine-specific lines of the
    ``features`` command (a probe that makes system calls; tests may hand in their own)."""

    def __init__(self, registry: OperationsRegistry | None = None, *,
                 seed: int | None = None,
                 probe_features: Callable[[], list[str]] = probe_features,
                 cpu_budget: float = DEFAULT_CPU_BUDGET, offload: str = "never",
                 sampler: str = "auto") -> None:
        self.registry = registry or OperationsRegistry()
        self.scheduler = Scheduler(self.registry, seed=seed, cpu_budget=cpu_budget,
                                   batch_sampling=sampler != "per-sample")
        self.sysfs = SysfsAdmin(self.scheduler, self.registry.avail_operations)
        self.debugfs = DebugfsDamon(self.scheduler, self.registry)
        self.vfs = Vfs({SYSFS_ADMIN: self.sysfs.root, DEBUGFS_DAMON: self.debugfs.root})
        #: the kernel offload (``damond serve --offload``; in-process daemons default to never)
        self.offload = OffloadManager(offload, slots_hint=lambda: len(self.sysfs.kdamonds))
        self.scheduler.offloader = self.offload
        self.probe_features = lambda: probe_features() + offload_lines(self.offload)
        #: the configuration file's manager; ``damond serve`` sets it (``reload``, metrics)
        self.config_manager: ConfigManager | None = None

    def metrics_text(self) -> str:
        """The daemon's metrics in the Prometheus text format (the ``metrics`` command)."""
        return render_metrics(self)

    async def stop_all(self) -> None:
        await self.scheduler.stop_all()
