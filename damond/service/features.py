"""What this machine lets damond do, as the ``features`` command shows it.

Two facts come from below the control layer: which access check the virtual-address operation
sets (vaddr, fvaddr) would choose here, and which kernel facilities work for this process (the
platform probe). The daemon's wiring hands :func:`probe_features` to the ``Daemon`` so that the
control commands show these facts without importing the platform or an operation set's
internals. Probing makes system calls (cached after the first run): call it off the event loop.
"""

from __future__ import annotations

from damond.errors import DamonError
from damond.ops import access_check
from damond.platform.probe import probe


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


def probe_features() -> list[str]:
    """The ``features`` lines that describe this machine (after the interface and operation
    set lines, which the control layer knows itself)."""
    return access_check_lines() + facility_lines()
