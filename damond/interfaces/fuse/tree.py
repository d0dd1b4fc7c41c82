"""The FUSE file system: damond's files with the semantics of sysfs and debugfs.

What a program sees, and the kernel code it mirrors (Linux 6.18 ``fs/kernfs/file.c``,
``fs/sysfs/file.c``, ``mm/damon/dbgfs.c`` of v5.18):

- **Each write(2) is one store.** Files are opened ``direct_io``, so no page cache merges or
  splits writes; the errno of the store comes back from ``write(2)`` (``echo abc >
  nr_kdamonds`` fails with "Invalid argument").
- **Offsets.** sysfs ignores the file position: every write is a new store of at most one page
  (kernfs cuts longer writes to ``PAGE_SIZE`` and returns the short count). debugfs refuses a
  write at a non-zero position with EINVAL ("We do not accept continuous write",
  ``user_input_str``), so a second ``write(2)`` on one open file fails there.
- **Reads** produce the whole content at offset 0 (kept with the open file, so that reads at
  later offsets continue the same text, as ``seq_file`` does).
- **Modes and owners** as the kernel shows them: directories 0755, files 0600/0400/0200 owned
  by root (by the mounting user when a user mounts their own daemon, else they could not use
  it). sysfs also refuses to *open* a file for writing without a write bit or for reading
  without a read bit, even for root (``KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK``); debugfs does not.
- **Caching only what cannot change**: directories named by a number appear and vanish with
  ``nr_*`` writes and are never cached (timeouts 0), so the next lookup sees the change; every
  other sysfs name lives exactly as long as its parent, so the kernel may keep it
  (:data:`STABLE_S`). debugfs names its contexts freely and is never cached.
- **Credentials.** The mount uses ``default_permissions``: the kernel checks the caller's
  uid/gid against the modes above, as it does for sysfs (root may write, others may read only
  what the modes allow). ``open`` checks once more with the caller's credentials from FUSE, so
  the rule does not depend on a mount option.
- Creating, removing or renaming anything fails as on sysfs: EACCES for a new file, EPERM for
  directories, links and renames.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import time
from dataclasses import dataclass

import pyfuse3
import structlog

from damond.errors import DamonError
from damond.interfaces.fuse.backend import Backend, NodeInfo
from damond.interfaces.vfs import DEBUGFS_DAMON

log = structlog.get_logger("damond.fuse")

#: kernfs cuts a write to one page unless the file asks for atomic writes
#: (``kernfs_fop_write_iter``); DAMON's files do not
SYSFS_WRITE_MAX = 4096
#: ``st_size`` of a sysfs attribute file (``sysfs_add_file_mode_ns``: PAGE_SIZE);
#: debugfs files show 0
SYSFS_FILE_SIZE = 4096
#: numbered directories are never cached: nr_* writes change them at any moment
NO_CACHE_S = 0.0
#: how long the kernel may keep a name that exists whenever its parent does (see ``_stable``)
STABLE_S = 60.0
#: how long ``open`` trusts the kind and mode a lookup just found (not the node's existence)
SEEN_FRESH_S = 1.0
_DIR = NodeInfo(is_dir=True, mode=0o755)


@dataclass
class _Handle:
    path: str
    debugfs: bool
    content: bytes | None = None


def fuse_error(err: DamonError | OSError) -> pyfuse3.FUSEError:
    number = err.errno if isinstance(err, DamonError) else (err.errno or errno.EIO)
    return pyfuse3.FUSEError(number)


class FuseTree(pyfuse3.Operations):
    """The files below ``root`` (a directory of the backend, e.g. ``/sys/kernel/mm/damon``).

    ``owner`` is the (uid, gid) every node shows. Inode numbers are handed out per path and
    forgotten when the kernel forgets them.
    """

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, backend: Backend, root: str, owner: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        self.backend = backend
        self.root = root
        self.owner = owner
        self._paths: dict[int, str] = {pyfuse3.ROOT_INODE: root}
        self._inodes: dict[str, int] = {root: pyfuse3.ROOT_INODE}
        self._lookups: dict[int, int] = {}
        self._next_inode = pyfuse3.ROOT_INODE + 1
        self._handles: dict[int, _Handle] = {}
        self._listings: dict[int, list[tuple[str, NodeInfo]]] = {}
        self._next_fh = 1
        self._time_ns = time.time_ns()
        #: what the last lookup or getattr of an inode found, and when: ``open`` follows a
        #: path walk's lookup at once, and a node's kind and mode never change with its path
        self._seen: dict[int, tuple[float, NodeInfo]] = {}

    # -- inodes -------------------------------------------------------------------------------

    def _path(self, inode: int) -> str:
        try:
            return self._paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _inode(self, path: str) -> int:
        inode = self._inodes.get(path)
        if inode is None:
            inode = self._next_inode
            self._next_inode += 1
            self._inodes[path] = inode
            self._paths[inode] = path
        return inode

    def _remember(self, inode: int) -> None:
        self._lookups[inode] = self._lookups.get(inode, 0) + 1

    async def forget(self, inode_list) -> None:
        for inode, nlookup in inode_list:
            left = self._lookups.get(inode, 0) - nlookup
            if left > 0:
                self._lookups[inode] = left
                continue
            self._lookups.pop(inode, None)
            self._seen.pop(inode, None)
            if inode != pyfuse3.ROOT_INODE:
                path = self._paths.pop(inode, None)
                if path is not None:
                    self._inodes.pop(path, None)

    def _is_debugfs(self, path: str) -> bool:
        return path == DEBUGFS_DAMON or path.startswith(DEBUGFS_DAMON + "/")

    def _stable(self, path: str) -> bool:
        """Whether the node exists exactly as long as its parent directory does.

        In the sysfs tree only directories named by a number come and go (``nr_*`` writes,
        ``tried_regions``); every other name is part of its parent for the parent's whole
        life, with a fixed kind and mode. The kernel may keep such a name cached: reaching it
        still looks up the numbered directories above it, which fail once they are gone.
        debugfs names its contexts freely (``mk_contexts``), so nothing there is cached.
        """
        if self._is_debugfs(path) or path == self.root:
            return False
        return not posixpath.basename(path).isdigit()

    def _attrs(self, inode: int, path: str, info: NodeInfo) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode
        a.generation = 0
        a.entry_timeout = a.attr_timeout = STABLE_S if self._stable(path) else NO_CACHE_S
        if info.is_dir:
            a.st_mode = stat.S_IFDIR | info.mode
            a.st_nlink = 2
            a.st_size = 0
        else:
            a.st_mode = stat.S_IFREG | info.mode
            a.st_nlink = 1
            a.st_size = 0 if self._is_debugfs(path) else SYSFS_FILE_SIZE
        a.st_uid, a.st_gid = self.owner
        a.st_blksize = 4096
        a.st_blocks = 0
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._time_ns
        return a

    async def _stat(self, path: str) -> NodeInfo:
        try:
            return await self.backend.stat(path)
        except (DamonError, OSError) as e:
            raise fuse_error(e) from None

    # -- lookup and attributes ----------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx=None):
        name = os.fsdecode(name)
        parent = self._path(parent_inode)
        if name == ".":
            path = parent
        elif name == "..":
            path = parent if parent == self.root else posixpath.dirname(parent)
        else:
            path = posixpath.join(parent, name)
        info = await self._stat(path)
        inode = self._inode(path)
        self._remember(inode)
        self._seen[inode] = (time.monotonic(), info)
        return self._attrs(inode, path, info)

    async def getattr(self, inode, ctx=None):
        path = self._path(inode)
        info = await self._stat(path)
        self._seen[inode] = (time.monotonic(), info)
        return self._attrs(inode, path, info)

    async def _fresh_info(self, inode: int, path: str) -> NodeInfo:
        """The node's kind and mode: from a lookup within :data:`SEEN_FRESH_S` (a path-based
        ``open(2)`` looks the path up right before), else asked again. Saves one round trip to
        the daemon per open; a node removed in between fails its read or write instead.

        A stable name (see ``_stable``) is trusted whatever the age of what was seen: the
        kernel keeps its entry cached, so a path walk that ends there sends no lookup, but it
        did look up every numbered directory above it (never cached) just before, and a
        stable name exists exactly as long as its parent, with a fixed kind and mode. Without
        this, every open of a file under a numbered directory cost one more round trip (the
        selftests' tried-regions loop reads four files per region)."""
        seen = self._seen.get(inode)
        if seen is not None and (self._stable(path)
                                 or time.monotonic() - seen[0] < SEEN_FRESH_S):
            return seen[1]
        return await self._stat(path)

    async def setattr(self, inode, attr, fields, fh, ctx):
        # O_TRUNC (bash's '>') and touch are accepted and change nothing, as on sysfs;
        # chmod and chown are not offered
        if fields.update_mode or fields.update_uid or fields.update_gid:
            raise pyfuse3.FUSEError(errno.EPERM)
        path = self._path(inode)  # O_TRUNC comes right after the open's lookup
        return self._attrs(inode, path, await self._fresh_info(inode, path))

    # -- directories --------------------------------------------------------------------------

    async def opendir(self, inode, ctx):
        path = self._path(inode)
        try:
            listing = await self.backend.listdir(path)
        except (DamonError, OSError) as e:
            raise fuse_error(e) from None
        fh = self._new_fh()
        # one snapshot per opendir: no entry twice or skipped; '.' and '..' first, as sysfs
        # lists them (their lookup counts are not raised: pyfuse3's rule)
        listing = [(".", _DIR), ("..", _DIR), *listing]
        self._listings[fh] = listing
        self._handles[fh] = _Handle(path, self._is_debugfs(path))
        return fh

    async def readdir(self, fh, start_id, token):
        handle = self._handles[fh]
        listing = self._listings[fh]
        for index in range(start_id, len(listing)):
            name, info = listing[index]
            dots = name in (".", "..")
            if dots:
                path = handle.path if name == "." or handle.path == self.root else \
                    posixpath.dirname(handle.path)
                inode = self._inodes.get(path, pyfuse3.ROOT_INODE)
            else:
                path = posixpath.join(handle.path, name)
                inode = self._inode(path)
            if not pyfuse3.readdir_reply(token, os.fsencode(name),
                                         self._attrs(inode, path, info), index + 1):
                break
            if not dots:
                self._remember(inode)

    async def releasedir(self, fh):
        self._listings.pop(fh, None)
        self._handles.pop(fh, None)

    # -- files --------------------------------------------------------------------------------

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    async def open(self, inode, flags, ctx):
        path = self._path(inode)
        info = await self._fresh_info(inode, path)
        if info.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        accmode = flags & os.O_ACCMODE
        wants_write = accmode in (os.O_WRONLY, os.O_RDWR)
        wants_read = accmode in (os.O_RDONLY, os.O_RDWR)
        debugfs = self._is_debugfs(path)
        if not debugfs and ((wants_write and not info.mode & 0o222)
                            or (wants_read and not info.mode & 0o444)):
            raise pyfuse3.FUSEError(errno.EACCES)
        if not self._allowed(ctx, info.mode, wants_read, wants_write):
            raise pyfuse3.FUSEError(errno.EACCES)
        fh = self._new_fh()
        self._handles[fh] = _Handle(path, debugfs)
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    def _allowed(self, ctx, mode: int, read: bool, write: bool) -> bool:
        """The caller's credentials against the node's owner and mode (what the kernel's
        ``default_permissions`` check does; root passes, as with ``CAP_DAC_OVERRIDE``)."""
        if ctx is None or ctx.uid == 0:
            return True
        uid, gid = self.owner
        shift = 6 if ctx.uid == uid else 3 if ctx.gid == gid else 0
        bits = (mode >> shift) & 0o7
        return (not read or bool(bits & 0o4)) and (not write or bool(bits & 0o2))

    async def read(self, fh, off, size):
        handle = self._handles[fh]
        if off == 0 or handle.content is None:
            try:
                handle.content = await self.backend.read(handle.path)
            except (DamonError, OSError) as e:
                raise fuse_error(e) from None
        return handle.content[off:off + size]

    async def write(self, fh, off, buf):
        handle = self._handles[fh]
        if handle.debugfs and off != 0:
            raise pyfuse3.FUSEError(errno.EINVAL)
        data = bytes(buf) if handle.debugfs else bytes(buf[:SYSFS_WRITE_MAX])
        try:
            await self.backend.write(handle.path, data)
        except (DamonError, OSError) as e:
            log.debug("store refused", path=handle.path, error=str(e))
            raise fuse_error(e) from None
        handle.content = None  # a later read shows the new content
        return len(data)

    # No flush(): pyfuse3's default answers ENOSYS, after which the kernel sends no FLUSH
    # again (fc->no_flush) and close(2) returns at once; a store's errno comes from write(2).

    async def release(self, fh):
        self._handles.pop(fh, None)

    # -- what sysfs refuses -------------------------------------------------------------------

    async def create(self, parent_inode, name, mode, flags, ctx):
        raise pyfuse3.FUSEError(errno.EACCES)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise pyfuse3.FUSEError(errno.EACCES)

    async def mkdir(self, parent_inode, name, mode, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def rmdir(self, parent_inode, name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def unlink(self, parent_inode, name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def symlink(self, parent_inode, name, target, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_namemax = 255
        return s
