"""May this peer watch that process? The kernel's ptrace read-access rule, applied to a peer.

A member of ``--admin-group`` may write, but monitoring a process reads its address layout and
its access pattern, and DAMOS acts on its memory: damond (root) must not do that for a peer on
a process the peer could not read itself. The rule is the kernel's ``__ptrace_may_access()``
with ``PTRACE_MODE_READ_REALCREDS`` (what ``/proc/PID/pagemap`` and ``process_madvise`` demand;
``kernel/ptrace.c`` and ``security/commoncap.c``, unchanged since v4.10), evaluated from
``/proc`` for the peer's credentials as ``SO_PEERCRED`` captured them at connect(2):

1. the peer's uid equals the target's real, effective and saved uid, and its gid the target's
   real, effective and saved gid; or the peer has ``CAP_SYS_PTRACE``;
2. the target is dumpable (a set-uid program or one that changed credentials is not): the
   kernel then makes the files in ``/proc/PID`` owned by root instead of by the target's
   effective uid, so ``/proc/PID/status``'s owner must be the peer's uid; ``CAP_SYS_PTRACE``
   overrides this too;
3. the target is not more privileged: its permitted capabilities are a subset of the peer's
   (commoncap's ``cap_ptrace_access_check``), unless the peer has ``CAP_SYS_PTRACE``.

Root (and the daemon's own user, whose own access the kernel checks anyway) are not asked.
"""

from __future__ import annotations

import os

CAP_SYS_PTRACE = 19


def _status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict of its lines; empty if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}
    except OSError:
        return {}


def _ids(status: dict[str, str], key: str) -> list[int]:
    return [int(x) for x in status.get(key, "").split()]


def _caps(status: dict[str, str], key: str) -> int:
    try:
        return int(status.get(key, "0"), 16)
    except ValueError:
        return 0


def read_access_refusal(target_pid: int, peer_pid: int, peer_uid: int,
                        peer_gid: int) -> str | None:
    """Why a peer (``peer_pid``, ``peer_uid``, ``peer_gid`` from ``SO_PEERCRED``) may not
    ptrace-read ``target_pid``, or None if it may. A process that does not exist is no
    refusal here: the interface's own checks answer for it, as for root."""
    target = _status(target_pid)
    if not target:
        return None
    peer = _status(peer_pid)  # gone (or another process by now): no capabilities assumed
    if peer and _ids(peer, "Uid")[1:2] != [peer_uid]:  # SO_PEERCRED holds the effective uid
        peer = {}
    if peer:  # REALCREDS: the kernel compares the caller's real ids
        peer_uid, peer_gid = _ids(peer, "Uid")[0], _ids(peer, "Gid")[0]
    peer_eff, peer_prm = _caps(peer, "CapEff"), _caps(peer, "CapPrm")
    if peer_eff >> CAP_SYS_PTRACE & 1:
        return None
    uids, gids = _ids(target, "Uid")[:3], _ids(target, "Gid")[:3]
    if len(uids) < 3 or len(gids) < 3:
        return f"process {target_pid}'s credentials cannot be read"
    if any(u != peer_uid for u in uids) or any(g != peer_gid for g in gids):
        return (f"process {target_pid} belongs to uid {uids[1]} gid {gids[1]}; this client "
                f"(uid {peer_uid} gid {peer_gid}) may not read it (ptrace read access, as "
                "for /proc/PID/pagemap)")
    try:  # the files below /proc/PID, not the directory: its owner is not kept up to date
        owner = os.stat(f"/proc/{target_pid}/status").st_uid
    except OSError:
        return None
    if owner != peer_uid:
        return (f"process {target_pid} is not dumpable (set-uid or changed credentials); "
                "only root may monitor it")
    target_prm = _caps(target, "CapPrm")
    if target_prm & ~peer_prm:
        return (f"process {target_pid} has capabilities this client lacks "
                f"(CapPrm {target_prm:#x}); only root may monitor it")
    return None
