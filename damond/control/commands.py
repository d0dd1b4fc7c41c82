"""The control protocol's commands, independent of any socket.

A :class:`Session` is what one connection has: a working directory (the sysfs admin root at
first), an authorization level and the prompt flag. It takes one logical request (what
``shell_syntax.LineAssembler`` assembled), parses it and yields one :class:`Reply` per command
that ran: data lines, then exactly one status line, ``OK`` or ``ERR <ERRNO> <what>: <why>``
(protocol.md, "Replies"). The socket server only moves bytes and streams ``trace`` output; every
decision about what a request means lives here, so that it can be tested in-process.

The wire text itself (status and note lines, data-line escaping, prompts) is defined in
``damond.control.protocol``, which the clients share: every data line here goes through its
:func:`~damond.control.protocol.escape_data_line`.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import trio

from damond import __version__
from damond.control.protocol import (
    NOTE_PREFIX,
    OK,
    PROMPT,
    error_status,
    escape_data_line,
    one_line,
)
from damond.control.syntax import Incomplete, Step, echo_payload, parse
from damond.errors import DamonError
from damond.formats.damo.kdamonds import dump_kdamonds
from damond.interfaces.tracepoint import EVENT_NAME
from damond.interfaces.vfs import SYSFS_ADMIN, Node, Resolved

if TYPE_CHECKING:
    from damond.service.daemon import Daemon

log = structlog.get_logger("damond.control")

#: trace COUNT upper bound: a 64-bit count is "forever" for any real client
MAX_TRACE_COUNT = (1 << 63) - 1
#: requests up to this length have their parse cached (scripts poll the same few lines)
_PARSE_CACHE_MAX_LEN = 256
#: the kernel's own operation sets, listed by ``features`` even while damond lacks them
KERNEL_OPERATIONS = ("vaddr", "fvaddr", "paddr")
#: lateness window used by ``lateness`` without arguments (5 s at the default 5 ms sampling)
DEFAULT_LATENESS_SAMPLES = 1000


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceRequest:
    """``trace [COUNT]`` answered ``OK``; the transport streams events after the reply."""

    count: int | None


@dataclass
class Reply:
    """The answer to one command: data lines (escaped, or notes) and one status line."""

    data: list[str] = field(default_factory=list)
    status: str = OK
    trace: TraceRequest | None = None
    quit: bool = False

    @property
    def ok(self) -> bool:
        return self.status == OK

    def lines(self) -> list[str]:
        return [*self.data, self.status]


def _error_reply(err: DamonError, what: str, data: list[str] | None = None) -> Reply:
    return Reply(data or [], error_status(err.errno_name, err.what or what, err.why))


def content_lines(text: str) -> list[str]:
    """A file's content as data lines: without its final newline, split at newlines; an empty
    file gives no line, a file holding just ``\\n`` one empty line."""
    if not text:
        return []
    if text.endswith("\n"):
        text = text[:-1]
    return [escape_data_line(line) for line in text.split("\n")]


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> tuple[Step, ...]:
    return tuple(parse(text))


def parse_request(text: str) -> tuple[Step, ...]:
    """:func:`damond.control.syntax.parse`, cached for short requests. The cache is safe because
    parsing is pure and the executor never modifies a Step."""
    if len(text) <= _PARSE_CACHE_MAX_LEN:
        return _parse_cached(text)
    return tuple(parse(text))


# --------------------------------------------------------------------------------------------
# The command table
# --------------------------------------------------------------------------------------------

Handler = Callable[["Session", Step], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    """A protocol command: its help text, its implementation, and whether it writes."""

    name: str
    usage: str
    summary: str
    handler: Handler
    #: whether this use of the command changes the daemon (refused to read-only clients)
    writes: Callable[[Step], bool] | None = None
    aliases: tuple[str, ...] = ()
    #: whether the command may have a ``> FILE`` redirection
    redirectable: bool = False


COMMANDS: dict[str, Command] = {}
_ALIASES: dict[str, Command] = {}


def _command(name: str, usage: str, summary: str, *, aliases: tuple[str, ...] = (),
             writes: Callable[[Step], bool] | None = None, redirectable: bool = False):
    def register(fn: Handler) -> Handler:
        cmd = Command(name, usage, summary, fn, writes, aliases, redirectable)
        COMMANDS[name] = cmd
        for n in (name, *aliases):
            _ALIASES[n] = cmd
        return fn

    return register


def _redirected(step: Step) -> bool:
    return step.redirect is not None


def _written_file(step: Step) -> str:
    """The file a writing command names: the redirection, or ``write``'s PATH operand."""
    if step.redirect is not None:
        return step.redirect
    operands = step.argv[1:]
    if operands[:1] == ["-n"]:
        operands = operands[1:]
    return operands[0] if operands else step.argv[0]


# --------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------


class Session:
    """One client's view of the daemon: working directory, authorization, prompt mode.

    ``admin`` clients may write; others may only read (writes answer ``ERR EPERM``).
    ``started`` is the daemon's start time (``time.monotonic()``) for ``status``;
    ``server_status`` adds transport facts (e.g. connected clients) to ``status``.
    """

    def __init__(self, daemon: Daemon, *, admin: bool = True, peer: str = "local",
                 started: float | None = None,
                 server_status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.daemon = daemon
        self.admin = admin
        self.peer = peer
        self.cwd = SYSFS_ADMIN
        self.prompt = False
        self.started = time.monotonic() if started is None else started
        self.server_status = server_status

    async def run(self, request: str) -> AsyncIterator[Reply]:
        """Yield one reply per command the request runs (none for a blank or comment line).

        A syntax error answers the whole request once. After ``&&``, a command runs only if
        the previous one succeeded (as in ``sh``: a skipped command gets no reply and keeps
        the failure for a following ``&&``). ``quit`` ends the request.
        """
        try:
            steps = parse_request(request)
        except Incomplete as e:
            yield _error_reply(e.to_error(), "request")
            return
        except DamonError as e:
            yield _error_reply(e, "syntax")
            return
        last_ok, connector = True, None
        for step in steps:
            if connector == "&&" and not last_ok:
                connector = step.connector
                continue
            reply = await self.run_step(step)
            yield reply
            if reply.quit:
                return
            last_ok, connector = reply.ok, step.connector

    async def run_all(self, request: str) -> list[Reply]:
        """All replies of ``request`` as a list (tests, scripts)."""
        return [reply async for reply in self.run(request)]

    async def run_step(self, step: Step) -> Reply:
        """Run one simple command; never raises (except cancellation)."""
        name = step.argv[0]
        cmd = _ALIASES.get(name)
        if cmd is None:
            return Reply(status=error_status(
                "EINVAL", name, f"unknown command {name!r}; 'help' lists the commands"))
        if step.redirect is not None and not cmd.redirectable:
            return Reply(status=error_status(
                "EINVAL", name, "only echo and cat output can be redirected to a file"))
        if cmd.writes is not None and cmd.writes(step) and not self.admin:
            return Reply(status=error_status(
                "EPERM", _written_file(step),
                "this client may only read (root or the admin group may write)"))
        try:
            return await cmd.handler(self, step)
        except DamonError as e:
            return _error_reply(e, name)
        except Exception as e:  # a bug must cost one command, not the connection or daemon
            log.exception("control command failed", argv=step.argv, redirect=step.redirect,
                          cwd=self.cwd, peer=self.peer)
            return Reply(status=error_status(
                "EIO", name, f"internal error ({type(e).__name__}); see the daemon log"))

    # -- file access -------------------------------------------------------------------------

    def resolve(self, path: str, notes: list[str]) -> Resolved:
        """Resolve ``path`` from the working directory; errors name ``path`` as written."""
        if not path:
            raise DamonError("ENOENT", "no such file or directory", path)
        try:
            res = self.daemon.vfs.resolve(path, self.cwd)
        except DamonError as e:
            raise e.with_what(path) from None
        notes.extend(NOTE_PREFIX + one_line(n) for n in res.notes)
        return res

    def read_file(self, path: str, notes: list[str]) -> str:
        node = self.resolve(path, notes).node
        if node.is_dir():
            raise DamonError("EISDIR", "is a directory", path)
        try:
            return node.read()
        except DamonError as e:
            raise e.with_what(path) from None

    async def write_file(self, path: str, payload: str, notes: list[str]) -> None:
        """One ``write(2)`` of ``payload`` to the file at ``path``."""
        node = self.resolve(path, notes).node
        if node.is_dir():
            raise DamonError("EISDIR", "is a directory", path)
        try:
            await node.write(payload)
        except DamonError as e:
            raise e.with_what(path) from None


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@_command("cat", "cat PATH...", "print files (aliases: read, get)", aliases=("read", "get"),
          writes=_redirected, redirectable=True)
async def _cat(s: Session, step: Step) -> Reply:
    """Files are read in order; the first failing one ends the reply with its error (the data
    of the files before it is kept)."""
    paths = step.argv[1:]
    if not paths:
        raise DamonError("EINVAL", "missing file operand", step.argv[0])
    notes: list[str] = []
    texts: list[str] = []
    for path in paths:
        try:
            texts.append(s.read_file(path, notes))
        except DamonError as e:
            if step.redirect is not None:
                return _error_reply(e, path, notes)
            data = [line for text in texts for line in content_lines(text)]
            return _error_reply(e, path, notes + data)
    if step.redirect is not None:
        try:
            await s.write_file(step.redirect, "".join(texts), notes)
        except DamonError as e:
            return _error_reply(e, step.redirect, notes)
        return Reply(notes)
    return Reply(notes + [line for text in texts for line in content_lines(text)])


@_command("echo", "echo [-n] WORD... [> PATH]",
          "write the words, joined by spaces, to PATH (one write, newline unless -n)",
          writes=_redirected, redirectable=True)
async def _echo(s: Session, step: Step) -> Reply:
    payload = echo_payload(step.argv)
    if step.redirect is None:
        return Reply(content_lines(payload) if payload else [])
    notes: list[str] = []
    try:
        await s.write_file(step.redirect, payload, notes)
    except DamonError as e:
        return _error_reply(e, step.redirect, notes)
    return Reply(notes)


@_command("write", "write [-n] PATH WORD...", "write the words to PATH (aliases: set)",
          aliases=("set",), writes=lambda step: True)
async def _write(s: Session, step: Step) -> Reply:
    args = step.argv[1:]
    end = "\n"
    if args and args[0] == "-n":
        args, end = args[1:], ""
    if not args:
        raise DamonError("EINVAL", "missing file operand", step.argv[0])
    path, words = args[0], args[1:]
    notes: list[str] = []
    try:
        await s.write_file(path, " ".join(words) + end, notes)
    except DamonError as e:
        return _error_reply(e, path, notes)
    return Reply(notes)


# --------------------------------------------------------------------------------------------
# Browsing
# --------------------------------------------------------------------------------------------


def _sorted_entries(node: Node) -> list[tuple[str, Node]]:
    # ls sorts names by byte value in the C locale; every DAMON file name is ASCII
    return sorted(node.entries().items())


def _entry_name(name: str, node: Node) -> str:
    return name + "/" if node.is_dir() else name


@_command("ls", "ls [PATH]", "list a directory (directories end with /)")
async def _ls(s: Session, step: Step) -> Reply:
    args = [a for a in step.argv[1:] if a not in ("-1", "-p", "-F")]
    if len(args) > 1:
        raise DamonError("EINVAL", "list one directory at a time", step.argv[0])
    path = args[0] if args else "."
    notes: list[str] = []
    res = s.resolve(path, notes)
    if not res.node.is_dir():
        return Reply(notes + [escape_data_line(path)])
    return Reply(notes + [escape_data_line(_entry_name(name, node))
                          for name, node in _sorted_entries(res.node)])


@_command("cd", "cd [PATH]", "change the working directory (no PATH: the sysfs admin root)")
async def _cd(s: Session, step: Step) -> Reply:
    if len(step.argv) > 2:
        raise DamonError("EINVAL", "too many arguments", step.argv[0])
    if len(step.argv) == 1:
        s.cwd = SYSFS_ADMIN
        return Reply()
    path = step.argv[1]
    notes: list[str] = []
    res = s.resolve(path, notes)
    if not res.node.is_dir():
        raise DamonError("ENOTDIR", "not a directory", path)
    s.cwd = res.path
    return Reply(notes)


@_command("pwd", "pwd", "print the working directory")
async def _pwd(s: Session, step: Step) -> Reply:
    return Reply([escape_data_line(s.cwd)])


#: ``tree`` stops descending here (directories are never cyclic; this only bounds output)
_TREE_MAX_DEPTH = 32


@_command("tree", "tree [PATH]", "show the files below a directory")
async def _tree(s: Session, step: Step) -> Reply:
    if len(step.argv) > 2:
        raise DamonError("EINVAL", "show one directory at a time", step.argv[0])
    path = step.argv[1] if len(step.argv) == 2 else "."
    notes: list[str] = []
    res = s.resolve(path, notes)
    lines = [escape_data_line(path + ("/" if res.node.is_dir() and path != "." else ""))]

    def walk(node: Node, indent: str, depth: int) -> None:
        entries = _sorted_entries(node)
        for i, (name, child) in enumerate(entries):
            last = i == len(entries) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{_entry_name(name, child)}")
            if child.is_dir() and depth < _TREE_MAX_DEPTH:
                walk(child, indent + ("    " if last else "│   "), depth + 1)

    if res.node.is_dir():
        walk(res.node, "", 1)
    return Reply(notes + lines)


# --------------------------------------------------------------------------------------------
# Information
# --------------------------------------------------------------------------------------------


@_command("help", "help [COMMAND]", "list the commands, or show how to use one")
async def _help(s: Session, step: Step) -> Reply:
    if len(step.argv) > 1:
        cmd = _ALIASES.get(step.argv[1])
        if cmd is None:
            raise DamonError("EINVAL", f"no command {step.argv[1]!r}", step.argv[0])
        lines = [f"usage: {cmd.usage}", cmd.summary]
        if cmd.aliases:
            lines.append(f"aliases: {', '.join(cmd.aliases)}")
        return Reply([escape_data_line(line) for line in lines])
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = [f"{c.usage:<{width}}  {c.summary}" for c in COMMANDS.values()]
    lines += ["",
              "Paths: kdamonds/... (from the sysfs admin root), /sys/kernel/mm/damon/admin/...,",
              "<sysfs>/kernel/mm/damon/admin/..., /sys/kernel/debug/damon/..., <debugfs>/damon/...",
              "Chain commands with ';' or '&&'. Replies end with OK or ERR <ERRNO> <what>: <why>."]
    return Reply([escape_data_line(line) for line in lines])


@_command("version", "version", "show damond's version")
async def _version(s: Session, step: Step) -> Reply:
    return Reply([f"damond {__version__}",
                  f"python {platform.python_version()}",
                  f"trio {trio.__version__}",
                  f"kernel {platform.release()}"])


def _features_lines(s: Session, machine: list[str]) -> list[str]:
    """What damond implements (interfaces, operation sets from the registry), then what this
    machine offers (``machine``: the daemon's feature probe)."""
    lines = [
        "interface sysfs: yes (/sys/kernel/mm/damon/admin: the v5.18 tree with the v5.19 "
        "additions avail_operations, fvaddr and the commit state keyword)",
        "interface debugfs: yes (/sys/kernel/debug/damon: attrs, target_ids, init_regions, "
        "schemes, monitor_on, kdamond_pid, mk_contexts, rm_contexts; v5.18 semantics)",
        f"interface tracepoint: yes ({EVENT_NAME}, v5.18 text form, via 'trace')",
    ]
    records = {r.name: r for r in s.daemon.registry.records()}
    for name in [*records, *(n for n in KERNEL_OPERATIONS if n not in records)]:
        r = records.get(name)
        if r is None:
            lines.append(f"operations {name}: no (not registered)")
        else:
            origin = "built-in" if r.builtin else f"plugin from {r.distribution}"
            lines.append(f"operations {name}: yes ({origin}: {r.info.summary})")
            if r.info.applies:
                lines.append(f"operations {name} applies: {', '.join(sorted(r.info.applies))} "
                             "(other actions are tried and counted, not applied)")
            lines.extend(f"operations {name} note: {note}" for note in r.info.notes)
    lines.extend(machine)
    return [escape_data_line(one_line(line)) for line in lines]


@_command("features", "features", "what this kernel and damond can do here")
async def _features(s: Session, step: Step) -> Reply:
    # the probe does system calls (cached after the first run): keep it off the event loop
    machine = await trio.to_thread.run_sync(s.daemon.probe_features)
    return Reply(_features_lines(s, machine))


@_command("plugins", "plugins", "list the operation sets and where they come from")
async def _plugins(s: Session, step: Step) -> Reply:
    rows = [("NAME", "DISTRIBUTION", "VERSION", "ORIGIN", "SUMMARY")]
    for r in s.daemon.registry.records():
        rows.append((r.name, r.distribution, r.version,
                     "built-in" if r.builtin else "plugin", r.info.summary))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4]])
             for row in rows]
    return Reply([escape_data_line(one_line(line.rstrip())) for line in lines])


def flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    """Nested dicts and lists as ``(dotted.key, scalar)`` pairs."""
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in flatten(v, f"{prefix}.{k}")]
    if isinstance(value, list | tuple):
        return [kv for i, v in enumerate(value) for kv in flatten(v, f"{prefix}.{i}")]
    return [(prefix, value)]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@_command("status", "status", "daemon uptime and every running kdamond's status")
async def _status(s: Session, step: Step) -> Reply:
    facts: dict[str, Any] = {
        "version": __version__, "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - s.started, 3),
    }
    if s.server_status is not None:
        facts.update(s.server_status())
    running = list(s.daemon.scheduler.running)
    facts["kdamonds_running"] = len(running)
    pairs = flatten(facts, "daemon")
    for kd in running:
        pairs += flatten(kd.status(), kd.name)
    return Reply([escape_data_line(one_line(f"{k}: {_show(v)}")) for k, v in pairs])


def _sample_number(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise DamonError("EINVAL", f"{text!r} is not a sample number", what)
    return int(text)


@_command("lateness", "lateness [FIRST [LAST]]",
          "sampling lateness percentiles of samples FIRST..LAST of each running kdamond "
          f"(default: the last {DEFAULT_LATENESS_SAMPLES})")
async def _lateness(s: Session, step: Step) -> Reply:
    """damond's own measurement command: how late each kdamond's samples woke up over a chosen
    window of sample numbers, so that a load test measures exactly its load window (read
    ``samples=`` before and after, then ask for that window)."""
    args = step.argv[1:]
    if len(args) > 2:
        raise DamonError("EINVAL", "too many arguments", step.argv[0])
    lines = []
    for kd in list(s.daemon.scheduler.running):
        samples = kd.stats.samples
        first = (_sample_number(args[0], step.argv[0]) if args
                 else samples - DEFAULT_LATENESS_SAMPLES + 1)
        last = _sample_number(args[1], step.argv[0]) if len(args) > 1 else samples
        values, first, last = kd.stats.lateness_window(first, last)
        values *= 1e3
        line = f"{kd.name} samples={samples} first={first} last={last} n={values.size}"
        if values.size:
            p50, p99 = kd.stats.percentiles(values, (50, 99))
            line += f" p50_ms={p50:.4f} p99_ms={p99:.4f} max_ms={values.max():.4f}"
        lines.append(line)
    return Reply(lines)


# --------------------------------------------------------------------------------------------
# Configuration and metrics
# --------------------------------------------------------------------------------------------


@_command("dump", "dump [json|yaml]",
          "print the sysfs tree's kdamonds in damo's kdamonds format (loads with "
          "'damond serve --config' and 'damo start --kdamonds')")
async def _dump(s: Session, step: Step) -> Reply:
    args = step.argv[1:]
    if len(args) > 1 or (args and args[0] not in ("json", "yaml")):
        raise DamonError("EINVAL", "expected 'json', 'yaml' or nothing", step.argv[0])
    text = dump_kdamonds(s.daemon.sysfs.specs(), fmt=args[0] if args else "json")
    return Reply(content_lines(text))


@_command("reload", "reload",
          "re-read the --config file and apply it (as SIGHUP does; a broken file is refused "
          "and the running configuration kept)", writes=lambda step: True)
async def _reload(s: Session, step: Step) -> Reply:
    if len(step.argv) > 1:
        raise DamonError("EINVAL", "reload takes no arguments", step.argv[0])
    manager = s.daemon.config_manager
    if manager is None:
        raise DamonError("EINVAL", "this daemon has no configuration manager", step.argv[0])
    result = await manager.reload()
    notes = [NOTE_PREFIX + one_line(f"warning: {w}") for w in result.warnings]
    if result.ok:
        return Reply([*notes, escape_data_line(one_line(
            f"reloaded {manager.path}: {result.message}"))])
    err = result.error or DamonError("EIO", result.message)
    return Reply(notes, error_status(err.errno_name, step.argv[0], result.message))


@_command("metrics", "metrics", "the daemon's metrics in the Prometheus text format")
async def _metrics(s: Session, step: Step) -> Reply:
    if len(step.argv) > 1:
        raise DamonError("EINVAL", "metrics takes no arguments", step.argv[0])
    return Reply(content_lines(s.daemon.metrics_text()))


# --------------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------------


@_command("trace", "trace [COUNT]",
          f"stream {EVENT_NAME} events (COUNT of them, or until you close)")
async def _trace(s: Session, step: Step) -> Reply:
    if len(step.argv) > 2:
        raise DamonError("EINVAL", "too many arguments", step.argv[0])
    count = None
    if len(step.argv) == 2:
        text = step.argv[1]
        if not text.isascii() or not text.isdigit() or int(text) == 0:
            raise DamonError("EINVAL", f"COUNT must be a positive number, not {text!r}",
                             step.argv[0])
        count = min(int(text), MAX_TRACE_COUNT)
    return Reply(trace=TraceRequest(count))


@_command("prompt", "prompt [on|off]", f"interactive mode: show {PROMPT.strip()!r} "
          "after each reply (no argument: toggle)")
async def _prompt(s: Session, step: Step) -> Reply:
    if len(step.argv) > 2 or (len(step.argv) == 2 and step.argv[1] not in ("on", "off")):
        raise DamonError("EINVAL", "expected 'on', 'off' or nothing", step.argv[0])
    s.prompt = (not s.prompt) if len(step.argv) == 1 else step.argv[1] == "on"
    return Reply()


@_command("quit", "quit", "close the connection", aliases=("exit",))
async def _quit(s: Session, step: Step) -> Reply:
    return Reply(quit=True)


def command_names() -> list[str]:
    """Every command name and alias the executor accepts."""
    return sorted(_ALIASES)


__all__ = [
    "COMMANDS", "Reply", "Session", "TraceRequest", "command_names", "content_lines",
    "parse_request",
]
