"""The one error type that crosses layer boundaries.

The kernel answers a bad write with a negative errno; damond's interfaces must answer with the
same errno name so that scripts written against the kernel keep working. Carrying the name (not
the number) keeps messages readable and independent of the host's errno table.
"""

from __future__ import annotations

import errno as _errno


class DamonError(Exception):
    """A refusal the kernel would also make: an errno name plus one human sentence."""

    def __init__(self, errno_name: str, why: str, what: str | None = None) -> None:
        if not hasattr(_errno, errno_name):
            raise ValueError(f"unknown errno name {errno_name!r}")
        super().__init__(f"{errno_name}: {why}")
        self.errno_name = errno_name
        self.why = why
        self.what = what

    @property
    def errno(self) -> int:
        return getattr(_errno, self.errno_name)

    def with_what(self, what: str) -> DamonError:
        """Return a copy naming the file or command the error is about."""
        return DamonError(self.errno_name, self.why, what)

    def __reduce__(self):  # keep pickling (thread/process hops) lossless
        return (DamonError, (self.errno_name, self.why, self.what))

