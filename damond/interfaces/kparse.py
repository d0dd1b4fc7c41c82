"""The kernel's own parsing primitives, as DAMON's sysfs and debugfs stores use them.

Scripts written against the kernel depend on its exact parsing quirks: ``010`` is octal 8 in a
sysfs file, ``1 2\\n3`` is one debugfs write of three numbers, ``o`` switches ``monitor_on`` on.
This module re-implements those primitives from their documented behaviour (``lib/kstrtox.c``,
``lib/vsprintf.c:vsscanf``, ``lib/string.c:sysfs_streq`` and the ``mm/damon/dbgfs.c`` loops of
v5.18; unchanged through 6.13 for everything used here) so that damond accepts and refuses the
same bytes with the same errno.

Conventions shared by every function:

* Input is a ``str`` holding what the user wrote (normally the ``echo`` payload with its newline).
  The kernel sees a NUL-terminated C string, so a NUL character ends the input here too.
* Only ASCII counts as digits or white space: the kernel's ``ctype`` tables are byte based and no
  UTF-8 byte of a non-ASCII character is a digit. White space is the kernel's ``isspace`` set
  restricted to ASCII: space, ``\\t \\n \\v \\f \\r``.
* Errors are :class:`~damond.errors.DamonError` carrying the errno the kernel store returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from damond.errors import DamonError

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1

_SPACE = frozenset(" \t\n\v\f\r")
_DIGITS = "0123456789abcdef"


def _c_string(s: str) -> str:
    """What a C function sees: the text up to the first NUL."""
    nul = s.find("\0")
    return s if nul < 0 else s[:nul]


def _show(s: str) -> str:
    """A user's input for a one-line error message: quoted, escaped and bounded."""
    return repr(s if len(s) <= 40 else s[:40] + "...")


def _digit_value(ch: str) -> int:
    """Value of an ASCII hex digit (either case), 16 for anything else."""
    i = _DIGITS.find(ch.lower()) if len(ch) == 1 and ch.isascii() else -1
    return 16 if i < 0 else i


# --------------------------------------------------------------------------------------------
# kstrto*: lib/kstrtox.c (the same since v2.6.39; the 2021 `_parse_integer_limit` rework for
# sscanf field widths changes nothing for these callers)
# --------------------------------------------------------------------------------------------


def _fixup_radix(s: str, base: int) -> tuple[str, int]:
    """``_parse_integer_fixup_radix``: pick the base for base 0 and drop a ``0x`` prefix.

    Base 0 means hex after ``0x``/``0X`` followed by a hex digit, octal after a leading ``0``,
    decimal otherwise. A ``0x`` prefix is skipped whenever the (possibly chosen) base is 16.
    (A 2024 patch proposal makes ``0x`` select hex even without a digit after it; ``kstrto*``
    results are identical either way: ``0x`` alone, or followed by a non-digit, is ``-EINVAL``.)
    """
    if base == 0:
        if s[:1] == "0":
            base = 16 if s[1:2].lower() == "x" and _digit_value(s[2:3] or "g") < 16 else 8
        else:
            base = 10
    if base == 16 and s[:1] == "0" and s[1:2].lower() == "x":
        s = s[2:]
    return s, base


def _parse_digits(s: str, base: int) -> tuple[int, int, bool]:
    """``_parse_integer``: (value modulo 2**64, digits consumed, overflowed past 2**64-1)."""
    value = 0
    overflow = False
    n = 0
    for ch in s:
        d = _digit_value(ch)
        if d >= base:
            break
        value = value * base + d
        if value > U64_MAX:
            overflow = True
            value &= U64_MAX
        n += 1
    return value, n, overflow


def _kstrtoull_nosign(s: str, base: int) -> int:
    """``_kstrtoull``: digits, then at most one ``\\n``, then the end of the string.

    Overflow is checked first, so ``99999999999999999999x`` is ``-ERANGE``, not ``-EINVAL``.
    """
    rest, base = _fixup_radix(s, base)
    value, n, overflow = _parse_digits(rest, base)
    if overflow:
        raise DamonError("ERANGE", f"{_show(s)} does not fit in 64 bits")
    if n == 0:
        raise DamonError("EINVAL", f"{_show(s)} is not a number")
    tail = rest[n:]
    if tail not in ("", "\n"):
        raise DamonError("EINVAL", f"{_show(s)} is not a number")
    return value


def _check_base(base: int) -> None:
    if base != 0 and not 2 <= base <= 16:
        raise ValueError(f"unsupported base {base}")


def kstrtoull(s: str, base: int = 0) -> int:
    """``kstrtoull``: unsigned 64-bit; an optional leading ``+``; no ``-`` (``-0`` included)."""
    _check_base(base)
    s = _c_string(s)
    if s[:1] == "-":
        raise DamonError("EINVAL", f"{_show(s)}: a negative number is not accepted here")
    return _kstrtoull_nosign(s[1:] if s[:1] == "+" else s, base)


def kstrtoll(s: str, base: int = 0) -> int:
    """``kstrtoll``: signed 64-bit; ``-`` or ``+`` once (``-+1`` and ``+-1`` are ``-EINVAL``)."""
    _check_base(base)
    s = _c_string(s)
    if s[:1] == "-":
        magnitude = _kstrtoull_nosign(s[1:], base)
        if magnitude > -S64_MIN:
            raise DamonError("ERANGE", f"{_show(s)} is below the 64-bit signed range")
        return -magnitude
    value = kstrtoull(s, base)
    if value > S64_MAX:
        raise DamonError("ERANGE", f"{_show(s)} is above the 64-bit signed range")
    return value


def kstrtoul(s: str, base: int = 0) -> int:
    """``kstrtoul`` on a 64-bit kernel: the same as :func:`kstrtoull`."""
    return kstrtoull(s, base)


def kstrtol(s: str, base: int = 0) -> int:
    """``kstrtol`` on a 64-bit kernel: the same as :func:`kstrtoll`."""
    return kstrtoll(s, base)


def kstrtouint(s: str, base: int = 0) -> int:
    """``kstrtouint``: :func:`kstrtoull`, then ``-ERANGE`` above 2**32-1."""
    value = kstrtoull(s, base)
    if value > U32_MAX:
        raise DamonError("ERANGE", f"{_show(_c_string(s))} does not fit in 32 bits")
    return value


def kstrtoint(s: str, base: int = 0) -> int:
    """``kstrtoint``: :func:`kstrtoll`, then ``-ERANGE`` outside the 32-bit signed range."""
    value = kstrtoll(s, base)
    if not S32_MIN <= value <= S32_MAX:
        raise DamonError("ERANGE", f"{_show(_c_string(s))} does not fit in a 32-bit int")
    return value


# --------------------------------------------------------------------------------------------
# sysfs_streq: lib/string.c
# --------------------------------------------------------------------------------------------


def sysfs_streq(a: str, b: str) -> bool:
    """``sysfs_streq``: equal, or equal once a single trailing ``\\n`` is dropped from one side.

    So ``"on\\n"`` equals ``"on"``, but ``"on\\n\\n"`` and ``" on"`` do not. Both sides are C
    strings (a NUL ends them).
    """
    a, b = _c_string(a), _c_string(b)
    return a == b or a + "\n" == b or a == b + "\n"


# --------------------------------------------------------------------------------------------
# sscanf: lib/vsprintf.c:vsscanf (the subset DAMON's debugfs uses)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanResult:
    """What a kernel ``sscanf`` call produced.

    ``values`` are the converted fields in order (``len(values)`` is sscanf's return value);
    ``consumed`` is what the last ``%n`` reached stored (characters consumed so far), or None
    when the scan stopped before reaching a ``%n`` (the kernel leaves the variable untouched).
    """

    values: tuple[int | str, ...]
    consumed: int | None

    @property
    def matched(self) -> int:
        return len(self.values)


_CONVERSION = re.compile(r"%(l{0,2})([dusn%])")


def _skip_spaces(s: str, i: int) -> int:
    while i < len(s) and s[i] in _SPACE:
        i += 1
    return i


def _scan_decimal(s: str, i: int) -> tuple[int, int]:
    """``simple_strntoull(base 10)``: every digit, wrapping modulo 2**64 (no range check)."""
    value = 0
    j = i
    while j < len(s) and "0" <= s[j] <= "9":
        value = (value * 10 + ord(s[j]) - 48) & U64_MAX
        j += 1
    return value, j


def _to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _scan_integer(s: str, i: int, conv: str, qualifier: str) -> tuple[int, int] | None:
    """One ``%d``/``%u``/``%ld``/``%lu`` field at ``s[i:]``; None when it does not match.

    Leading white space is skipped; ``%d`` accepts one ``-`` (never ``+``: the kernel checks
    that the first character, or the one after ``-``, is a digit); ``%u`` accepts no sign.
    Overflow wraps modulo 2**64 and the result is then stored into the C type, so ``%u``
    keeps the low 32 bits and ``%d`` the low 32 bits as two's complement (``4294967297`` -> 1).
    """
    i = _skip_spaces(s, i)
    negative = conv == "d" and s[i : i + 1] == "-"
    start = i + 1 if negative else i
    if start >= len(s) or not "0" <= s[start] <= "9":
        return None
    value, end = _scan_decimal(s, start)
    if negative:
        value = -value & U64_MAX
    bits = 64 if qualifier else 32
    if conv == "d":
        return _to_signed(value, bits), end
    return value & ((1 << bits) - 1), end


def _scan_word(s: str, i: int) -> tuple[str, int]:
    """``%s``: skip white space, then copy up to the next white space (possibly nothing)."""
    i = _skip_spaces(s, i)
    j = i
    while j < len(s) and s[j] not in _SPACE:
        j += 1
    return s[i:j], j


def ksscanf(text: str, fmt: str) -> ScanResult:
    """The kernel's ``sscanf(text, fmt, ...)`` for the conversions DAMON's debugfs uses.

    Supported format items: white space (matches any amount of input white space, including
    none and including newlines), literal characters (must match exactly), ``%d %u %ld %lu
    %lld %llu`` (base 10), ``%s``, ``%n`` and ``%%``. Anything else raises ``ValueError`` (a
    programming error, not user input). Like the kernel, scanning stops at the first item that
    does not match, and a conversion other than ``%n`` fails at the end of the input.

    Kernel quirk kept: ``%s`` on input that is only white space matches an empty word (the
    end-of-input check happens before ``%s`` skips the white space), so ``sscanf("\\n", "%s")``
    returns 1.
    """
    return _scan(_c_string(text), fmt, 0)


def _scan(s: str, fmt: str, start: int) -> ScanResult:
    """:func:`ksscanf` on ``s[start:]`` without copying it; ``consumed`` counts from ``start``."""
    values: list[int | str] = []
    consumed: int | None = None
    i = start
    f = 0
    while f < len(fmt):
        if fmt[f] in _SPACE:
            f = _skip_spaces(fmt, f)
            i = _skip_spaces(s, i)
            continue
        if fmt[f] != "%":
            if i >= len(s) or s[i] != fmt[f]:
                break
            i += 1
            f += 1
            continue
        m = _CONVERSION.match(fmt, f)
        if m is None:
            raise ValueError(f"unsupported sscanf format at {fmt[f:]!r}")
        f = m.end()
        qualifier, conv = m.groups()
        if conv == "n":
            consumed = i - start
            continue
        step = _convert(s, i, qualifier, conv)
        if step is None:
            break
        value, i = step
        if value is not None:
            values.append(value)
    return ScanResult(tuple(values), consumed)


def _convert(s: str, i: int, qualifier: str, conv: str) -> tuple[int | str | None, int] | None:
    """One conversion other than ``%n`` at ``s[i:]``: (value or None for ``%%``, new position).

    None means the conversion failed and sscanf stops. Every one of them fails at the end of
    the input (the kernel's ``if (!*str) break;`` before the switch).
    """
    if i >= len(s):
        return None
    if conv == "%":
        return (None, i + 1) if s[i] == "%" else None
    if conv == "s":
        return _scan_word(s, i)
    return _scan_integer(s, i, conv, qualifier)


def sscanf_word(text: str) -> str | None:
    """``sscanf(kbuf, "%s", name)`` as ``monitor_on``, ``mk_contexts`` and ``rm_contexts`` use it.

    Returns the first white-space-delimited word, ``""`` for input that is only white space
    (kernel quirk, see :func:`ksscanf`), and None for empty input (sscanf returned 0: the
    stores answer ``-EINVAL``).

    Known deviation: the kernel's Latin-1 ``ctype`` also treats byte 0xA0 as white space, so
    it would cut a word inside a UTF-8 character containing that byte; damond keeps the word
    whole.
    """
    result = ksscanf(text, "%s")
    return str(result.values[0]) if result.matched else None


# --------------------------------------------------------------------------------------------
# mm/damon/dbgfs.c input loops (v5.18 formats)
# --------------------------------------------------------------------------------------------

_ATTRS_FMT = "%lu %lu %lu %lu %lu"
_INIT_REGION_FMT = "%d %lu %lu%n"
_SCHEME_FMT = "%lu %lu %u %u %u %u %u %lu %lu %lu %u %u %u %u %lu %lu %lu %lu%n"
SCHEME_FIELDS = 18
MAX_DBGFS_INTS = 32
MAX_DBGFS_SCHEMES = 256


def parse_attrs(text: str) -> tuple[int, int, int, int, int]:
    """``attrs`` write: ``sscanf("%lu %lu %lu %lu %lu")`` must convert exactly five numbers.

    Returns (sample_us, aggr_us, update_us, min_nr_regions, max_nr_regions). Anything after the
    fifth number is ignored, as in the kernel (``"1 2 3 4 5 junk"`` is accepted). Fewer than
    five numbers is ``-EINVAL``. Range validation (``min < 3``, ``min > max``, ...) belongs to
    the caller, as it does to ``damon_set_attrs`` in the kernel.
    """
    result = ksscanf(text, _ATTRS_FMT)
    if result.matched != 5:
        raise DamonError("EINVAL", "attrs needs five numbers: sample aggr update min_nr max_nr")
    a, b, c, d, e = (int(v) for v in result.values)
    return a, b, c, d, e


def str_to_ints(text: str, max_nr: int = MAX_DBGFS_INTS) -> list[int]:
    """dbgfs ``str_to_ints``: ``%d%n`` repeatedly until a non-integer, at most ``max_nr`` values.

    What follows the last integer is ignored (``"42 abc 43"`` gives ``[42]``); values wrap to
    a C ``int`` (see :func:`ksscanf`). Used by ``target_ids`` (after the ``paddr`` check).
    """
    s = _c_string(text)
    out: list[int] = []
    pos = 0
    while len(out) < max_nr and pos < len(s):
        result = _scan(s, "%d%n", pos)
        if result.matched != 1 or result.consumed is None:
            break
        out.append(int(result.values[0]))
        pos += result.consumed
    return out


def _scan_records(text: str, fmt: str, nr_fields: int, max_nr: int | None) -> list[tuple[int, ...]]:
    """The dbgfs ``while (pos < len) { sscanf(&str[pos], fmt); if (ret != n) break; ... }`` loop."""
    return _scan_records_rest(text, fmt, nr_fields, max_nr)[0]


def _scan_records_rest(text: str, fmt: str, nr_fields: int,
                       max_nr: int | None) -> tuple[list[tuple[int, ...]], str]:
    """:func:`_scan_records`, plus the text the loop left unread."""
    s = _c_string(text)
    out: list[tuple[int, ...]] = []
    pos = 0
    while pos < len(s) and (max_nr is None or len(out) < max_nr):
        result = _scan(s, fmt, pos)
        if result.matched != nr_fields or result.consumed is None:
            break
        out.append(tuple(int(v) for v in result.values))
        pos += result.consumed
    return out, s[pos:]


def parse_init_regions(text: str) -> list[tuple[int, int, int]]:
    """``init_regions`` write (v5.18+): ``%d %lu %lu%n`` triples until the first that fails.

    Returns (target_idx, start, end) triples; separators may be any white space, newlines
    included, so one write of a multi-line value gives all its lines. Text after the last
    complete triple is ignored. Checks (``start >= end``, unknown target, overlap) belong to
    the caller, which runs them in this order, like ``add_init_region``.
    """
    return [(a, b, c) for a, b, c in _scan_records(text, _INIT_REGION_FMT, 3, None)]


def parse_schemes(text: str, max_nr: int = MAX_DBGFS_SCHEMES) -> list[tuple[int, ...]]:
    """``schemes`` write: entries of 18 fields (``dbgfs str_to_schemes``).

    Format ``%lu %lu %u %u %u %u %u %lu %lu %lu %u %u %u %u %lu %lu %lu %lu%n``: min_sz max_sz
    min_nr_accesses max_nr_accesses min_age max_age action quota_ms quota_sz quota_reset_ms
    weight_sz weight_nr_accesses weight_age wmark_metric wmark_interval_us wmark_high
    wmark_mid wmark_low. The ``%u`` fields keep their low 32 bits, as the C ``unsigned int``
    they are stored in does.

    Parsing stops silently at the first entry that does not give 18 fields; earlier complete
    entries are kept and the rest is ignored (``""`` gives no schemes). At most ``max_nr``
    (256) entries are read; later text is ignored, as in the kernel. Because white space in the
    format matches newlines, ``"1 2\\n3 4 ... 1"`` written in one ``write()`` is one scheme: the
    selftest ``debugfs_schemes.sh`` sees a failure for it only because the shell issues two
    writes, and the second write at a non-zero offset is refused by the file layer, not here.
    The kernel validates each entry (action, ranges, watermarks) right after scanning it, so a
    caller must validate the returned entries in order.
    """
    return _scan_records(text, _SCHEME_FMT, SCHEME_FIELDS, max_nr)


def scan_schemes(text: str, max_nr: int = MAX_DBGFS_SCHEMES) -> tuple[list[tuple[int, ...]], str]:
    """:func:`parse_schemes`, plus the text it ignored (what followed the last complete entry,
    or the 256th). The kernel says nothing about that text; damond tells the user about it."""
    return _scan_records_rest(text, _SCHEME_FMT, SCHEME_FIELDS, max_nr)


def count_numbers(text: str) -> int:
    """How many white-space-separated decimal numbers ``text`` starts with (for messages)."""
    n = 0
    for word in _c_string(text).split():
        if not (word.lstrip("-").isascii() and word.lstrip("-").isdigit()):
            break
        n += 1
    return n


def dbgfs_keyword_match(buf: str, keyword: str, count: int | None = None) -> bool:
    """``!strncmp(kbuf, keyword, count)``, ``count`` being the write length (default ``len(buf)``).

    Both sides are C strings compared for at most ``count`` characters. With ``count ==
    len(buf)`` this means: ``buf`` is a prefix of ``keyword`` (``"pad"`` and ``"paddr\\n"``
    match ``"paddr\\n"``; ``"o"`` matches ``"on"``; ``""`` matches anything), unless ``buf``
    holds a NUL, in which case the part before it must equal ``keyword`` exactly.

    ``monitor_on`` first trims its buffer with ``sscanf("%s")`` but still compares ``count``
    (the original length) characters: pass the trimmed word and the original length, e.g.
    ``dbgfs_keyword_match("o", "on", count=2)`` is False (``echo o`` writes ``"o\\n"``), while
    ``dbgfs_keyword_match("o", "on", count=1)`` is True (``echo -n o``).
    """
    n = len(buf) if count is None else count
    a = buf[:n]
    b = keyword[:n]
    a, b = _c_string(a), _c_string(b)
    return a == b


# --------------------------------------------------------------------------------------------
# kstrtobool: lib/kstrtox.c (v5.18 through 6.18; the DAMON sysfs ``matching``/``allow`` files)
# --------------------------------------------------------------------------------------------

_TRUE_FIRST = frozenset("yYtT1")
_FALSE_FIRST = frozenset("nNfF0")


def kstrtobool(s: str) -> bool:
    """``kstrtobool``: only the first character counts (``y Y t T 1`` true, ``n N f F 0``
    false), except ``o``/``O``, which needs a second one: ``n``/``N`` (``on``) true,
    ``f``/``F`` (``off``) false. So ``yes``, ``Yoyo`` and ``1x`` are true; anything else,
    the empty string included, is ``-EINVAL``."""
    s = _c_string(s)
    first = s[:1]
    if first and first in _TRUE_FIRST:
        return True
    if first and first in _FALSE_FIRST:
        return False
    if first in ("o", "O"):
        second = s[1:2]
        if second in ("n", "N"):
            return True
        if second in ("f", "F"):
            return False
    raise DamonError("EINVAL", f"{_show(s)} is not a boolean (Y/N, 1/0, on/off, true/false)")


def kstrscpy(s: str) -> str:
    """What ``strscpy(dst, buf, count + 1)`` keeps of a write: everything up to the first NUL,
    the trailing newline included (the DAMON ``memcg_path`` and goal ``path`` stores keep it;
    their readers compare with ``sysfs_streq``, which ignores one trailing newline)."""
    return _c_string(s)
