"""What this machine lets damond do, as the ``features`` command shows it.

Three facts come from below the control layer: whether each kernel operation set can actually
be used here (registered is not enough: paddr needs idle page tracking, and ``on`` is refused
without it), which access check the virtual-address operation sets (vaddr, fvaddr) would choose
here, and which kernel facilities work for this process (the platform probe). The daemon's
wiring hands :func:`probe_features` to the ``Daemon`` so that the
control commands show these facts without importing the platform or an operation set's
internals. Probing makes system calls (cached after the first run): call it off the event loop.
"""

from __future__ import annotations

from damond.errors import DamonError
from damond.ops import access_check
from damond.platform import page_idle
from damond.platform.probe import probe


def operations_lines() -> list[str]:
    """``operations NAME: no: WHY`` for each kernel operation set that this machine cannot
    run, with the check ``on`` makes (paddr's ``damon_ops_validate``: the page_idle bitmap;
    vaddr/fvaddr: an access check). The control layer puts the verdict on the operation
    set's own line; sets not named here are usable."""
    lines = []
    try:
        access_check.choose()
    except DamonError as e:
        lines += [f"operations {name}: no: not usable here, 'on' is refused ({e.why})"
                  for name in ("vaddr", "fvaddr")]
    ok, reason = page_idle.available()
    if not ok:
        lines.append("operations paddr: no: not usable here, 'on' is refused (it needs idle "
                     f"page tracking: {reason})")
    return lines


def access_check_lines() -> list[str]:
    """Which access check vaddr/fvaddr will use here, and why better ones are unavailable."""
    try:
        name, passed_over = access_check.choose()
    except DamonError as e:
        return [f"access_check: none ({e})"]
    lines = [f"access_check: {name} (perturbs: {access_check.PERTURBS[name]})"]
    lines.extend(f"access_check {why}" for why in passed_over)
    return lines


def facility_lines() -> list[str]:
    """One line per kernel facility: whether damond can use it here, and why (not)."""
    return [f"facility {f.name}: {'yes' if f.available else 'no'} ({f.reason})"
            for f in probe().values()]


def offload_lines(manager) -> list[str]:
    """The kernel's DAMON and whether each operation set would run offloaded, and why not
    (``manager``: the daemon's ``damond.service.offload.OffloadManager``)."""
    try:
        return manager.feature_lines()
    except OSError as e:
        return [f"kernel_damon: unknown (its files could not be read: {e})"]


def probe_features() -> list[str]:
    """The ``features`` lines that describe this machine (after the interface and operation
    set lines, which the control layer knows itself; ``operations`` lines are verdicts it
    puts on those)."""
    return operations_lines() + access_check_lines() + facility_lines()
