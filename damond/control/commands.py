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

import contextlib
import functools
import os
import platform
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import trio

from damond import __version__
from damond.control.locks import TreeLocks, lock_key, needs_lock
from damond.control.peer_access import read_access_refusal
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
from damond.interfaces.kparse import kstrtoint, kstrtoull, str_to_ints
from damond.interfaces.sysfs import STATE_COMMANDS
from damond.interfaces.tracepoint import EVENT_NAME
from damond.interfaces.vfs import DEBUGFS_DAMON, SYSFS_ADMIN, Node, Resolved

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
    #: the whole reply (data and status lines) already encoded for the wire, when it was
    #: produced elsewhere (a walk of a large tree); ``data`` is then empty
    wire: bytes | None = None

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
    return [escape_data_line(line) for line in _split_lines(text)]


#: above this size text is split in slices (one C call on megabytes takes tens of ms)
_SLICE = 64 * 1024


def _split_lines(text: str) -> list[str]:
    """``text.split("\n")``, in slices of about ``_SLICE`` characters."""
    if len(text) <= _SLICE:
        return text.split("\n")
    out: list[str] = []
    start = 0
    while True:
        cut = text.find("\n", start + _SLICE)
        if cut < 0:
            out += text[start:].split("\n")
            return out
        out += text[start:cut].split("\n")
        start = cut + 1


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


#: longest argument a log line quotes in full: any reader can send 64 KiB requests, and a
#: log that copies them whole can be flooded
_LOG_ARG_CHARS = 200


def _bounded(text: str) -> str:
    if len(text) <= _LOG_ARG_CHARS:
        return text
    return f"{text[:_LOG_ARG_CHARS]}... ({len(text)} characters)"


# --------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


@dataclass(frozen=True)
class PeerCred:
    """The peer's credentials as ``SO_PEERCRED`` gave them at connect(2)."""

    pid: int
    uid: int
    gid: int


async def _inline(fn: Callable[[], Reply]) -> Reply:
    await trio.lowlevel.checkpoint()
    return fn()


@dataclass
class Shared:
    """What every connection of one daemon shares (the socket server makes one; an in-process
    Session gets its own): the write locks, how a large tree is walked, and how a command that
    waits gives up the server's gate meanwhile."""

    locks: TreeLocks = field(default_factory=TreeLocks)
    #: runs a walk of a large tree (``ls``, ``tree``, ``dump``) and returns its reply; the
    #: socket server runs it in a forked snapshot of the daemon (see ``control_socket``), so
    #: that neither the event loop nor the interpreter lock is held for seconds
    run_walk: Callable[[Callable[[], Reply]], Awaitable[Reply]] = _inline
    #: a context manager that releases the server's gate while a command waits
    outside_gate: Callable[[], AbstractAsyncContextManager[None]] = _nothing


#: a tree with at most this many regions, schemes and targets is walked inline: it costs
#: less than a fork
SMALL_TREE = 2048


def tree_size(daemon: Daemon) -> int:
    """Regions, schemes and targets in the sysfs and debugfs trees (what makes walks long)."""
    n = 0
    for kd in daemon.sysfs.kdamonds:
        for c in kd.contexts:
            n += len(c.spec.schemes) + sum(1 + len(t.regions) for t in c.spec.targets)
    for ctx in daemon.debugfs.contexts:
        n += len(ctx.schemes) + sum(1 + len(r) for r in ctx.regions)
    return n


class Session:
    """One client's view of the daemon: working directory, authorization, prompt mode.

    ``admin`` clients may write; others may only read (writes answer ``ERR EPERM``).
    ``cred``: the peer's credentials (None: an in-process client, trusted as root); a writer
    that is neither root nor the daemon's own user may only name processes it could
    ptrace-read (see :mod:`damond.control.peer_access`).
    ``started`` is the daemon's start time (``time.monotonic()``) for ``status``;
    ``server_status`` adds transport facts (e.g. connected clients) to ``status``.
    """

    def __init__(self, daemon: Daemon, *, admin: bool = True, peer: str = "local",
                 started: float | None = None,
                 server_status: Callable[[], dict[str, Any]] | None = None,
                 cred: PeerCred | None = None, shared: Shared | None = None) -> None:
        self.daemon = daemon
        self.admin = admin
        self.peer = peer
        self.cred = cred
        self.shared = shared or Shared()
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
            log.exception("control command failed", argv=[_bounded(a) for a in step.argv],
                          redirect=step.redirect and _bounded(step.redirect), cwd=self.cwd,
                          peer=self.peer)
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
        """One ``write(2)`` of ``payload`` to the file at ``path``.

        The write runs outside the server's gate, holding only the lock of the part of the
        tree it changes (:mod:`damond.control.locks`): a ``commit`` that waits for a slow
        kdamond's next sample delays writes to that kdamond only, never other clients.
        """
        if not path:
            raise DamonError("ENOENT", "no such file or directory", path)
        full = self.daemon.vfs.normalize(path, self.cwd)
        # 'off' never waits behind a write to the same kdamond: a commit waiting for a slow
        # kdamond's next sample ends with ECANCELED when the kdamond stops (damon_stop()
        # does not wait for pending damon_call()s either)
        stopping = full.endswith("/state") and payload.strip() == "off"
        key = lock_key(full) if needs_lock(full) and not stopping else None
        async with self.shared.outside_gate(), self.shared.locks.write(key):
            res = self.resolve(path, notes)
            node = res.node
            if node.is_dir():
                raise DamonError("EISDIR", "is a directory", path)
            self._check_target_access(res.path, payload, path)
            try:
                said = await node.write(payload)
            except DamonError as e:
                raise e.with_what(path) from None
        notes.extend(NOTE_PREFIX + one_line(n) for n in said)

    def _check_target_access(self, canonical: str, payload: str, path: str) -> None:
        """A writer other than root may name only processes it may ptrace-read itself."""
        cred = self.cred
        if cred is None or cred.uid in (0, os.geteuid()):
            return
        name = canonical.rsplit("/", 1)[-1]
        if name == "pid_target" and canonical.startswith(SYSFS_ADMIN + "/"):
            try:
                pids = [kstrtoint(payload)]
            except DamonError:
                return  # the file refuses it with the kernel's errno
        elif name == "target_ids" and canonical.startswith(DEBUGFS_DAMON + "/"):
            pids = str_to_ints(payload)
        else:
            return
        for pid in pids:
            if pid > 0 and (why := read_access_refusal(pid, cred.pid, cred.uid, cred.gid)):
                raise DamonError("EPERM", why, path)

    async def walk(self, fn: Callable[[], Reply]) -> Reply:
        """The reply of ``fn``, a read of a possibly huge part of the tree: inline for a small
        tree, else through ``Shared.run_walk`` (a snapshot walked off the event loop)."""
        if tree_size(self.daemon) <= SMALL_TREE:
            return fn()
        async with self.shared.outside_gate():  # other clients go on meanwhile
            return await self.shared.run_walk(fn)


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
    return sorted(node.entries().items(), key=_name)


def _name(item: tuple[str, Node]) -> str:
    return item[0]


def _entry_name(name: str, node: Node) -> str:
    return name + "/" if node.is_dir() else name


@_command("ls", "ls [-l] [-d] [PATH]",
          "list a directory (directories end with /; -l: each with its mode, as 'ls -l'; "
          "-d: the path itself, by its canonical name)")
async def _ls(s: Session, step: Step) -> Reply:
    flags = {a for a in step.argv[1:] if a in _LS_FLAGS}
    args = [a for a in step.argv[1:] if a not in _LS_FLAGS]
    if len(args) > 1:
        raise DamonError("EINVAL", "list one directory at a time", step.argv[0])
    path = args[0] if args else "."
    if "-d" in flags:  # one node: cheap whatever the tree's size (the FUSE mount's lookups)
        return _ls_reply(s, flags, path)
    return await s.walk(lambda: _ls_reply(s, flags, path))


_LS_FLAGS = frozenset(("-1", "-p", "-F", "-l", "-d", "-ld", "-dl"))


def _ls_reply(s: Session, flags: set[str], path: str) -> Reply:
    notes: list[str] = []
    res = s.resolve(path, notes)
    long = bool(flags & {"-l", "-ld", "-dl"})

    def show(name: str, node: Node) -> str:
        # -l: the mode as ls shows it (the FUSE mount's stat() comes from here)
        text = _entry_name(name, node)
        if long:
            kind = stat.S_IFDIR if node.is_dir() else stat.S_IFREG
            text = f"{stat.filemode(kind | node.mode)} {text}"
        return escape_data_line(text)

    if flags & {"-d", "-ld", "-dl"}:
        return Reply(notes + [show(res.path, res.node)])
    if not res.node.is_dir():
        return Reply(notes + [show(path, res.node)])
    return Reply(notes + [show(name, node) for name, node in _sorted_entries(res.node)])


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
    return await s.walk(lambda: _tree_reply(s, path))


def _tree_reply(s: Session, path: str) -> Reply:
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
        "interface sysfs: yes (/sys/kernel/mm/damon/admin: the Linux 6.18 tree: filters, "
        "core_filters, ops_filters, quota goals, effective_bytes, dests, target_nid, "
        "apply_interval_us, tried_regions, intervals_goal, addr_unit, refresh_ms; state "
        f"keywords {', '.join(STATE_COMMANDS)})",
        "interface debugfs: yes (/sys/kernel/debug/damon: attrs, target_ids, init_regions, "
        "schemes, monitor_on, kdamond_pid, mk_contexts, rm_contexts; v5.18 semantics)",
        f"interface tracepoint: yes ({EVENT_NAME}, v5.18 text form, via 'trace')",
    ]
    records = {r.name: r for r in s.daemon.registry.records()}
    # the machine's verdicts ("operations NAME: no: WHY") go on the sets' own lines
    unusable = dict(m.split(": ", 1) for m in machine if m.startswith("operations "))
    machine = [m for m in machine if not m.startswith("operations ")]
    for name in [*records, *(n for n in KERNEL_OPERATIONS if n not in records)]:
        r = records.get(name)
        if r is None:
            lines.append(f"operations {name}: no (not registered)")
        else:
            origin = "built-in" if r.builtin else f"plugin from {r.distribution}"
            verdict = unusable.get(f"operations {name}", "yes")
            lines.append(f"operations {name}: {verdict} ({origin}: {r.info.summary})")
            if r.info.applies:
                lines.append(f"operations {name} applies: {', '.join(sorted(r.info.applies))} "
                             "(other actions are tried and counted, not applied)")
            lines.extend(f"operations {name} note: {note}" for note in r.info.notes)
    lines.extend(machine)
    return [escape_data_line(one_line(line)) for line in lines]


@_command("features", "features", "what this kernel and damond can do here")
async def _features(s: Session, step: Step) -> Reply:
    # the probe does system calls (cached after the first run): keep it off the event loop
    async with s.shared.outside_gate():
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
    for kd in _stopped_kdamonds(s.daemon):  # and why the others stopped
        pairs += flatten({"state": "off", "stop_reason": kd.stop_reason or "stopped",
                          "samples": kd.stats.samples}, kd.name)
    return Reply([escape_data_line(one_line(f"{k}: {_show(v)}")) for k, v in pairs])


def _stopped_kdamonds(daemon: Daemon) -> list[Any]:
    """The last run of each sysfs kdamond directory and debugfs context that is not running
    now: ``status`` shows why it stopped (its target exited, an error, a request)."""
    holders = [*daemon.sysfs.kdamonds, *daemon.debugfs.contexts]
    runs = [h.kdamond for h in holders if h.kdamond is not None]
    return [kd for kd in runs if not kd.running and kd.finished.is_set()]


def _decimal(text: str, what: str, meaning: str) -> int:
    """A count given to one of damond's own commands, parsed as the kernel parses a number
    written to a DAMON file (``kstrtoull`` in base 10, Linux v5.18): any length of input is
    answered ``EINVAL`` (not a number) or ``ERANGE`` (above 2**64-1), never an exception."""
    try:
        return kstrtoull(text, 10)
    except DamonError as e:
        raise DamonError(e.errno_name, f"{meaning}: {e.why}", what) from None


def _sample_number(text: str, what: str) -> int:
    return _decimal(text, what, "not a sample number")


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
    given = [_sample_number(a, step.argv[0]) for a in args]  # refused even with no kdamond
    lines = []
    for kd in list(s.daemon.scheduler.running):
        samples = kd.stats.samples
        first = given[0] if given else samples - DEFAULT_LATENESS_SAMPLES + 1
        last = given[1] if len(given) > 1 else samples
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
    fmt = args[0] if args else "json"
    # 65,536 regions take seconds to copy and format: off the event loop
    return await s.walk(lambda: Reply(content_lines(dump_kdamonds(s.daemon.sysfs.specs(),
                                                                  fmt=fmt))))


@_command("reload", "reload",
          "re-read the --config file and apply it (as SIGHUP does; a broken file is refused "
          "and the running configuration kept)", writes=lambda step: True)
async def _reload(s: Session, step: Step) -> Reply:
    if len(step.argv) > 1:
        raise DamonError("EINVAL", "reload takes no arguments", step.argv[0])
    manager = s.daemon.config_manager
    if manager is None:
        raise DamonError("EINVAL", "this daemon has no configuration manager", step.argv[0])
    async with s.shared.outside_gate(), s.shared.locks.write(("sysfs", None)):
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
        count = _decimal(step.argv[1], step.argv[0], "COUNT must be a positive number")
        if count == 0:
            raise DamonError("EINVAL", "COUNT must be a positive number, not 0", step.argv[0])
        count = min(count, MAX_TRACE_COUNT)
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
