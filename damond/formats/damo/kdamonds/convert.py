"""How damo turns a number it parsed from a kdamonds file into the value it writes to sysfs.

The loader applies these conversions to every field, and the dumper applies them to each text it
considers printing, to keep only texts that load back to the same kernel value: the two must
agree exactly, so both take them from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from damond.formats.damo.units import DamoTextError, Number

#: Marks a value the document does not give, or one that did not parse (a missing field, an
#: interval that could not be read). Distinct from None, which a document can hold.
UNSET = object()

_DIGITS = re.compile(r"[0-9]+")


def percent_d(value: Number) -> int:
    """What Python's ``'%d' % value`` (damo's way to write a sysfs file) makes of a number."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DamoTextError(f"not a finite number: {value!r}")
    return int(value)


def percent_to_samples(percent: Number, sample: Any, aggr: Any) -> Number:
    """``DamonNrAccesses.add_unset_unit``: ``int(percent * (aggr / sample) / 100)``."""
    if sample is UNSET or aggr is UNSET:
        raise DamoTextError("needs valid intervals to convert a percentage")
    if sample == 0:
        raise DamoTextError("a percentage needs a non-zero sample_us")
    value = percent * (aggr / sample) / 100
    return percent_d(value)


def usec_to_aggrs(usec: Number, aggr: Any) -> Number:
    """``DamonAge.add_unset_unit``: ``int(usec / aggr_us)``."""
    if aggr is UNSET:
        raise DamoTextError("needs valid intervals to convert a time")
    if aggr == 0:
        raise DamoTextError("a time needs a non-zero aggr_us")
    return percent_d(usec / aggr)


def is_digits(value: Any) -> bool:
    """Whether ``value`` is a bare digit string: how ``damo --raw`` prints a number."""
    return isinstance(value, str) and _DIGITS.fullmatch(value.strip()) is not None


def raw_ns(parser: Callable[[Any], Any], raw: bool) -> Callable[[Any], Any]:
    """``parser``, reading bare digit strings as nanoseconds if ``raw``: ``damo --raw`` prints
    the age range, quota times and the watermarks interval in nanoseconds (see the package doc).
    """
    if not raw:
        return parser
    return lambda v: parser(f"{v.strip()} ns" if is_digits(v) else v)
