"""Configuration files: damo's kdamonds JSON/YAML, loaded at startup and reloaded on SIGHUP.

A configuration file is what ``damo args damon --format json|yaml`` prints (human or raw form),
optionally with a ``damond:`` section for the daemon's own settings (``log_level``). Format:
from the extension (``.json``, ``.yaml``/``.yml``), else from the content.

Two rules shape this module:

* **Validate everything before touching anything.** A file is parsed (damo's format, every
  field), then each kdamond's context is built exactly as ``state on`` would build it
  (``Scheduler.build``: attributes, regions, the operation set's own checks such as "the target
  process exists"). Only a file that passes all of it is applied. At startup a bad file stops
  the daemon before it starts anything; on reload it is refused and the running kdamonds, and
  the sysfs tree, stay exactly as they were.
* **Reload like DAMON's online commit.** kdamonds are matched by index: one that runs gets the
  new context through ``commit`` (its regions, counters and scheme stats are kept), one that
  does not run (new, or stopped since) is started, and kdamonds beyond the new file's count
  are stopped and removed. The tree then holds the file's configuration, so ``dump`` shows it.

The tree is driven only through its own methods (``SysfsAdmin.load``, ``set_context``,
``turn_on``, ``commit_context``, ``stop``, ``truncate``): starting and committing run what the
``state`` file runs, with the kernel's checks and errnos, and the tree alone decides what its
scheme stats files show.

:class:`ConfigManager` owns the file and the reload procedure; ``damond serve`` hands it to the
``Daemon`` (``Daemon.config_manager``), where the ``reload`` command and the metrics find it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import trio
import yaml

from damond.core.spec import ContextSpec, KdamondSpec
from damond.errors import DamonError
from damond.formats.damo.kdamonds import load_kdamonds

if TYPE_CHECKING:
    from damond.service.daemon import Daemon

log = structlog.get_logger("damond.service.config")

#: the top-level key of damond's own settings (damo ignores what it does not know)
SECTION = "damond"
LOG_LEVELS = ("debug", "info", "warning", "error")
#: a configuration larger than this is surely a mistake (and would stall the event loop)
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: reading (and parsing) a configuration that takes longer than this is given up: a file on a
#: hung network or FUSE file system must not hold up a reload, the reload command or shutdown
CONFIG_READ_TIMEOUT_S = 5.0


@dataclass
class DaemonSettings:
    """The ``damond:`` section."""

    log_level: str | None = None


@dataclass
class Config:
    """A parsed and damo-validated configuration file."""

    path: str
    specs: list[KdamondSpec]
    settings: DaemonSettings = field(default_factory=DaemonSettings)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Reading and validating
# --------------------------------------------------------------------------------------------


def format_of(path: str) -> str | None:
    """``json`` or ``yaml`` from the file name; None lets the content decide."""
    ext = os.path.splitext(path)[1].lower()
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(ext)


def _parse(text: str, fmt: str | None, where: str) -> Any:
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        detail = " ".join(str(e).split())
        raise DamonError("EINVAL", f"{where}: not valid {fmt.upper()}: {detail}") from None


def _settings(node: Any, warnings: list[str]) -> DaemonSettings:
    if node is None:
        return DaemonSettings()
    if not isinstance(node, dict):
        raise DamonError("EINVAL", f"{SECTION}: expected a mapping, got {type(node).__name__}")
    settings = DaemonSettings()
    for key, value in node.items():
        if key == "log_level":
            if value not in LOG_LEVELS:
                raise DamonError("EINVAL", f"{SECTION}.log_level: {value!r} is not one of "
                                 f"{', '.join(LOG_LEVELS)}")
            settings.log_level = value
        else:
            warnings.append(f"{SECTION}.{key}: unknown key (ignored)")
    return settings


def parse_config(text: str, *, path: str = "<config>", fmt: str | None = None) -> Config:
    """Parse a configuration's text; raise ``DamonError`` (EINVAL) naming every problem."""
    doc = _parse(text, fmt, path)
    if doc is None:
        raise DamonError("EINVAL", f"{path}: the file is empty (expected a 'kdamonds' list)")
    warnings: list[str] = []
    settings = DaemonSettings()
    if isinstance(doc, dict) and SECTION in doc:
        doc = dict(doc)
        settings = _settings(doc.pop(SECTION), warnings)
    try:
        specs, load_warnings = load_kdamonds(doc)
    except DamonError as e:
        raise DamonError(e.errno_name, f"{path}: {e.why}") from None
    return Config(path, specs, settings, warnings + load_warnings)


def read_config(path: str) -> Config:
    """Read and parse the file at ``path`` (OSErrors become DamonErrors naming the file).

    Only a regular file is read: the path is opened with ``O_NONBLOCK`` (opening a FIFO then
    returns at once instead of waiting for a writer) and refused unless ``fstat`` says it is a
    regular file, so a FIFO, a device or a directory put at the configuration path is an error,
    never a read that blocks or never ends. At most ``MAX_CONFIG_BYTES`` + 1 bytes are read.
    This is a blocking function: the daemon calls it through :func:`read_config_bounded`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise DamonError(_errno_name(e), f"{path}: cannot read: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise DamonError("EINVAL", f"{path}: is {kind}, not a regular file")
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise DamonError(_errno_name(e), f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise DamonError("EFBIG", f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DamonError("EINVAL", f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"
                         ) from None
    return parse_config(text, path=path, fmt=format_of(path))


async def run_bounded(fn: Callable[..., Any], *args: Any, timeout_s: float, what: str) -> Any:
    """``fn(*args)`` in a worker thread, given up after ``timeout_s`` (ETIMEDOUT) or when the
    caller is cancelled: the thread is abandoned, not waited for, so neither the event loop
    nor shutdown ever waits on a read that hangs (the thread ends whenever the read does)."""
    with trio.move_on_after(timeout_s):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
    raise DamonError("ETIMEDOUT", f"{what}: not done after {timeout_s:g} s (given up)")


async def read_config_bounded(path: str, timeout_s: float = CONFIG_READ_TIMEOUT_S) -> Config:
    """:func:`read_config` off the event loop, bounded in time."""
    return await run_bounded(read_config, path, timeout_s=timeout_s, what=f"{path}: reading")


def _errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, "EIO")


def check_config(daemon: Daemon, config: Config) -> None:
    """Build every kdamond's context as ``state on`` would, without starting anything; raise
    one ``DamonError`` listing every kdamond that would be refused."""
    problems: list[str] = []
    first: DamonError | None = None
    for i, spec in enumerate(config.specs):
        try:
            daemon.scheduler.build(_only_context(spec, i))
        except DamonError as e:
            first = first or e
            problems.append(f"kdamonds[{i}]: {e.why}")
    exclusive = sorted({k.group for k in daemon.scheduler.running if k.exclusive})
    if config.specs and exclusive:
        problems.append(f"kdamonds of {', '.join(exclusive)} are running and exclusive use "
                        "is in force")
        first = first or DamonError("EBUSY", problems[-1])
    if problems:
        raise DamonError(first.errno_name if first else "EINVAL",
                         f"{config.path}: {'; '.join(problems)}")


def _only_context(spec: KdamondSpec, index: int) -> ContextSpec:
    if len(spec.contexts) != 1:
        raise DamonError("EINVAL", f"has {len(spec.contexts)} contexts; exactly one per "
                         "kdamond is supported")
    return spec.contexts[0]


# --------------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    """What applying a configuration did, kdamond by kdamond."""

    started: list[int] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    #: (kdamond index, error) of steps that failed after validation (e.g. a process exited)
    failed: list[tuple[int, DamonError]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{what} {', '.join(map(str, idx))}" for what, idx in (
            ("committed", self.committed), ("started", self.started),
            ("stopped", self.stopped)) if idx]
        parts += [f"kdamond {i} failed: {e.errno_name}: {e.why}" for i, e in self.failed]
        return "; ".join(parts) or "nothing to do"


async def apply_startup(daemon: Daemon, config: Config) -> list[int]:
    """Load the configuration into the (idle) sysfs tree and turn every kdamond on. All or
    nothing: if one fails to start, those already started are stopped and the error raised."""
    tree = daemon.sysfs
    tree.load(config.specs)
    started: list[int] = []
    try:
        for i in range(len(config.specs)):
            await tree.turn_on(i)
            started.append(i)
    except BaseException:
        with trio.CancelScope(shield=True):
            for i in started:
                await tree.stop(i)
        raise
    return started


async def apply_reload(daemon: Daemon, config: Config) -> ApplyReport:
    """Make the tree and the kdamonds match a validated configuration (see the module doc).
    A step that fails after validation is reported, not raised; the others still happen."""
    tree = daemon.sysfs
    report = ApplyReport(stopped=await tree.truncate(len(config.specs)))
    for i, spec in enumerate(config.specs):
        ctx = spec.contexts[0]
        try:
            if tree.is_running(i):
                await tree.commit_context(i, ctx)
                report.committed.append(i)
            else:
                tree.set_context(i, ctx)
                await tree.turn_on(i)
                report.started.append(i)
        except DamonError as e:
            log.error("configuration step failed", kdamond=i, error=str(e))
            report.failed.append((i, e))
    return report


# --------------------------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------------------------


@dataclass
class ReloadResult:
    ok: bool
    message: str
    warnings: list[str] = field(default_factory=list)
    report: ApplyReport | None = None
    error: DamonError | None = None


@dataclass
class ReloadStats:
    """For metrics: how reloads went."""

    succeeded: int = 0
    failed: int = 0
    last_ok: bool = True
    #: wall-clock time of the last successful load (startup or reload)
    last_success_time: float = 0.0


class ConfigManager:
    """The daemon's configuration file: loaded at startup, reloaded on request.

    ``on_settings`` is called with the ``damond:`` section of each configuration that is
    applied; ``on_reload_start``/``on_reload_done`` bracket every reload (sd_notify).
    """

    def __init__(self, daemon: Daemon, path: str | None, *,
                 on_settings: Callable[[DaemonSettings], None] | None = None,
                 on_reload_start: Callable[[str], None] | None = None,
                 on_reload_done: Callable[[ReloadResult], None] | None = None) -> None:
        self.daemon = daemon
        self.path = path
        self.config: Config | None = None
        self.stats = ReloadStats()
        self.on_settings = on_settings
        self.on_reload_start = on_reload_start
        self.on_reload_done = on_reload_done
        self._lock = trio.Lock()

    async def load(self) -> Config:
        """Read and completely validate the file (startup: nothing runs yet)."""
        if self.path is None:
            raise DamonError("EINVAL", "no configuration file")
        config = await read_config_bounded(self.path)
        check_config(self.daemon, config)
        return config

    async def start(self, config: Config) -> list[int]:
        """Apply a configuration from :meth:`load` to the idle daemon (startup)."""
        async with self._lock:
            self._log_warnings(config)
            started = await apply_startup(self.daemon, config)
            self._accepted(config)
            log.info("configuration loaded", path=config.path, kdamonds=len(config.specs))
            return started

    async def reload(self) -> ReloadResult:
        """Re-read the file and apply it; never raises for a bad file (see the module doc)."""
        async with self._lock:
            if self.on_reload_start is not None:
                self.on_reload_start(self.path or "")
            result = await self._reload()
            if result.ok:
                self.stats.succeeded += 1
                log.info("configuration reloaded", path=self.path, changes=result.message)
            else:
                self.stats.failed += 1
                log.error("configuration reload failed", path=self.path, error=result.message)
            self.stats.last_ok = result.ok
            if self.on_reload_done is not None:
                self.on_reload_done(result)
            return result

    async def _reload(self) -> ReloadResult:
        if self.path is None:
            err = DamonError("EINVAL", "damond was started without --config: nothing to reload")
            return ReloadResult(False, err.why, error=err)
        try:
            # reading and parsing a big file takes a while: not on the kdamonds' thread, and
            # bounded in time (a hung file system must not hold up the reload forever)
            config = await read_config_bounded(self.path)
            check_config(self.daemon, config)
        except DamonError as e:
            return ReloadResult(False, f"{e.errno_name}: {e.why}; the running configuration "
                                "is kept", error=e)
        self._log_warnings(config)
        report = await apply_reload(self.daemon, config)
        self._accepted(config)
        if report.failed:
            _, first = report.failed[0]
            return ReloadResult(False, report.summary(), config.warnings, report, first)
        return ReloadResult(True, report.summary(), config.warnings, report)

    def _accepted(self, config: Config) -> None:
        self.config = config
        self.stats.last_success_time = time.time()
        if self.on_settings is not None:
            self.on_settings(config.settings)

    @staticmethod
    def _log_warnings(config: Config) -> None:
        for warning in config.warnings:
            log.warning("configuration warning", path=config.path, warning=warning)
