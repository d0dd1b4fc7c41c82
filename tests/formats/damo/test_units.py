"""damo's number texts: damond's parsers and printers against damo's own ``_damo_fmt_str``."""

from __future__ import annotations

import json
import sys

from damond.formats.damo import units
from tests.formats.damo.damo_tool import needs_damo, run_python_or_damo

# damo's number parsers on a list of JSON inputs: [[type name, value] or ["error"], ...]
DAMO_PARSE = r"""
import json, os, sys
import damo
sys.path.insert(0, os.path.dirname(damo.__file__))
import _damo_fmt_str as f
out = []
for name, value in json.load(sys.stdin):
    try:
        r = getattr(f, name)(value)
        out.append([type(r).__name__, r])
    except Exception:
        out.append(['error'])
print(json.dumps(out))
"""


@needs_damo
def test_number_parsers_match_damos() -> None:
    inputs = ["0", "1,000", "max", "min", "1.5", "-3", "1e3", " 7 ", "12 B", "4K", "4 KiB",
              "1.5 MiB", "3GB", "12.345 MiB", "99 EiB", "5ms", "5 ms", "1 s 200 ms", "2m", "2 m",
              "1 h 1 m 1 s", "1.5 d", "30 s", "7", "0.7 %", "29 %", "50.05 %", "100%", "1,000 %",
              "abc", "", "5 parsecs", "1 2 3", 7, 7.5, 18446744073709551615, True, None]
    names = ["text_to_nr", "text_to_bytes", "text_to_ns", "text_to_us", "text_to_ms",
             "text_to_percent", "text_to_permil", "text_to_bp"]
    cases = [(n, v) for n in names for v in inputs]
    res = run_python_or_damo([sys.executable, "-c", DAMO_PARSE], input=json.dumps(cases),
                             check=True)
    for (name, value), damo_out in zip(cases, json.loads(res.stdout), strict=True):
        try:
            mine = getattr(units, name)(value)
            got = [type(mine).__name__, mine]
        except units.DamoTextError:
            got = ["error"]
        assert got == damo_out, (name, value)


# damo's number printers on a list of JSON inputs: [text or ["error"], ...]
DAMO_PRINT = r"""
import json, os, sys
import damo
sys.path.insert(0, os.path.dirname(damo.__file__))
import _damo_fmt_str as f
out = []
for name, value, raw in json.load(sys.stdin):
    try:
        out.append(getattr(f, name)(value, raw))
    except Exception:
        out.append(['error'])
print(json.dumps(out))
"""


@needs_damo
def test_number_printers_match_damos() -> None:
    values = {
        "format_nr": [0, 7, 1000, 1234567, 18446744073709551615],
        "format_sz": [0, 1, 1023, 1024, 1025, 4096, 1 << 20, 3 << 29, 123456789,
                      1 << 40, 18446744073709551615],
        "format_time_ns": [0, 1, 999, 1000, 1500, 5_000_000, 1_200_000_000, 60_000_000_000,
                           61_000_000_000, 61_500_000_000, 3_600_000_000_000,
                           3_661_000_000_000, 86_400_000_000_000],
        "format_time_ns_exact": [0, 1, 1000, 1_000_001, 1_200_000_000, 61_000_000_005,
                                 3_661_000_000_000, 90_000_000_000_000],
        "format_ratio": [0.0, 0.125, 0.5, 1.0, 0.29],
        "format_permil": [0, 1, 290, 500, 1000],
        "format_bp": [0, 1, 2900, 10000],
    }
    cases = [(name, v, raw) for name, vs in values.items() for v in vs for raw in (False, True)]
    res = run_python_or_damo([sys.executable, "-c", DAMO_PRINT], input=json.dumps(cases),
                             check=True)
    for (name, value, raw), damo_out in zip(cases, json.loads(res.stdout), strict=True):
        assert getattr(units, name)(value, raw) == damo_out, (name, value, raw)
