"""``/proc/PID/maps``: the virtual memory areas of a process.

vaddr monitoring builds its initial regions from these (DAMON's "three regions" around the two
biggest unmapped gaps) and refreshes them every ``update_us``, so parsing must be cheap: the file
is read in one go and each line split once.

Reading another process's maps needs PTRACE_MODE_READ (same uid and not undumpable, or
CAP_SYS_PTRACE); without it the kernel refuses the open with EACCES (reported here as EPERM).
A zombie's maps read as empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from damond.platform import os_error


@dataclass(frozen=True, slots=True)
class Vma:
    """One line of ``/proc/PID/maps``: the half-open address range ``[start, end)``.

    ``perms`` is the four-letter field (``rw-p``: read, write, exec, private/shared), ``dev`` the
    ``major:minor`` string, ``path`` the file or pseudo name (``[heap]``, ``[stack]``) or ``""``
    for anonymous memory. Paths containing a newline are escaped by the kernel as ``\\012``.
    """

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"


def _pid_dir(pid: int | str) -> str:
    return f"/proc/{pid}"


def read_maps(pid: int | str = "self") -> list[Vma]:
    """Return the VMAs of ``pid`` (``"self"`` for this process) in address order.

    Raises DamonError ESRCH when the process does not exist, EPERM without ptrace-read access.
    """
    path = f"{_pid_dir(pid)}/maps"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise os_error(exc, path, gone=True) from None
    return parse_maps(data)


def parse_maps(data: bytes) -> list[Vma]:
    """Parse the bytes of a maps file (see :func:`read_maps`)."""
    out = []
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5:
            continue
        start, _, end = fields[0].partition("-")
        out.append(
            Vma(
                int(start, 16),
                int(end, 16),
                fields[1],
                int(fields[2], 16),
                fields[3],
                int(fields[4]),
                fields[5] if len(fields) > 5 else "",
            )
        )
    return out
