"""What the core needs from an operation set, as the core sees it.

The kernel's core calls ``ctx->ops`` callbacks; damond's core calls an object of this shape.
``damond.ops.registry`` builds one per context from the pluggy hooks of the selected operation
set, so the core never imports pluggy and tests can hand in any object that fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from damond.core.context import Context, Scheme, Target
    from damond.core.regions import Regions


@dataclass(frozen=True, slots=True)
class SchemeAction:
    """One region a scheme's action is to be applied to, in the order the kernel applies them."""

    target_index: int
    start: int
    end: int
    scheme_index: int
    action: str


class OpsHandle(Protocol):
    name: str

    def init(self, ctx: Context) -> None: ...

    def update(self, ctx: Context) -> None: ...

    def prepare_access_checks(self, ctx: Context) -> None: ...

    def check_accesses(self, ctx: Context) -> list[np.ndarray]:
        """One boolean array per target: was each region's sampled page accessed."""
        ...

    def get_scheme_score(self, ctx: Context, target: Target, regions: Regions,
                         scheme: Scheme) -> np.ndarray | None:
        """Scores (0..99) of the given regions for the scheme, or None without a scorer."""
        ...

    def apply_scheme(self, ctx: Context, actions: list[SchemeAction]) -> list[int]:
        """Apply the actions in order; return the bytes really applied for each."""
        ...

    def target_valid(self, ctx: Context) -> list[bool] | None:
        """Validity of each target, or None when the set has no notion of it (never stops)."""
        ...

    def cleanup(self, ctx: Context) -> None: ...
