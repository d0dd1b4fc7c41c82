"""Where the mounted files come from: one small async interface, two implementations.

:class:`Backend` is all the FUSE tree needs: list a directory, tell a node's kind and mode,
read a file's whole content, make one store. :class:`VfsBackend` serves the daemon's own
:class:`~damond.interfaces.vfs.Vfs` (``damond serve --mount``: no socket in between); the
protocol client behind ``damond mount`` implements the same interface over the control socket
(``damond.tools.mount``). Both raise :class:`DamonError` with the errno the kernel's file
operation would return.

Lookups never use the documentation aliases the protocol accepts (``kdamonds/nr``): a file
system shows only the kernel's names.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Protocol

from damond.errors import DamonError
from damond.interfaces.vfs import Node, Vfs


@dataclass(frozen=True)
class NodeInfo:
    """What ``stat`` needs of a node: directory or file, and its permission bits."""

    is_dir: bool
    mode: int


class Backend(Protocol):
    """The files behind a mount. Paths are absolute, in the kernel's spelling
    (``/sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds``)."""

    async def stat(self, path: str) -> NodeInfo:
        """The node at ``path``; ENOENT if there is none."""
        ...

    async def listdir(self, path: str) -> list[tuple[str, NodeInfo]]:
        """The entries of the directory at ``path`` (ENOTDIR for a file)."""
        ...

    async def read(self, path: str) -> bytes:
        """The whole content of the file at ``path``, as one ``read`` at offset 0 sees it."""
        ...

    async def write(self, path: str, data: bytes) -> None:
        """One store: what a single ``write(2)`` of ``data`` does to the file."""
        ...


def node_info(node: Node) -> NodeInfo:
    return NodeInfo(node.is_dir(), node.mode)


def decode_payload(data: bytes) -> str:
    """A written buffer as the interfaces' text. Bytes that are not UTF-8 stay as surrogate
    escapes, which no DAMON file accepts, so they fail the way the kernel's parsing fails."""
    return data.decode("utf-8", "surrogateescape")


class VfsBackend:
    """The daemon's own files, in-process (every call runs in the daemon's trio loop)."""

    def __init__(self, vfs: Vfs) -> None:
        self.vfs = vfs

    def _node(self, path: str) -> Node:
        if path == "/":
            return self.vfs.resolve("/").node
        parent, name = posixpath.split(path)
        entries = self._dir(parent).entries()
        if name not in entries:  # no aliases: only the kernel's names exist
            raise DamonError("ENOENT", f"no {name!r} in {parent}")
        return entries[name]

    def _dir(self, path: str) -> Node:
        node = self._node(path) if path != "/" else self.vfs.resolve("/").node
        if not node.is_dir():
            raise DamonError("ENOTDIR", f"{path} is not a directory")
        return node

    async def stat(self, path: str) -> NodeInfo:
        return node_info(self._node(path))

    async def listdir(self, path: str) -> list[tuple[str, NodeInfo]]:
        return [(name, node_info(node)) for name, node in sorted(self._dir(path).entries().items())]

    async def read(self, path: str) -> bytes:
        node = self._node(path)
        if node.is_dir():
            raise DamonError("EISDIR", "is a directory")
        return node.read().encode("utf-8", "surrogateescape")

    async def write(self, path: str, data: bytes) -> None:
        node = self._node(path)
        if node.is_dir():
            raise DamonError("EISDIR", "is a directory")
        await node.write(decode_payload(data))
