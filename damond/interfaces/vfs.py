"""A small virtual file system: the kernel's DAMON files as damond serves them.

The sysfs tree (``/sys/kernel/mm/damon/admin``) and the debugfs files
(``/sys/kernel/debug/damon``) are mounted here so that the control protocol can resolve the
paths users copy from the kernel documentation: absolute, relative to a working directory, or
spelled with the documentation's ``<sysfs>``/``<debugfs>`` placeholders.

Nodes are views computed on lookup from the models behind them (directories are listed from
the current configuration, like sysfs directories created by writing ``nr_*`` files).
Reads are synchronous; writes are async because some start or reconfigure kdamonds.
"""

from __future__ import annotations

import difflib
import inspect
import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from damond.errors import DamonError

SYSFS_ADMIN = "/sys/kernel/mm/damon/admin"
DEBUGFS_DAMON = "/sys/kernel/debug/damon"


class Node:
    """Something at a path. ``mode`` follows the kernel's file modes (0600, 0400, 0200)."""

    mode = 0o600

    def is_dir(self) -> bool:
        return False


class File(Node):
    """A file whose content comes from ``read`` and whose writes go to ``write``.

    ``read`` returns the whole content (with its trailing newline, as the kernel's file does).
    ``write`` receives exactly the bytes one ``write(2)`` would carry, decoded.
    """

    def __init__(self, read: Callable[[], str] | None = None,
                 write: Callable[[str], Awaitable[object] | object] | None = None,
                 mode: int | None = None) -> None:
        self._read = read
        self._write = write
        if mode is None:
            mode = (0o400 if read else 0) | (0o200 if write else 0)
        self.mode = mode

    @property
    def readable(self) -> bool:
        return self._read is not None

    @property
    def writable(self) -> bool:
        return self._write is not None

    def read(self) -> str:
        if self._read is None:
            raise DamonError("EACCES", "the file cannot be read")
        return self._read()

    async def write(self, data: str) -> list[str]:
        """Store ``data``; returns notes the store has for the user (e.g. input it ignored
        silently, as the kernel does), usually none."""
        if self._write is None:
            # kernfs refuses to open a file without a store method for writing
            raise DamonError("EACCES", "the file is read-only")
        result = self._write(data)
        if inspect.isawaitable(result):
            result = await result
        return list(result or ())


class Dir(Node):
    """A directory whose entries are computed when looked up."""

    #: kobject and debugfs directories: 0755 (S_IRWXU | S_IRUGO | S_IXUGO)
    mode = 0o755

    def __init__(self, entries: Callable[[], dict[str, Node]],
                 aliases: Callable[[str], tuple[str, str] | None] | None = None) -> None:
        self._entries = entries
        self._aliases = aliases

    def is_dir(self) -> bool:
        return True

    def entries(self) -> dict[str, Node]:
        return self._entries()

    def child(self, name: str) -> Node | None:
        """The entry ``name`` (None if there is none). An entries function with a ``lookup``
        attribute finds one entry without building the others: resolving a path below 65,536
        schemes must not build 65,536 directories."""
        lookup = getattr(self._entries, "lookup", None)
        if lookup is not None:
            return lookup(name)
        return self._entries().get(name)

    def alias(self, name: str) -> tuple[str, str] | None:
        """A documentation spelling accepted for a real entry: (real name, note)."""
        return self._aliases(name) if self._aliases else None


@dataclass
class Resolved:
    node: Node
    path: str  # canonical absolute path
    notes: list[str] = field(default_factory=list)


class Vfs:
    """Mount points under one root; path resolution with documentation placeholders."""

    def __init__(self, mounts: dict[str, Dir]) -> None:
        self.mounts = dict(mounts)

    @staticmethod
    def normalize(path: str, cwd: str) -> str:
        """Absolute, normalised path. ``<sysfs>`` and ``<debugfs>`` (as the kernel documents
        write them) stand for ``/sys`` and ``/sys/kernel/debug``."""
        if path.startswith("<sysfs>"):
            path = "/sys" + path[len("<sysfs>"):]
        elif path.startswith("<debugfs>"):
            path = "/sys/kernel/debug" + path[len("<debugfs>"):]
        if not path.startswith("/"):
            path = posixpath.join(cwd, path)
        path = posixpath.normpath(path)
        if path.startswith("//"):
            path = path[1:]
        return path

    def resolve(self, path: str, cwd: str = SYSFS_ADMIN) -> Resolved:
        full = self.normalize(path, cwd)
        for mount, root in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if full == mount or full.startswith(mount + "/"):
                rest = full[len(mount):].strip("/")
                return self._walk(root, mount, rest.split("/") if rest else [], path)
        # a directory above the mount points (/, /sys, /sys/kernel, ...)
        children = self._synthetic_children(full)
        if children is None:
            raise DamonError("ENOENT", "no such file or directory")
        return Resolved(Dir(lambda: children), full)

    def _synthetic_children(self, full: str) -> dict[str, Node] | None:
        prefix = "/" if full == "/" else full + "/"
        names: dict[str, Node] = {}
        for mount, root in self.mounts.items():
            if mount.startswith(prefix):
                head = mount[len(prefix):].split("/", 1)[0]
                below = posixpath.join(full, head)
                names[head] = root if below == mount else Dir(
                    lambda b=below: self._synthetic_children(b) or {})
        return names or None

    def _walk(self, root: Dir, mount: str, parts: list[str], original: str) -> Resolved:
        node: Node = root
        canonical = [mount]
        notes: list[str] = []
        for part in parts:
            if not node.is_dir():
                raise DamonError("ENOTDIR", f"{'/'.join(canonical)} is not a directory")
            assert isinstance(node, Dir)
            found = node.child(part)
            if found is not None:
                node = found
                canonical.append(part)
                continue
            alias = node.alias(part)
            real_node = None if alias is None else node.child(alias[0])
            if alias is None or real_node is None:
                here = posixpath.join(*canonical)
                raise DamonError("ENOENT", f"no {part!r} in {here}" + _hint(part, node))
            real, note = alias
            notes.append(note)
            node = real_node
            canonical.append(real)
        return Resolved(node, posixpath.join(*canonical), notes)

    def listdir(self, path: str, cwd: str = SYSFS_ADMIN) -> list[tuple[str, Node]]:
        res = self.resolve(path, cwd)
        if not res.node.is_dir():
            raise DamonError("ENOTDIR", "not a directory")
        return list(res.node.entries().items())


#: a directory with more entries gets no "did you mean" hint (listing it would cost more
#: than the hint is worth)
_HINT_MAX_ENTRIES = 512


def _hint(name: str, node: Dir) -> str:
    size = getattr(node._entries, "size", None)
    if size is not None and size() > _HINT_MAX_ENTRIES:
        return ""
    return _did_you_mean(name, node.entries())


def _did_you_mean(name: str, entries: dict[str, Node]) -> str:
    close = difflib.get_close_matches(name, list(entries), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
