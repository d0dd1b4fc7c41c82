"""NUMA nodes and ``move_pages(2)``: what DAMOS ``migrate_hot``/``migrate_cold`` need from user
space.

``memory_nodes()`` is the kernel's ``N_MEMORY`` node mask (``/sys/devices/system/node/
has_memory``): the kernel's ``damon_migrate_pages()`` (6.11+) migrates nothing to a node outside
it (a negative ``target_nid``, i.e. ``NUMA_NO_NODE``, included), so neither does damond.
``move_pages()`` moves pages of another process to given nodes and reports, per page, the node
it is on afterwards or a negative errno (``-ENOENT``: not present; ``-EFAULT``: not mapped).
"""

from __future__ import annotations

import ctypes
import os
import platform

import numpy as np

from damond.errors import DamonError

NODE_DIR = "/sys/devices/system/node"
MPOL_MF_MOVE = 1 << 1
#: pages per move_pages(2) call: bounds the arrays handed to the kernel
CHUNK_PAGES = 16_384
_SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239, "riscv64": 239, "ppc64le": 301,
                   "s390x": 310}
# the process's own libc: ctypes.util.find_library would run ldconfig (a child process)
_libc = ctypes.CDLL(None, use_errno=True)


def parse_node_list(text: str) -> list[int]:
    """A kernel node list ("0", "0-2,4") as numbers."""
    nodes: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        nodes.extend(range(int(lo), int(hi or lo) + 1))
    return nodes


def memory_nodes(node_dir: str = NODE_DIR) -> list[int]:
    """Nodes with memory (``N_MEMORY``); [0] on a kernel without NUMA sysfs files (one node)."""
    try:
        with open(f"{node_dir}/has_memory") as f:
            return parse_node_list(f.read())
    except FileNotFoundError:
        return [0]


def move_pages(pid: int, addrs: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Move the pages at ``addrs`` of process ``pid`` to ``nodes`` (one per page), in chunks of
    ``CHUNK_PAGES``; returns the per-page status (node, or a negative errno)."""
    nr = _SYS_MOVE_PAGES.get(platform.machine())
    if nr is None:
        raise DamonError("ENOSYS", f"move_pages(2) number unknown on {platform.machine()}")
    addrs = np.ascontiguousarray(addrs, dtype=np.uint64)
    nodes = np.ascontiguousarray(nodes, dtype=np.int32)
    status = np.full(len(addrs), -1, dtype=np.int32)
    for lo in range(0, len(addrs), CHUNK_PAGES):
        hi = min(lo + CHUNK_PAGES, len(addrs))
        a, n, s = addrs[lo:hi], nodes[lo:hi], status[lo:hi]
        ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(pid), ctypes.c_ulong(hi - lo),
                            a.ctypes.data_as(ctypes.c_void_p), n.ctypes.data_as(ctypes.c_void_p),
                            s.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(MPOL_MF_MOVE))
        if ret < 0:
            err = ctypes.get_errno()
            raise DamonError(_errno_name(err), f"move_pages(pid {pid}): {os.strerror(err)}")
    return status


def _errno_name(err: int) -> str:
    import errno

    return errno.errorcode.get(err, "EIO")
