"""A throw-away zram swap device, so that ``pageout`` has somewhere to put pages.

Machines without a swap device cannot page anonymous memory out: ``MADV_PAGEOUT`` then succeeds
but nothing leaves RAM. zram (``CONFIG_ZRAM``) gives a compressed in-RAM block device that makes
swap available in seconds and leaves no trace. Setting one up needs root (sysfs writes,
``swapon(2)`` needs CAP_SYS_ADMIN) and the ``mkswap`` binary (util-linux).

Devices come from ``/sys/class/zram-control/hot_add`` (4.2+) when possible, so a device someone
else uses is never touched; otherwise an existing zram device whose ``disksize`` is 0 is borrowed.
On exit the swap is turned off (which pulls swapped pages back into RAM), the device is reset and,
when hot-added, removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from damond.errors import DamonError
from damond.platform import os_error

ZRAM_CONTROL = "/sys/class/zram-control"
SWAP_FLAG_PREFER = 0x8000
SWAP_FLAG_PRIO_MASK = 0x7FFF


@dataclass(frozen=True, slots=True)
class ZramSwap:
    """An active zram swap device."""

    index: int
    device: str
    size: int
    hot_added: bool


@contextlib.contextmanager
def zram_swap(
    size_bytes: int, *, algorithm: str | None = None, priority: int = 32767
) -> Iterator[ZramSwap]:
    """Bring up ``size_bytes`` of zram swap for the ``with`` body, then remove it.

    ``priority`` (0-32767) is the swap priority; the default makes the kernel use this device
    before any other. ``algorithm`` selects a compressor (one listed in ``comp_algorithm``);
    the kernel default is kept otherwise. Raises DamonError: EPERM when not root, ENOENT when
    zram or ``mkswap`` is missing, EBUSY when no zram device is free.
    """
    if os.geteuid() != 0:
        raise DamonError("EPERM", "setting up zram swap needs root (sysfs writes, swapon(2))")
    mkswap = _find_tool("mkswap")
    index, hot = _acquire_device()
    dev, made_node = f"/dev/zram{index}", False
    try:
        if algorithm is not None:
            _write(f"/sys/block/zram{index}/comp_algorithm", algorithm)
        _write(f"/sys/block/zram{index}/disksize", str(int(size_bytes)))
        made_node = _ensure_node(index, dev)
        _mkswap(mkswap, dev)
        _swapon(dev, priority)
    except BaseException:
        with contextlib.suppress(DamonError):
            _release(index, hot, dev, made_node, swapped_on=False)
        raise
    try:
        yield ZramSwap(index, dev, int(size_bytes), hot)
    except BaseException:
        with contextlib.suppress(DamonError):  # keep the body's exception, not the cleanup's
            _release(index, hot, dev, made_node, swapped_on=True)
        raise
    _release(index, hot, dev, made_node, swapped_on=True)


def _find_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise DamonError("ENOENT", f"{name} not found (install util-linux)")
    return path


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise os_error(exc, path) from None


def _acquire_device() -> tuple[int, bool]:
    """A zram device index and whether it was hot-added (and so must be hot-removed)."""
    hot_add = f"{ZRAM_CONTROL}/hot_add"
    if os.path.exists(hot_add):
        try:
            with open(hot_add) as f:
                return int(f.read()), True
        except OSError:
            pass  # e.g. ENOMEM: fall back to an idle existing device
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith("zram") and _unused(name):
            return int(name[4:]), False
    if not any(n.startswith("zram") for n in os.listdir("/sys/block")):
        raise DamonError("ENOENT", "no zram: kernel without CONFIG_ZRAM (or `modprobe zram`)")
    raise DamonError("EBUSY", "every zram device is in use and hot_add is unavailable")


def _unused(name: str) -> bool:
    try:
        with open(f"/sys/block/{name}/disksize") as f:
            return int(f.read()) == 0
    except (OSError, ValueError):
        return False


def _ensure_node(index: int, dev: str) -> bool:
    """Make ``/dev/zramN`` when no devtmpfs did; returns True if this call created it."""
    if os.path.exists(dev):
        return False
    with open(f"/sys/block/zram{index}/dev") as f:
        major, minor = (int(x) for x in f.read().split(":"))
    try:
        os.mknod(dev, stat.S_IFBLK | 0o600, os.makedev(major, minor))
    except OSError as exc:
        raise os_error(exc, dev) from None
    return True


def _mkswap(mkswap: str, dev: str) -> None:
    res = subprocess.run([mkswap, dev], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise DamonError("EIO", f"{mkswap} {dev} failed: {res.stderr.strip()}")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _swapon(dev: str, priority: int) -> None:
    flags = SWAP_FLAG_PREFER | (max(0, min(priority, SWAP_FLAG_PRIO_MASK)) & SWAP_FLAG_PRIO_MASK)
    if _libc().swapon(dev.encode(), flags) != 0:
        code = ctypes.get_errno()
        raise DamonError(errno.errorcode.get(code, "EIO"), f"swapon({dev}): {os.strerror(code)}")


def _release(index: int, hot: bool, dev: str, made_node: bool, *, swapped_on: bool) -> None:
    """Undo everything; raise the first failure only after trying every step."""
    problems: list[DamonError] = []
    if swapped_on and _libc().swapoff(dev.encode()) != 0:
        code = ctypes.get_errno()
        problems.append(DamonError(errno.errorcode.get(code, "EIO"),
                                   f"swapoff({dev}): {os.strerror(code)}"))
    for path, value in ((f"/sys/block/zram{index}/reset", "1"),
                        (f"{ZRAM_CONTROL}/hot_remove", str(index))):
        if path.endswith("hot_remove") and not hot:
            continue
        try:
            _write(path, value)
        except DamonError as exc:
            problems.append(exc)
    if made_node:
        with contextlib.suppress(OSError):
            os.unlink(dev)
    if problems:
        raise problems[0]
