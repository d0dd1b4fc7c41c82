"""The system values behind DAMOS quota goal metrics (Linux 6.18), read from user space.

What ``damos_set_quota_goal_current_value()`` computes inside the kernel, from the files that
show the same counters:

- ``some_mem_psi_us``: the "some" total of ``/proc/pressure/memory`` (microseconds, the
  kernel's ``psi_system.total[PSI_AVGS][PSI_MEM * 2] / 1000``); 0 without PSI, as the kernel
  answers when PSI is disabled or not built.
- ``node_mem_used_bp`` / ``node_mem_free_bp``: ``si_meminfo_node()`` is
  ``/sys/devices/system/node/nodeN/meminfo`` MemTotal and MemFree.
- ``node_memcg_used_bp`` / ``node_memcg_free_bp``: the cgroup's LRU pages on the node
  (active/inactive anon/file of cgroup v2 ``memory.numa_stat``) over the node's MemTotal; a
  cgroup that does not exist counts as using nothing (kernel: 0 used, 10,000 free).
- ``active_mem_bp`` / ``inactive_mem_bp``: ``Active`` and ``Inactive`` of ``/proc/meminfo``
  over their sum ("should align with /proc/meminfo output", says the kernel).

Every value is in basis points (per 10,000) but PSI's. A node that does not exist raises
ENOENT with the path (the kernel would read a non-existent node's zeroed counters; damond
says so instead).
"""

from __future__ import annotations

import os
import re

from damond.errors import DamonError
from damond.platform import os_error
from damond.platform.meminfo import read_meminfo

PSI_MEMORY_PATH = "/proc/pressure/memory"
NODE_DIR = "/sys/devices/system/node"
CGROUP2_ROOT = "/sys/fs/cgroup"
_NODE_LINE = re.compile(rb"^Node \d+ ([^:\s]+):\s+(\d+) kB$", re.M)


def some_mem_psi_total_us(path: str = PSI_MEMORY_PATH) -> int:
    """The cumulative "some" memory stall time in microseconds; 0 when PSI is unavailable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return 0
    for line in data.splitlines():
        if line.startswith(b"some "):
            for part in line.split():
                if part.startswith(b"total="):
                    return int(part[6:])
    return 0


def node_meminfo(nid: int) -> dict[str, int]:
    """``/sys/devices/system/node/nodeN/meminfo`` in bytes."""
    path = f"{NODE_DIR}/node{nid}/meminfo"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise os_error(exc, path) from None
    return {k.decode(): int(v) * 1024 for k, v in _NODE_LINE.findall(data)}


def node_mem_bp(nid: int, *, used: bool) -> int:
    """``damos_get_node_mem_bp()``: used (total - free) or free memory of a node per 10,000."""
    info = node_meminfo(nid)
    total = info.get("MemTotal", 0)
    if total <= 0:
        raise DamonError("EINVAL", f"node {nid}: MemTotal is {total}")
    free = info.get("MemFree", 0)
    return (total - free if used else free) * 10_000 // total


def memcg_node_lru_bytes(cgroup_path: str, nid: int, root: str = CGROUP2_ROOT) -> int | None:
    """Bytes of a cgroup's LRU pages (active/inactive anon and file) on node ``nid``, from
    cgroup v2 ``memory.numa_stat``; None when the cgroup does not exist."""
    path = os.path.join(root, cgroup_path.lstrip("/"), "memory.numa_stat")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(exc, path) from None
    key = f"N{nid}=".encode()
    total = 0
    for line in data.splitlines():
        name, _, rest = line.partition(b" ")
        if name not in (b"active_anon", b"inactive_anon", b"active_file", b"inactive_file"):
            continue
        for part in rest.split():
            if part.startswith(key):
                total += int(part[len(key):])
    return total


def node_memcg_bp(cgroup_path: str, nid: int, *, used: bool) -> int:
    """``damos_get_node_memcg_used_bp()``: the cgroup's used, or the node's total minus it,
    per 10,000 of the node's memory."""
    lru = memcg_node_lru_bytes(cgroup_path, nid)
    if lru is None:
        return 0 if used else 10_000
    total = node_meminfo(nid).get("MemTotal", 0)
    if total <= 0:
        raise DamonError("EINVAL", f"node {nid}: MemTotal is {total}")
    return (lru if used else total - lru) * 10_000 // total


def in_active_mem_bp(*, active: bool) -> int:
    """``damos_get_in_active_mem_bp()``: LRU-active (or inactive) memory per 10,000 of all
    LRU memory."""
    info = read_meminfo()
    act, inact = info.get("Active", 0), info.get("Inactive", 0)
    if not act + inact:
        return 0
    return (act if active else inact) * 10_000 // (act + inact)


def goal_metric_value(metric: str, *, nid: int = 0, path: str = "") -> int | None:
    """The current value of a quota goal metric (all but ``user_input``, which only the user
    sets: None)."""
    if metric == "some_mem_psi_us":
        return some_mem_psi_total_us()
    if metric in ("node_mem_used_bp", "node_mem_free_bp"):
        return node_mem_bp(nid, used=metric == "node_mem_used_bp")
    if metric in ("node_memcg_used_bp", "node_memcg_free_bp"):
        return node_memcg_bp(path, nid, used=metric == "node_memcg_used_bp")
    if metric in ("active_mem_bp", "inactive_mem_bp"):
        return in_active_mem_bp(active=metric == "active_mem_bp")
    return None
