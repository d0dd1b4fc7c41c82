"""``damond exec [--socket PATH] -- CMD [ARGS...]``: run CMD where damond *is* DAMON.

CMD runs in a private mount namespace in which damond's files are mounted where the kernel's
are: the sysfs tree over ``/sys/kernel/mm/damon`` and the debugfs files over
``/sys/kernel/debug/damon``. Unmodified programs (damo, the kernel's selftests, scripts) find
them as they find the kernel's: through ``/proc/mounts`` (``sysfs`` at ``/sys``, ``debugfs``
at ``/sys/kernel/debug``). The host's own DAMON files are never touched: every mount is made
in the new namespace (``unshare(CLONE_NEWNS)``, then ``/`` made a recursive slave so nothing
propagates back), and the namespace vanishes with this process.

How the namespace is built, in order:

1. ``unshare`` before any thread exists (a thread keeps the namespace it was created in, and
   trio starts threads to spawn processes).
2. debugfs is mounted at ``/sys/kernel/debug`` if it is not mounted at all (selftests and damo
   look for it in ``/proc/mounts``).
3. A directory that does not exist where a mount must go (``/sys/kernel/debug/damon`` on Linux
   6.14+, which removed DAMON's debugfs; ``/sys/kernel/mm/damon`` on a kernel without DAMON) is
   made by covering its parent with a tmpfs that holds bind mounts of the parent's entries plus
   the new directory, so nothing else in the parent goes missing.
4. damo keeps the machine's DAMON features in ``$HOME/.damo.sysinfo`` and trusts them while
   the kernel version is the same; it can only probe them while no kdamond runs, so later
   commands (``damo tune`` on a running kdamond) depend on that cache. A cache of damond's own
   features (``damo.sysinfo`` next to the daemon's socket) is bound over it: damo probes damond
   once, keeps using what it found, and the host's cache is neither used nor overwritten.
5. One FUSE mount of damond's whole tree (in a temporary directory), whose two DAMON
   directories are bound into place; the temporary mount is detached.
6. CMD runs; SIGINT and SIGTERM are passed to it; its exit status is returned (128+N for a
   signal), and the namespace with its mounts goes away when this process exits.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import sys
import tempfile
import threading

import trio

from damond.client import client_socket_path
from damond.interfaces.fuse import mounts
from damond.interfaces.fuse.session import DEBUGFS_ROOT, SYSFS_DAMON, serve_fuse
from damond.interfaces.vfs import DEBUGFS_DAMON
from damond.tools.mount import SocketBackend, startup_error

DEBUGFS_MOUNT = posixpath.dirname(DEBUGFS_DAMON)
#: damo's cache of the machine's DAMON features (``_damo_sysinfo.sysinfo_file_path``)
DAMO_SYSINFO = ".damo.sysinfo"


def _ensure_debugfs() -> None:
    if not any(m.fstype == "debugfs" for m in mounts.mounts()):
        mounts.mount_fs("debugfs", DEBUGFS_MOUNT, "debugfs")


def _ensure_directory(path: str) -> None:
    """Make ``path`` exist in this namespace, keeping every other entry of its parent."""
    if os.path.isdir(path):
        return
    parent, name = posixpath.split(path)
    keep = tempfile.mkdtemp(prefix="damond-exec-keep-")
    try:
        mounts.bind(parent, keep)
        mounts.mount_fs("tmpfs", parent, "tmpfs", data="mode=0755")
        for entry in os.listdir(keep):
            source, target = posixpath.join(keep, entry), posixpath.join(parent, entry)
            if os.path.isdir(source):
                os.mkdir(target)
            else:
                open(target, "w").close()
            mounts.bind(source, target)
        os.mkdir(path, 0o755)
    finally:
        with contextlib.suppress(OSError):
            mounts.umount(keep, detach=True)
        os.rmdir(keep)


def _touch(path: str) -> bool:
    """Make ``path`` exist as a file (damo reads an empty one as "no cache")."""
    try:
        open(path, "a").close()
    except OSError:
        return False
    return os.path.isfile(path)


def _swap_damo_cache(socket_path: str) -> None:
    home = os.environ.get("HOME")
    if not home or not os.path.isdir(home):
        return
    ours = posixpath.join(posixpath.dirname(os.path.abspath(socket_path)), DAMO_SYSINFO)
    theirs = posixpath.join(home, DAMO_SYSINFO)
    if _touch(ours) and _touch(theirs):
        mounts.bind(ours, theirs)


def _prepare_namespace(socket_path: str) -> None:
    if threading.active_count() != 1:
        raise RuntimeError("damond exec must enter its namespace before starting threads")
    mounts.unshare_mounts()
    mounts.make_private_slave()
    _ensure_debugfs()
    _ensure_directory(SYSFS_DAMON)
    _ensure_directory(DEBUGFS_DAMON)
    _swap_damo_cache(socket_path)


def _place(staging: str) -> None:
    """Bind the mounted tree's two DAMON directories over the kernel's (runs in a thread:
    the binds look paths up in the FUSE mount this process serves)."""
    mounts.bind(staging + SYSFS_DAMON, SYSFS_DAMON)
    mounts.bind(staging + DEBUGFS_ROOT, DEBUGFS_DAMON)
    mounts.umount(staging, detach=True)
    os.rmdir(staging)


async def _run_command(command: list[str]) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        process = await trio.lowlevel.open_process(command)
        async with trio.open_nursery() as nursery:
            async def forward() -> None:
                async for signum in signals:
                    process.send_signal(signum)

            nursery.start_soon(forward)
            code = await process.wait()
            nursery.cancel_scope.cancel()
    return 128 - code if code < 0 else code


async def _exec(backend: SocketBackend, command: list[str]) -> int:
    await backend.connect()
    staging = tempfile.mkdtemp(prefix="damond-exec-")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_fuse, backend, staging, "/")
        await trio.to_thread.run_sync(_place, staging)
        code = await _run_command(command)
        nursery.cancel_scope.cancel()
    await backend.aclose()
    return code


def run_exec(command: list[str], *, socket_path: str | None = None) -> int:
    """``damond exec``: CMD's exit status, or 2 if the namespace or the mount could not be
    made (or CMD could not be started: 127)."""
    if not command:
        print("damond exec: no command (damond exec [--socket PATH] -- CMD [ARGS...])",
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("damond exec: needs root (it makes a private mount namespace)", file=sys.stderr)
        return 2
    socket_path = client_socket_path(socket_path)
    backend = SocketBackend(socket_path)
    try:
        _prepare_namespace(socket_path)
        return trio.run(_exec, backend, command)
    except BaseException as e:
        cause = startup_error(e)
        if cause is None:
            raise
        if isinstance(cause, FileNotFoundError | PermissionError) and cause.filename:
            print(f"damond exec: {command[0]}: {cause.strerror}", file=sys.stderr)
            return 127
        why = getattr(cause, "why", None) or str(cause)
        print(f"damond exec: {why}", file=sys.stderr)
    return 2
