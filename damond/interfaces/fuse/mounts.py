"""The mount-table system calls the FUSE mount needs, through libc (Python 3.11 has none).

- :func:`clear_stale` removes a dead damond mount left by a killed ``damond mount`` (its
  directory answers ENOTCONN and would block the next mount), and only a damond one.
- :func:`unshare_mounts`, :func:`make_private_slave`, :func:`bind` and :func:`mount_fs` build
  ``damond exec``'s private mount namespace: nothing done there is seen by the host.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
from dataclasses import dataclass

#: the FUSE subtype damond mounts with: ``/proc/mounts`` shows ``fuse.damond``
FS_SUBTYPE = "damond"
FS_TYPE = "fuse." + FS_SUBTYPE

# <linux/mount.h>, <sched.h>
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2
CLONE_NEWNS = 0x00020000

# the process's own libc: ctypes.util.find_library would run ldconfig (a child process)
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount_fs(source: str, target: str, fstype: str | None, flags: int = 0,
             data: str | None = None) -> None:
    """``mount(2)``."""
    _check(_libc.mount(source.encode(), target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {target}")


def bind(source: str, target: str) -> None:
    mount_fs(source, target, None, MS_BIND)


def umount(target: str, detach: bool = False) -> None:
    """``umount2(2)``; ``detach`` is ``umount -l``."""
    _check(_libc.umount2(target.encode(), MNT_DETACH if detach else 0), f"umount {target}")


def unshare_mounts() -> None:
    """Enter a new mount namespace (``unshare -m``); needs CAP_SYS_ADMIN."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")


def make_private_slave() -> None:
    """Make every mount a slave of the host's (``mount --make-rslave /``): the host's later
    mounts still appear here, nothing mounted here reaches the host."""
    mount_fs("none", "/", None, MS_REC | MS_SLAVE)


@dataclass(frozen=True)
class MountEntry:
    mount_point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[MountEntry]:
    """This namespace's mounts, from ``/proc/self/mountinfo``."""
    entries = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            entries.append(MountEntry(_unescape(fields[4]), rfields[0], _unescape(rfields[1])))
    return entries


def is_mounted(path: str) -> bool:
    """Whether a damond FUSE file system is mounted at ``path`` (an absolute path without
    symbolic links: resolving it here would stat the mount, which must not happen from the
    process that serves it once its loop has stopped: it would wait for itself)."""
    return any(m.mount_point == path and m.fstype == FS_TYPE for m in mounts())


def _answers(path: str) -> bool:
    try:
        os.stat(path)
    except OSError as e:
        return e.errno not in (errno.ENOTCONN, errno.ECONNABORTED)
    return True


def clear_stale(path: str) -> bool:
    """Detach a dead damond mount at ``path`` (its server was killed); True if one was.

    A live mount (its server still answers) and anything that is not damond's are left
    alone. Root detaches it directly; other users through ``fusermount3 -u -z``."""
    path = os.path.realpath(path)
    if not is_mounted(path) or _answers(path):
        return False
    if os.geteuid() == 0:
        umount(path, detach=True)
    else:
        tool = shutil.which("fusermount3") or "fusermount3"
        subprocess.run([tool, "-u", "-z", path], check=True, capture_output=True)
    return True
