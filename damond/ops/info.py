"""What an operation set says about itself."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OpsInfo:
    """Self-description of an operation set, returned by its ``damon_ops_info`` hook.

    ``applies`` lists the actions the set really applies; other valid actions are accepted,
    tried and counted, but apply nothing (the kernel's behaviour for e.g. ``lru_prio`` on
    vaddr). ``refuses`` lists actions a context using this set may not have at all (EINVAL
    at ``on``/``commit``).
    """

    name: str
    summary: str
    applies: frozenset[str] = frozenset()
    refuses: frozenset[str] = frozenset()
    #: True when ``apply_scheme`` and ``update`` make system calls that may take long (damond
    #: then runs those two in a worker thread so that they never stall the control socket or
    #: other kdamonds; the per-sample callbacks always run inline)
    blocking: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
