"""The kinds of file the DAMON sysfs tree is made of, each with the kernel's store semantics.

Every store of ``mm/damon/sysfs*.c`` (Linux 6.18) is one of a few shapes: a number parsed by a
``kstrto*`` function (most return its errno, a few replace it by ``-EINVAL``), a keyword matched
with ``sysfs_streq`` against a table, a ``kstrtobool`` flag shown as ``Y``/``N``, a string kept
as written (``strscpy``), or an ``nr_*`` file that removes every child directory and creates N
fresh ones. Building the tree from these few helpers keeps each directory module a list of
names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from damond.errors import DamonError
from damond.interfaces.kparse import kstrscpy, kstrtobool, kstrtoint, kstrtoul, sysfs_streq
from damond.interfaces.vfs import Dir, File, Node

#: The kernel creates N directories for any N its allocator can hold and fails with ENOMEM
#: beyond; damond refuses earlier, before a single write could exhaust the daemon's memory.
MAX_NR_DIRS = 1 << 16

Parse = Callable[[str], int]


def number(get: Callable[[], int], set_: Callable[[int], None], parse: Parse = kstrtoul, *,
           errno: str | None = None, check: Callable[[int], None] | None = None) -> File:
    """A number file (``%lu``/``%u``/``%d`` shown, ``parse`` on store). ``errno`` replaces
    the parser's errno (the quota files and ``pid_target`` answer EINVAL for ERANGE too);
    ``check`` may refuse a parsed value (``addr_unit`` refuses 0)."""

    def write(data: str) -> None:
        try:
            value = parse(data)
        except DamonError as e:
            if errno is None:
                raise
            raise DamonError(errno, e.why) from None
        if check is not None:
            check(value)
        set_(value)

    return File(lambda: f"{get()}\n", write)


def attr(obj: Any, name: str, parse: Parse = kstrtoul, **kw: Any) -> File:
    """:func:`number` over ``obj.name``."""
    return number(lambda: getattr(obj, name), lambda v: setattr(obj, name, v), parse, **kw)


def keyword(obj: Any, name: str, choices: Callable[[], Sequence[str]], what: str,
            allowed: Callable[[str], str | None] | None = None) -> File:
    """A keyword file: the first of ``choices`` equal to the input (``sysfs_streq``), else
    EINVAL. ``allowed(word)`` may refuse a known keyword with a reason (the filter
    directories that take only core or only operation-set filter types)."""

    def write(data: str) -> None:
        for c in choices():
            if sysfs_streq(data, c):
                why = allowed(c) if allowed is not None else None
                if why:
                    raise DamonError("EINVAL", why)
                setattr(obj, name, c)
                return
        raise DamonError("EINVAL", f"{data.rstrip(chr(10))!r} is not one of "
                         f"{', '.join(choices())} ({what})")

    return File(lambda: f"{getattr(obj, name)}\n", write)


def flag(obj: Any, name: str) -> File:
    """A ``kstrtobool`` file shown as ``Y`` or ``N`` (``matching``, ``allow``)."""

    def write(data: str) -> None:
        setattr(obj, name, kstrtobool(data))

    return File(lambda: "Y\n" if getattr(obj, name) else "N\n", write)


def text(obj: Any, name: str) -> File:
    """A string file (``memcg_path``, a goal's ``path``): keeps what was written up to a NUL
    (``strscpy``) and shows it followed by a newline (``"%s\n"``).

    One deviation: the kernel keeps the newline ``echo`` wrote and compares the path with
    ``sysfs_streq`` (which ignores it) when it resolves the cgroup, so ``cat`` shows an empty
    line after the path; damond drops that one trailing newline when storing, so the spec
    (and a ``dump``) holds the path itself and ``cat`` shows it once."""

    def write(data: str) -> None:
        value = kstrscpy(data)
        setattr(obj, name, value[:-1] if value.endswith("\n") else value)

    return File(lambda: f"{getattr(obj, name)}\n", write)


def shown(get: Callable[[], int]) -> File:
    """A read-only number (mode 0400)."""
    return File(lambda: f"{get()}\n")


def nr_file(items: list, make: Callable[[], object], *, max_nr: int | None = None,
            busy: Callable[[], str | None] | None = None,
            after: Callable[[int], None] | None = None) -> File:
    """An ``nr_*`` file: ``kstrtoint``, negative is EINVAL, then every child is removed and N
    fresh ones are created (writing the same N again resets them)."""

    def write(data: str) -> None:
        nr = kstrtoint(data)
        if nr < 0:
            raise DamonError("EINVAL", f"{nr} is negative")
        if max_nr is not None and nr > max_nr:
            raise DamonError("EINVAL", f"at most {max_nr} supported")
        if nr > MAX_NR_DIRS:
            raise DamonError("ENOMEM", f"cannot create {nr} directories (damond's limit is "
                             f"{MAX_NR_DIRS})")
        if busy is not None and (why := busy()):
            raise DamonError("EBUSY", why)
        items[:] = [make() for _ in range(nr)]
        if after is not None:
            after(nr)

    return File(lambda: f"{len(items)}\n", write)


def indexed(nr_name: str | None, nr: File | None, count: Callable[[], int],
            child: Callable[[int], Node], extra: Callable[[], dict[str, Node]] | None = None
            ) -> Callable[[], dict[str, Node]]:
    """The entries of a directory of numbered children: its ``nr_*`` file (if any), any
    ``extra`` files, and ``0`` .. ``count() - 1``."""

    def entries() -> dict[str, Node]:
        out: dict[str, Node] = {}
        if nr_name is not None and nr is not None:
            out[nr_name] = nr
        if extra is not None:
            out.update(extra())
        for i in range(count()):
            out[str(i)] = child(i)
        return out

    def lookup(name: str) -> Node | None:  # one entry, for path resolution (vfs.Dir.child)
        if name.isascii() and name.isdigit() and (name == "0" or name[0] != "0"):
            return child(int(name)) if int(name) < count() else None
        if nr_name is not None and nr is not None and name == nr_name:
            return nr
        return extra().get(name) if extra is not None else None

    entries.lookup = lookup  # type: ignore[attr-defined]
    entries.size = count  # type: ignore[attr-defined]
    return entries


def numbered_dir(nr_name: str, items: list, make: Callable[[], object],
                 child: Callable[[Any], Node], **nr_kw: Any) -> Dir:
    """A directory of ``nr_name`` and one child per item of ``items`` (``child(item)``)."""
    nr = nr_file(items, make, **nr_kw)
    return Dir(indexed(nr_name, nr, lambda: len(items), lambda i: child(items[i])),
               aliases(nr_name))


def aliases(nr_name: str | None, extra: dict[str, str] | None = None):
    """The kernel documentation spells some files loosely (``kdamonds/nr``, ``targets/0/pid``,
    ``access_patterns/``): damond accepts those spellings for the real files, with a note."""

    def alias(name: str):
        if name == "nr" and nr_name:
            return nr_name, f"'nr' is accepted as '{nr_name}' (the kernel's file name)"
        if extra and name in extra:
            return extra[name], f"'{name}' is accepted as '{extra[name]}' (the kernel's name)"
        return None

    return alias
