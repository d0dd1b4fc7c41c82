"""damo's number texts: sizes, times, counts and ratios as damo writes and reads them.

damo prints and parses every number of its files and options through ``_damo_fmt_str.py``:
``"1,000"``, ``"128.000 MiB"``, ``"1 s 200 ms"``, ``"50 %"``, ``"max"``/``"min"``. damond reads
and writes the same texts (kdamonds files, record options, report columns), so this module
reproduces those functions one for one (``text_to_nr``, ``try_common_input``, ``text_to_bytes``,
``text_to_ns``, ``text_to_us``, ``text_to_ms``, ``text_to_ratio``, ``text_to_percent``,
``text_to_permil``, ``format_nr``, ``format_sz``, ``format_time_ns``, ...).

The parsers keep damo's int/float results on purpose: a kdamonds file means to damond what it
means to damo only if damo's float arithmetic (and its truncations) is reproduced bit for bit.
The printers are as lossy as damo's (``%.3f MiB``, ``%.3f s``); callers that need an exact text
check that it parses back (``damond.formats.damo.kdamonds.dump``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from damond.core.spec import ULONG_MAX

Number = int | float

# ---------------------------------------------------------------------------------------------
# damo's number texts, parsed.  Results keep damo's int/float types on purpose.


class DamoTextError(ValueError):
    """A value damo could not parse either."""


_BYTE_UNITS = {"B": 1}
for _i, _p in enumerate("KMGTPE", start=1):
    for _suffix in ("", "B", "iB"):
        _BYTE_UNITS[_p + _suffix] = 1 << (10 * _i)

NS_PER = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
NS_PER.update(m=60 * NS_PER["s"], h=3600 * NS_PER["s"], d=86400 * NS_PER["s"])


def text_to_nr(txt: Any) -> Number:
    """damo's ``text_to_nr``: an int or float as is, ``max``, or digits with thousands commas."""
    if type(txt) in (int, float):
        return txt
    if not isinstance(txt, str):
        raise DamoTextError(f"not a number: {txt!r}")
    if txt == "max":
        return ULONG_MAX
    plain = txt.replace(",", "")
    try:
        return int(plain)
    except ValueError:
        pass
    try:
        return float(plain)
    except ValueError:
        raise DamoTextError(f"not a number: {txt!r}") from None


def _common(txt: Any, min_val: Number = 0, max_val: Number = ULONG_MAX) -> Number | None:
    """damo's ``try_common_input``: ``min``, ``max`` or a unitless number; None otherwise."""
    if txt == "min":
        return min_val
    if txt == "max":
        return max_val
    try:
        return text_to_nr(txt)
    except DamoTextError:
        return None


def _need_str(txt: Any) -> str:
    if not isinstance(txt, str) or not txt:
        raise DamoTextError(f"not a number: {txt!r}")
    return txt


def text_to_bytes(txt: Any) -> Number:
    """damo's ``text_to_bytes``: a size with an optional B/K/KB/KiB suffix, capped at ULONG_MAX."""
    number = _common(txt)
    if number is not None:
        return number
    txt = _need_str(txt)
    # damo tries a three-letter unit (KiB) on texts longer than 3, then two letters (KB) on
    # texts longer than 2, then one (K, B), and else takes the whole text as bytes.
    for width, min_len in ((3, 4), (2, 3), (1, 1)):
        if len(txt) >= min_len and txt[-width:] in _BYTE_UNITS:
            number, unit = text_to_nr(txt[:-width]), txt[-width:]
            break
    else:
        number, unit = text_to_nr(txt), "B"
    try:
        return min(ULONG_MAX, int(number * _BYTE_UNITS[unit]))
    except (OverflowError, ValueError):
        raise DamoTextError(f"not a size: {txt!r}") from None


def text_to_ns(txt: Any) -> Number:
    """damo's ``text_to_ns``: ``"1 s 200 ms"`` style times; a bare number is nanoseconds."""
    number = _common(txt)
    if number is not None:
        return number
    txt = _need_str(txt)
    fields = txt.split()
    if len(fields) > 1:
        total: Number = 0
        for i in range(0, len(fields), 2):
            total += text_to_ns("".join(fields[i : i + 2]))
        return total
    if txt[-2:] not in NS_PER and txt[-1] not in NS_PER:
        try:
            return float(txt)
        except ValueError:
            raise DamoTextError(f"not a time: {txt!r}") from None
    unit = txt[-2:]
    if unit in ("ns", "us", "ms"):
        return text_to_nr(txt[:-2]) * NS_PER[unit]
    return text_to_nr(txt[:-1]) * NS_PER[txt[-1]]


def text_to_us(txt: Any) -> Number:
    """damo's ``text_to_us``: a bare number is microseconds, a time with units is converted."""
    number = _common(txt)
    if number is not None:
        return number
    return text_to_ns(txt) / 1000


def text_to_ms(txt: Any) -> Number:
    """damo's ``text_to_ms``: a bare number is milliseconds, a time with units is converted."""
    number = _common(txt)
    if number is not None:
        return number
    return text_to_us(txt) / 1000


def _text_to_ratio(txt: Any) -> Number:
    number = _common(txt, 0.0)
    if number is not None:
        return number
    txt = _need_str(txt)
    if txt[-1] == "%":
        return text_to_nr(txt[:-1]) / 100.0
    return text_to_nr(txt)


def _text_to_scaled_ratio(scale: int) -> Callable[[Any], Number]:
    def parse(txt: Any) -> Number:
        number = _common(txt, 0)
        if number is not None:
            return number
        return _text_to_ratio(txt) * scale

    return parse


#: damo's ``text_to_percent`` / ``text_to_permil`` / ``text_to_bp``: ``"50 %"`` or a bare number
#: already in the target unit.
text_to_percent = _text_to_scaled_ratio(100)
text_to_permil = _text_to_scaled_ratio(1000)
text_to_bp = _text_to_scaled_ratio(10000)


def text_to_bool(txt: Any) -> bool:
    """damo's ``text_to_bool``: a bool, or y/yes/true/n/no/false in any case."""
    if isinstance(txt, bool):
        return txt
    if isinstance(txt, str):
        if txt.lower() in ("y", "yes", "true"):
            return True
        if txt.lower() in ("n", "no", "false"):
            return False
    raise DamoTextError(f"not a boolean: {txt!r}")


def text_to_nr_unit(txt: Any) -> tuple[Number, str]:
    """``"<number> <unit>"`` as damo splits it (``DamosAccessPattern.from_kvpairs``)."""
    fields = _need_str(txt).split()
    if len(fields) != 2:
        raise DamoTextError(f"not '<number> <unit>': {txt!r}")
    return text_to_nr(fields[0]), fields[1]


# ---------------------------------------------------------------------------------------------
# damo's number texts, printed.


def _d(value: Number) -> str:
    """Python's ``'%d' % value``, damo's way to print a number: floats truncate toward zero."""
    return str(int(value))


def format_nr(nr: Number, raw: bool) -> str:
    """damo's ``format_nr``: digits, with thousands commas unless raw."""
    return _d(nr) if raw else f"{int(nr):,}"


_SIZE_UNITS = ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB"))


def format_sz(sz: Number, raw: bool) -> str:
    """damo's ``format_sz``: ``'max'``, ``'%.3f MiB'`` style, or ``'N B'`` (lossy)."""
    if raw:
        return _d(sz)
    value = float(sz)
    if value == float(ULONG_MAX):
        return "max"
    for shift, unit in _SIZE_UNITS:
        if value > 1 << shift:
            return f"{value / (1 << shift):.3f} {unit}"
    return f"{_d(value)} B"


_TIME_UNITS = (("d", NS_PER["d"]), ("h", NS_PER["h"]), ("m", NS_PER["m"]), ("s", NS_PER["s"]),
               ("ms", NS_PER["ms"]), ("us", NS_PER["us"]), ("ns", 1))


def format_time_ns_exact(time_ns: Number, raw: bool) -> str:
    """damo's ``format_time_ns_exact``: ``"1 m 30 s 5 ms"``, or bare nanoseconds if raw."""
    if raw:
        return _d(time_ns)
    sign = "-" if time_ns < 0 else ""
    time_ns = abs(time_ns)
    if time_ns >= ULONG_MAX:
        return sign + "max"
    for name, unit_ns in _TIME_UNITS:
        if time_ns < unit_ns:
            continue
        if unit_ns == 1:
            return f"{sign}{_d(time_ns)} ns" if time_ns % 1 == 0 else f"{sign}{time_ns:.3f} ns"
        count = int(time_ns / unit_ns)
        text = f"{format_nr(count, False)} {name}"
        rest = time_ns - count * unit_ns
        if rest == 0:
            return sign + text
        return f"{sign}{text} {format_time_ns_exact(rest, False)}"
    return "0 ns"


def format_time_ns(time_ns: Number, raw: bool) -> str:
    """damo's ``format_time_ns``: the short, possibly rounded form (``"1.235 s"``)."""
    if raw:
        return _d(time_ns)
    t = float(time_ns)
    sign = "-" if t < 0 else ""
    t = abs(t)
    if t >= ULONG_MAX:
        return sign + "max"
    hour, minute, sec = NS_PER["h"], NS_PER["m"], NS_PER["s"]
    if t >= hour:
        hours = int(t / hour)
        rest = t - hours * hour
        return f"{sign}{hours} h" + ("" if rest == 0 else " " + format_time_ns(rest, False))
    if t >= minute:
        if t % minute == 0:
            return f"{sign}{_d(t / minute)} m"
        if t % sec == 0:
            return f"{sign}{_d(t / minute)} m {_d((t % minute) / sec)} s"
        return f"{sign}{_d(t / minute)} m {(t % minute) / sec:.3f} s"
    for name in ("s", "ms", "us"):
        if t >= NS_PER[name]:
            if t % NS_PER[name] == 0:
                return f"{sign}{_d(t / NS_PER[name])} {name}"
            return f"{sign}{t / NS_PER[name]:.3f} {name}"
    return f"{sign}{_d(t)} ns"


def format_ratio(ratio: float, raw: bool) -> str:
    """damo's ``format_ratio``: ``"12.5 %"``; ``'%f'`` of the ratio if raw."""
    if raw:
        return f"{ratio:f}"
    over = format_nr(int(ratio * 100), False)
    under = f"{ratio * 100 % 1:.7f}".rstrip("0")[2:]
    return f"{over} %" if under == "" else f"{over}.{under} %"


def _format_scaled(scale: int) -> Callable[[Number, bool], str]:
    def fmt(value: Number, raw: bool) -> str:
        return f"{value:f}" if raw else format_ratio(float(value) / scale, False)

    return fmt


format_permil = _format_scaled(1000)
format_bp = _format_scaled(10000)
