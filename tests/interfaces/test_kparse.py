"""The kernel's parsing primitives: exact vectors and properties against simple references."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damond.errors import DamonError
from damond.interfaces import kparse
from damond.interfaces.kparse import (
    MAX_DBGFS_SCHEMES,
    dbgfs_keyword_match,
    ksscanf,
    kstrtoint,
    kstrtol,
    kstrtoll,
    kstrtouint,
    kstrtoul,
    kstrtoull,
    parse_attrs,
    parse_init_regions,
    parse_schemes,
    sscanf_word,
    str_to_ints,
    sysfs_streq,
)

U64 = 2**64
U32 = 2**32


def errno_of(fn, *args) -> str:
    with pytest.raises(DamonError) as info:
        fn(*args)
    assert "\n" not in info.value.why
    return info.value.errno_name


# --------------------------------------------------------------------------------------------
# kstrto*
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("00", 0),
        ("010", 8),
        ("0x10", 16),
        ("0X1f", 31),
        ("0xABCdef", 0xABCDEF),
        ("+5", 5),
        ("5\n", 5),
        ("+0x10\n", 16),
        ("0\n", 0),
        ("18446744073709551615", U64 - 1),
        ("0xffffffffffffffff", U64 - 1),
        ("01777777777777777777777", U64 - 1),
        ("5\0junk", 5),  # a C string ends at NUL
    ],
)
def test_kstrtoul_accepts(text: str, value: int) -> None:
    assert kstrtoul(text) == value
    assert kstrtoull(text) == value


@pytest.mark.parametrize(
    ("text", "errno"),
    [
        ("", "EINVAL"),
        ("\n", "EINVAL"),
        ("5\n\n", "EINVAL"),
        (" 5", "EINVAL"),
        ("5 ", "EINVAL"),
        ("5\r\n", "EINVAL"),
        ("-1", "EINVAL"),
        ("-0", "EINVAL"),
        ("+", "EINVAL"),
        ("++5", "EINVAL"),
        ("+-5", "EINVAL"),
        ("0x", "EINVAL"),
        ("0xg", "EINVAL"),
        ("08", "EINVAL"),
        ("1e3", "EINVAL"),
        ("5a", "EINVAL"),
        ("on", "EINVAL"),
        ("١٢", "EINVAL"),  # non-ASCII digits
        ("５", "EINVAL"),
        (str(U64), "ERANGE"),
        ("0x10000000000000000", "ERANGE"),
        (str(U64) + "garbage", "ERANGE"),  # overflow is reported before trailing garbage
        ("99999999999999999999999999\n\n", "ERANGE"),
    ],
)
def test_kstrtoul_refuses(text: str, errno: str) -> None:
    assert errno_of(kstrtoul, text) == errno


def test_explicit_bases() -> None:
    assert kstrtoul("0x10", 16) == 16
    assert kstrtoul("10", 16) == 16
    assert kstrtoul("010", 10) == 10
    assert errno_of(kstrtoul, "0x10", 10) == "EINVAL"
    assert errno_of(kstrtoul, "0x", 16) == "EINVAL"
    assert kstrtoul("777", 8) == 0o777
    with pytest.raises(ValueError):
        kstrtoul("1", 1)


@pytest.mark.parametrize(
    ("fn", "text", "value"),
    [
        (kstrtoll, "-0", 0),
        (kstrtoll, "-9223372036854775808", -(2**63)),
        (kstrtoll, "9223372036854775807", 2**63 - 1),
        (kstrtoll, "-0x10", -16),
        (kstrtoll, "-010\n", -8),
        (kstrtoll, "+7", 7),
        (kstrtol, "-5", -5),
        (kstrtoint, "-2147483648", -(2**31)),
        (kstrtoint, "2147483647", 2**31 - 1),
        (kstrtoint, "-0", 0),
        (kstrtouint, "4294967295", U32 - 1),
        (kstrtouint, "0xffffffff\n", U32 - 1),
    ],
)
def test_signed_and_narrow_accept(fn, text: str, value: int) -> None:
    assert fn(text) == value


@pytest.mark.parametrize(
    ("fn", "text", "errno"),
    [
        (kstrtoll, "9223372036854775808", "ERANGE"),
        (kstrtoll, "-9223372036854775809", "ERANGE"),
        (kstrtoll, "-18446744073709551616", "ERANGE"),
        (kstrtoll, "--5", "EINVAL"),
        (kstrtoll, "-+5", "EINVAL"),
        (kstrtoll, "-", "EINVAL"),
        (kstrtoll, "- 5", "EINVAL"),
        (kstrtoint, "2147483648", "ERANGE"),
        (kstrtoint, "-2147483649", "ERANGE"),
        (kstrtoint, "1.5", "EINVAL"),
        (kstrtouint, "4294967296", "ERANGE"),
        (kstrtouint, "-1", "EINVAL"),
    ],
)
def test_signed_and_narrow_refuse(fn, text: str, errno: str) -> None:
    assert errno_of(fn, text) == errno


def reference_kstrtoull(text: str) -> int | str:
    """An independent statement of kstrtoull(base 0): a value or an errno name."""
    s = text.split("\0")[0]
    if s.startswith("+"):
        s = s[1:]
    m = re.match(r"0[xX]([0-9a-fA-F]+)|0([0-7]*)|([1-9][0-9]*)", s)
    if not m:
        return "EINVAL"
    hexa, octal, decimal = m.groups()
    if hexa is not None:
        value = int(hexa, 16)
    elif octal is not None:
        value = int("0" + octal, 8)
    else:
        value = int(decimal)
    if value >= U64:
        return "ERANGE"
    return value if s[m.end() :] in ("", "\n") else "EINVAL"


def outcome(fn, text: str) -> int | str:
    try:
        return fn(text)
    except DamonError as e:
        return e.errno_name


NUMBERISH = st.text(alphabet=st.sampled_from(list("0123456789abcdefxX+-\n \0g")), max_size=30)


@settings(max_examples=1000)
@given(NUMBERISH)
def test_kstrtoull_matches_reference_on_numberish_text(text: str) -> None:
    assert outcome(kstrtoull, text) == reference_kstrtoull(text)


@given(
    st.integers(0, U64 - 1),
    st.sampled_from(["{:d}", "0x{:x}", "0X{:X}", "0{:o}"]),
    st.booleans(),
    st.booleans(),
)
def test_kstrtoul_reads_every_valid_value(value: int, form: str, plus: bool, nl: bool) -> None:
    text = ("+" if plus else "") + form.format(value) + ("\n" if nl else "")
    assert kstrtoul(text) == value


@given(st.integers(U64, 2**80), st.sampled_from(["{:d}", "0x{:x}", "0{:o}"]))
def test_kstrtoul_out_of_range(value: int, form: str) -> None:
    assert errno_of(kstrtoul, form.format(value)) == "ERANGE"


@given(st.integers(-(2**70), 2**70), st.booleans())
def test_signed_ranges(value: int, nl: bool) -> None:
    text = str(value) + ("\n" if nl else "")
    for fn, lo, hi in ((kstrtoll, -(2**63), 2**63 - 1), (kstrtoint, -(2**31), 2**31 - 1)):
        assert outcome(fn, text) == (value if lo <= value <= hi else "ERANGE")
    expected_u32 = "EINVAL" if value < 0 else value if value < U32 else "ERANGE"
    assert outcome(kstrtouint, text) == expected_u32


# --------------------------------------------------------------------------------------------
# sysfs_streq
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("on", "on", True),
        ("on\n", "on", True),
        ("on", "on\n", True),
        ("on\n", "on\n", True),
        ("on\n\n", "on", False),
        (" on", "on", False),
        ("on ", "on", False),
        ("o", "on", False),
        ("", "", True),
        ("\n", "", True),
        ("on\0junk", "on", True),
        ("On", "on", False),
    ],
)
def test_sysfs_streq(a: str, b: str, equal: bool) -> None:
    assert sysfs_streq(a, b) is equal


# --------------------------------------------------------------------------------------------
# sscanf
# --------------------------------------------------------------------------------------------


def test_ksscanf_basics() -> None:
    r = ksscanf("  12 \n\t-3 x", "%lu %d%n")
    assert r.values == (12, -3) and r.matched == 2 and r.consumed == 9
    assert ksscanf("", "%n").consumed == 0
    assert ksscanf("", "%d").matched == 0
    assert ksscanf("5", "%d%n").consumed == 1
    assert ksscanf("1,2", "%d,%d").values == (1, 2)
    assert ksscanf("1;2", "%d,%d").values == (1,)
    assert ksscanf("50%", "%d%%%n").consumed == 3
    assert ksscanf("12abc", "%d%n").consumed == 2
    assert ksscanf("010 0x10", "%d %d").values == (10, 0)  # always base 10
    with pytest.raises(ValueError):
        ksscanf("1", "%x")


@pytest.mark.parametrize(
    ("text", "fmt", "values"),
    [
        ("+5", "%d", ()),  # the kernel accepts '-' only
        ("+5", "%u", ()),
        ("-5", "%u", ()),
        ("-5", "%lu", ()),
        ("-", "%d", ()),
        ("--5", "%d", ()),
        ("- 5", "%d", ()),
        ("-0", "%d", (0,)),
        ("4294967297", "%d", (1,)),
        ("2147483648", "%d", (-(2**31),)),
        ("-2147483649", "%d", (2**31 - 1,)),
        ("4294967296", "%u", (0,)),
        ("18446744073709551616", "%lu", (0,)),  # wraps: no range check
        ("18446744073709551617", "%lu", (1,)),
        ("-1", "%ld", (-1,)),
        ("9223372036854775808", "%ld", (-(2**63),)),
        ("\u0661", "%d", ()),
    ],
)
def test_ksscanf_integer_conversions(text: str, fmt: str, values: tuple) -> None:
    assert ksscanf(text, fmt).values == values


@pytest.mark.parametrize(
    ("text", "word"),
    [("", None), ("\n", ""), ("   ", ""), ("on\n", "on"), (" foo bar\n", "foo"), ("a\0b", "a")],
)
def test_sscanf_word(text: str, word: str | None) -> None:
    assert sscanf_word(text) == word


# --------------------------------------------------------------------------------------------
# debugfs loops
# --------------------------------------------------------------------------------------------

SELFTEST_SCHEME = (1, 2, 3, 4, 5, 6, 4, 0, 0, 0, 1, 2, 3, 1, 100, 3, 2, 1)


def test_schemes_selftest_vectors() -> None:
    assert parse_schemes("1 2 3 4 5 6 4 0 0 0 1 2 3 1 100 3 2 1") == [SELFTEST_SCHEME]
    assert parse_schemes("1 2 3 4 5 6 4 0 0 0 1 2 3 1 100 3 2 1\n") == [SELFTEST_SCHEME]
    # One write of the "multi lines" vector is one scheme: sscanf's spaces match newlines.
    # (The selftest fails it because the shell makes two writes; the file layer refuses the
    # second one, not this scanner.)
    expected = (1, 2, 3, 4, 5, 6, 3, 0, 0, 0, 1, 2, 3, 1, 100, 3, 2, 1)
    assert parse_schemes("1 2\n3 4 5 6 3 0 0 0 1 2 3 1 100 3 2 1") == [expected]
    assert parse_schemes("1 2\n") == []
    assert parse_schemes("") == []
    assert parse_schemes("\n") == []
    # Invalid values are the validator's business: the scanner returns them in order.
    invalid = (2, 1, 2, 1, 10, 1, 3, 10, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3)
    assert parse_schemes("2 1 2 1 10 1 3 10 1 1 1 1 1 1 1 1 2 3") == [invalid]


def test_schemes_stop_silently_at_the_first_incomplete_entry() -> None:
    one = " ".join(map(str, SELFTEST_SCHEME))
    assert parse_schemes(f"{one}\n{one}\n1 2 x\n{one}\n") == [SELFTEST_SCHEME] * 2
    # Entries are not lines: a short line borrows fields from the next one.
    assert parse_schemes(f"1 2 3\n{one}\n") == [(1, 2, 3) + SELFTEST_SCHEME[:15]]
    assert parse_schemes(f"{one} junk {one}") == [SELFTEST_SCHEME]
    # "...2 1" + "1 2..." runs together: one entry ending in 11, then 17 fields (ignored).
    assert parse_schemes(f"{one}{one}") == [SELFTEST_SCHEME[:17] + (11,)]
    many = "\n".join([one] * (MAX_DBGFS_SCHEMES + 3))
    assert len(parse_schemes(many)) == MAX_DBGFS_SCHEMES


def test_schemes_u32_fields_truncate() -> None:
    fields = [U64 + 7, 2**40, 2**32 + 1, 5, 0, 0, 2**32 + 2, 0, 0, 0, 0, 0, 0, 2**32, 0, 0, 0, 0]
    (scheme,) = parse_schemes(" ".join(map(str, fields)))
    assert scheme[:3] == (7, 2**40, 1)
    assert scheme[6] == 2 and scheme[13] == 0


def test_attrs() -> None:
    assert parse_attrs("5000 100000 1000000 10 1000\n") == (5000, 100000, 1000000, 10, 1000)
    assert parse_attrs("1 2 3 5 4") == (1, 2, 3, 5, 4)  # validation happens elsewhere
    assert parse_attrs("1\n2\t3 4 5 6 junk") == (1, 2, 3, 4, 5)
    for bad in ("", "1 2 3 4", "1 2 3 4 x", "-1 2 3 4 5", "+1 2 3 4 5"):
        assert errno_of(parse_attrs, bad) == "EINVAL"


def test_str_to_ints() -> None:
    assert str_to_ints("42 4242\n") == [42, 4242]
    assert str_to_ints("42 abc 43") == [42]
    assert str_to_ints("paddr\n") == []
    assert str_to_ints("") == []
    assert str_to_ints(" \n") == []
    assert str_to_ints("-5 +6") == [-5]
    assert str_to_ints("1,2") == [1]
    assert str_to_ints(" ".join(map(str, range(40)))) == list(range(32))
    assert str_to_ints("4294967297 -2147483649") == [1, 2**31 - 1]


def test_init_regions() -> None:
    text = (
        "0   1       100\n            0   100     200\n"
        "            1   20      40\n            1   50      100"
    )
    assert parse_init_regions(text) == [(0, 1, 100), (0, 100, 200), (1, 20, 40), (1, 50, 100)]
    assert parse_init_regions("0 1 100 1 20") == [(0, 1, 100)]
    assert parse_init_regions("-1 1 2") == [(-1, 1, 2)]
    assert parse_init_regions("0 -1 2") == []
    assert parse_init_regions("") == []


@pytest.mark.parametrize(
    ("buf", "keyword", "count", "match"),
    [
        ("paddr\n", "paddr\n", None, True),
        ("paddr", "paddr\n", None, True),
        ("pad", "paddr\n", None, True),
        ("p", "paddr\n", None, True),
        ("", "paddr\n", None, True),  # strncmp of 0 characters
        ("paddr\n\n", "paddr\n", None, False),
        ("paddrx", "paddr\n", None, False),
        ("42", "paddr\n", None, False),
        ("pa\0x", "paddr\n", None, False),
        ("paddr\n\0junk", "paddr\n", None, True),
        ("o", "on", None, True),  # `echo -n o > monitor_on`
        ("on", "on", 3, True),  # "on\n" trimmed by sscanf("%s"), count 3
        ("o", "on", 2, False),  # "o\n" trimmed, count 2
        ("of", "off", 3, False),
        ("of", "off", 2, True),
        ("", "on", 1, False),  # "\n" trimmed to ""
        ("off", "on", 4, False),
    ],
)
def test_dbgfs_keyword_match(buf: str, keyword: str, count: int | None, match: bool) -> None:
    assert dbgfs_keyword_match(buf, keyword, count) is match


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

SPACES = st.text(alphabet=st.sampled_from(list(" \t\n\v\f\r")), min_size=1, max_size=3)


def wrap_int(value: int) -> int:
    value %= U32
    return value - U32 if value >= 2**31 else value


@given(st.lists(st.integers(-(2**70), 2**70), max_size=40), st.data())
def test_str_to_ints_matches_c_int_wrapping(values: list[int], data) -> None:
    text = "".join(str(v) + data.draw(SPACES) for v in values)
    assert str_to_ints(data.draw(st.text(" \n", max_size=2)) + text) == [
        wrap_int(v) for v in values[:32]
    ]


SCHEME_U32 = {2, 3, 4, 5, 6, 10, 11, 12, 13}


@given(
    st.lists(st.lists(st.integers(0, 2**70), min_size=18, max_size=18), max_size=5),
    st.data(),
)
def test_parse_schemes_matches_c_types(entries: list[list[int]], data) -> None:
    text = "".join("".join(str(v) + data.draw(SPACES) for v in entry) for entry in entries)
    expected = [
        tuple(v % (U32 if i in SCHEME_U32 else U64) for i, v in enumerate(entry))
        for entry in entries
    ]
    assert parse_schemes(text) == expected


@settings(max_examples=500)
@given(st.one_of(st.text(), NUMBERISH))
def test_never_an_exception_other_than_damon_error(text: str) -> None:
    for fn in (kstrtoul, kstrtoull, kstrtouint, kstrtoint, kstrtol, kstrtoll, parse_attrs):
        outcome(fn, text)
    str_to_ints(text)
    parse_init_regions(text)
    parse_schemes(text)
    sscanf_word(text)
    sysfs_streq(text, "on")
    dbgfs_keyword_match(text, "paddr\n")
    for fmt in ("%lu %lu%n", "%d%n", "%s", "%u,%ld%%"):
        ksscanf(text, fmt)


# -- kstrtobool ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("Y", True), ("y\n", True), ("yes", True), ("1", True), ("10", True), ("t", True),
    ("True", True), ("on", True), ("ON\n", True), ("oN", True),
    ("N", False), ("no", False), ("0", False), ("f", False), ("off", False), ("oF", False),
])
def test_kstrtobool_reads_the_first_characters_only(text, value):
    assert kparse.kstrtobool(text) is value


@pytest.mark.parametrize("text", ["", "\n", "o", "o\n", "ox", "2", " y", "maybe", "\0y"])
def test_kstrtobool_refuses_the_rest_with_einval(text):
    with pytest.raises(DamonError) as e:
        kparse.kstrtobool(text)
    assert e.value.errno_name == "EINVAL"


def test_kstrscpy_stops_at_nul_and_keeps_the_newline():
    assert kparse.kstrscpy("/a/b\n") == "/a/b\n"
    assert kparse.kstrscpy("/a\0/b") == "/a"
