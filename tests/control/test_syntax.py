"""The protocol's request syntax: documentation examples, shell rules, refusals, properties."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from damond.control.syntax import (
    MAX_REQUEST_BYTES,
    Incomplete,
    LineAssembler,
    Step,
    echo_payload,
    parse,
    shell_join,
    shell_quote,
    strip_prompt,
)
from damond.errors import DamonError


def steps(*specs: tuple) -> list[Step]:
    """Build expected steps from (argv, redirect[, connector]) tuples; connectors default."""
    out = []
    for i, spec in enumerate(specs):
        argv, redirect, *rest = spec
        connector = rest[0] if rest else (None if i == len(specs) - 1 else ";")
        out.append(Step(list(argv), redirect, connector))
    return out


def echo(value: str, path: str | None, connector: str | None = None) -> tuple:
    argv = ["echo", *value.split()]
    return (argv, path) if connector is None else (argv, path, connector)


def refused(text: str) -> str:
    with pytest.raises(DamonError) as info:
        parse(text)
    assert info.value.errno_name == "EINVAL"
    assert "\n" not in info.value.why
    return info.value.why


# --------------------------------------------------------------------------------------------
# Every example command line of damon-usage-5.18.rst, verbatim (indentation included).
# --------------------------------------------------------------------------------------------

SYSFS_EXAMPLES = [
    ("    # cd /sys/kernel/mm/damon/admin/", steps((["cd", "/sys/kernel/mm/damon/admin/"], None))),
    (
        "    # echo 1 > kdamonds/nr && echo 1 > kdamonds/0/contexts/nr",
        steps(echo("1", "kdamonds/nr", "&&"), echo("1", "kdamonds/0/contexts/nr")),
    ),
    (
        "    # echo vaddr > kdamonds/0/contexts/0/operations",
        steps(echo("vaddr", "kdamonds/0/contexts/0/operations")),
    ),
    (
        "    # echo 1 > kdamonds/0/contexts/0/targets/nr",
        steps(echo("1", "kdamonds/0/contexts/0/targets/nr")),
    ),
    (
        "    # echo $(pidof <workload>) > kdamonds/0/contexts/0/targets/0/pid",
        steps((["echo", "$(pidof <workload>)"], "kdamonds/0/contexts/0/targets/0/pid")),
    ),
    ("    # echo on > kdamonds/0/state", steps(echo("on", "kdamonds/0/state"))),
    (
        "    # cd <sysfs>/kernel/mm/damon/admin",
        steps((["cd", "<sysfs>/kernel/mm/damon/admin"], None)),
    ),
    ("    # # populate directories", []),
    (
        "    # echo 1 > kdamonds/nr_kdamonds; echo 1 > kdamonds/0/contexts/nr_contexts;",
        steps(echo("1", "kdamonds/nr_kdamonds"), echo("1", "kdamonds/0/contexts/nr_contexts")),
    ),
    (
        "    # echo 1 > kdamonds/0/contexts/0/schemes/nr_schemes",
        steps(echo("1", "kdamonds/0/contexts/0/schemes/nr_schemes")),
    ),
    (
        "    # cd kdamonds/0/contexts/0/schemes/0",
        steps((["cd", "kdamonds/0/contexts/0/schemes/0"], None)),
    ),
    ("    # # set the basic access pattern and the action", []),
    ("    # echo 4096 > access_patterns/sz/min", steps(echo("4096", "access_patterns/sz/min"))),
    ("    # echo 8192 > access_patterns/sz/max", steps(echo("8192", "access_patterns/sz/max"))),
    (
        "    # echo 0 > access_patterns/nr_accesses/min",
        steps(echo("0", "access_patterns/nr_accesses/min")),
    ),
    (
        "    # echo 5 > access_patterns/nr_accesses/max",
        steps(echo("5", "access_patterns/nr_accesses/max")),
    ),
    ("    # echo 10 > access_patterns/age/min", steps(echo("10", "access_patterns/age/min"))),
    ("    # echo 20 > access_patterns/age/max", steps(echo("20", "access_patterns/age/max"))),
    ("    # echo pageout > action", steps(echo("pageout", "action"))),
    ("    # # set quotas", []),
    ("    # echo 10 > quotas/ms", steps(echo("10", "quotas/ms"))),
    (
        "    # echo $((1024*1024*1024)) > quotas/bytes",
        steps((["echo", "$((1024*1024*1024))"], "quotas/bytes")),
    ),
    ("    # echo 1000 > quotas/reset_interval_ms", steps(echo("1000", "quotas/reset_interval_ms"))),
    ("    # # set watermark", []),
    (
        "    # echo free_mem_rate > watermarks/metric",
        steps(echo("free_mem_rate", "watermarks/metric")),
    ),
    (
        "    # echo 5000000 > watermarks/interval_us",
        steps(echo("5000000", "watermarks/interval_us")),
    ),
    ("    # echo 600 > watermarks/high", steps(echo("600", "watermarks/high"))),
    ("    # echo 500 > watermarks/mid", steps(echo("500", "watermarks/mid"))),
    ("    # echo 300 > watermarks/low", steps(echo("300", "watermarks/low"))),
]

DEBUGFS_EXAMPLES = [
    ("    # cd <debugfs>/damon", steps((["cd", "<debugfs>/damon"], None))),
    (
        "    # echo 5000 100000 1000000 10 1000 > attrs",
        steps(echo("5000 100000 1000000 10 1000", "attrs")),
    ),
    ("    # cat attrs", steps((["cat", "attrs"], None))),
    ("    # echo 42 4242 > target_ids", steps(echo("42 4242", "target_ids"))),
    ("    # cat target_ids", steps((["cat", "target_ids"], None))),
    ("    # echo paddr > target_ids", steps(echo("paddr", "target_ids"))),
    ('    # echo "$scheme" > schemes', steps((["echo", "$scheme"], "schemes"))),
    ("    # echo on > monitor_on", steps(echo("on", "monitor_on"))),
    ("    # echo off > monitor_on", steps(echo("off", "monitor_on"))),
    ("    # cat monitor_on", steps((["cat", "monitor_on"], None))),
    ("    # cat kdamond_pid", steps((["cat", "kdamond_pid"], None))),
    ("    # ls foo", steps((["ls", "foo"], None))),
    # The document shows ls's output behind a prompt; it still parses (and fails to run).
    (
        "    # ls: cannot access 'foo': No such file or directory",
        steps((["ls:", "cannot", "access", "foo:", "No", "such", "file", "or", "directory"], None)),
    ),
    ("    # echo foo > mk_contexts", steps(echo("foo", "mk_contexts"))),
    (
        "    # attrs  init_regions  kdamond_pid  schemes  target_ids",
        steps((["attrs", "init_regions", "kdamond_pid", "schemes", "target_ids"], None)),
    ),
    ("    # echo foo > rm_contexts", steps(echo("foo", "rm_contexts"))),
    # Tracepoint section.
    ("    # sleep 5", steps((["sleep", "5"], None))),
    ("    # kill 9 $(pidof perf)", steps((["kill", "9", "$(pidof perf)"], None))),
    ("    # perf script", steps((["perf", "script"], None))),
]

# The debugfs schemes example builds a shell variable: refused with a clear reason.
ASSIGNMENT_EXAMPLES = [
    '    # scheme="4096 8192  0 5    10 20    2"  # target access pattern and action',
    '    # scheme+=" 10 $((1024*1024*1024)) 1000" # quotas',
    '    # scheme+=" 0 0 100"                     # prioritization weights',
    '    # scheme+=" 1 5000000 600 500 300"       # watermarks',
]

INIT_REGIONS_EXAMPLE = [
    '    # echo "0   1       100',
    "            0   100     200",
    "            1   20      40",
    '            1   50      100" > init_regions',
]


@pytest.mark.parametrize(("line", "expected"), SYSFS_EXAMPLES + DEBUGFS_EXAMPLES)
def test_documentation_example(line: str, expected: list[Step]) -> None:
    assert parse(line) == expected
    assembler = LineAssembler()
    assert assembler.feed(line + "\n") == line


@pytest.mark.parametrize("line", ASSIGNMENT_EXAMPLES)
def test_documentation_variable_assignment_is_refused(line: str) -> None:
    why = refused(line)
    assert "variable assignment" in why and "scheme" in why


def test_documentation_background_job_is_refused() -> None:
    assert "`&`" in refused("    # perf record -e damon:damon_aggregated &")


def test_documentation_multiline_init_regions() -> None:
    assembler = LineAssembler()
    results = [assembler.feed(line + "\r\n") for line in INIT_REGIONS_EXAMPLE]
    assert results[:-1] == [None, None, None]
    request = results[-1]
    assert request == "\n".join(INIT_REGIONS_EXAMPLE)
    value = (
        "0   1       100\n            0   100     200\n"
        "            1   20      40\n            1   50      100"
    )
    assert parse(request) == [Step(["echo", value], "init_regions", None)]
    assert not assembler.pending


REFERENCE_DOC = Path("/work/shared/reference/damon-usage-5.18.rst")


@pytest.mark.skipif(not REFERENCE_DOC.exists(), reason="reference document not available")
def test_every_prompt_line_of_the_document_is_covered() -> None:
    covered = {line for line, _ in SYSFS_EXAMPLES + DEBUGFS_EXAMPLES}
    covered |= set(ASSIGNMENT_EXAMPLES) | {INIT_REGIONS_EXAMPLE[0]}
    covered |= {
        "    # perf record -e damon:damon_aggregated &",
        "    # echo on > monitor_on",
        "    # echo off > monitor_on",
    }
    prompt_lines = {
        line for line in REFERENCE_DOC.read_text().splitlines() if re.match(r"    # ", line)
    }
    assert prompt_lines - covered == set()


# --------------------------------------------------------------------------------------------
# Prompts and comments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "stripped"),
    [
        ("# echo on > state", "echo on > state"),
        ("$ cat x", "cat x"),
        ("   \t# # populate", "# populate"),
        ("#text", "#text"),
        ("$x", "$x"),
        ("#", "#"),
        ("# ", ""),
        ("#  two", " two"),
    ],
)
def test_strip_prompt(line: str, stripped: str) -> None:
    assert strip_prompt(line) == stripped


@pytest.mark.parametrize(
    "text", ["", "   ", "\t", "#", "#text", "# ", "# # comment", "$ # comment", "  # #", "\n"]
)
def test_blank_and_comment_only_requests_have_no_steps(text: str) -> None:
    assert parse(text) == []


def test_prompt_is_removed_only_once_and_only_at_the_start() -> None:
    assert parse("# # echo on") == []
    assert parse("$ $ x") == steps((["$", "x"], None))
    assert parse("echo a; # echo b") == steps((["echo", "a"], None))
    assert parse("$x") == steps((["$x"], None))


def test_hash_inside_a_word_is_not_a_comment() -> None:
    assert parse("echo a#b 'c'#d # e") == steps((["echo", "a#b", "c#d"], None))
    assert parse("echo a;#b") == steps((["echo", "a"], None))
    assert parse("echo \\#x") == steps((["echo", "#x"], None))
    assert parse("echo '#x'") == steps((["echo", "#x"], None))


def test_comment_hides_quotes() -> None:
    assert parse("echo a # it's fine") == steps((["echo", "a"], None))
    assembler = LineAssembler()
    assert assembler.feed("echo a # it's fine") == "echo a # it's fine"


# --------------------------------------------------------------------------------------------
# Words, quoting, escaping
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("echo  a\tb", ["echo", "a", "b"]),
        ("echo 'a b' \"c d\"", ["echo", "a b", "c d"]),
        ("echo a'b'\"c\"d", ["echo", "abcd"]),
        ("echo '' \"\"", ["echo", "", ""]),
        ("echo 'a\\b$x'", ["echo", "a\\b$x"]),
        ('echo "\\\\ \\" \\$ \\` \\a \\n"', ["echo", '\\ " $ ` \\a \\n']),
        ("echo a\\ b \\'c\\\"", ["echo", "a b", "'c\""]),
        ("echo a\\\nb", ["echo", "ab"]),
        ('echo "a\\\nb"', ["echo", "ab"]),
        ("echo 'a\\\nb'", ["echo", "a\\\nb"]),
        ("echo 'multi\nline'", ["echo", "multi\nline"]),
        ("echo $x ${y} $ $1", ["echo", "$x", "${y}", "$", "$1"]),
        ('echo "$x" "${y:-a b}"', ["echo", "$x", "${y:-a b}"]),
        ("echo $(pidof app) `pidof app`", ["echo", "$(pidof app)", "`pidof app`"]),
        ("echo $(echo ')' \"(\" $(x) (y))z", ["echo", "$(echo ')' \"(\" $(x) (y))z"]),
        ('echo "$(pidof "app")"', ["echo", '$(pidof "app")']),
        ("echo $((1+2))", ["echo", "$((1+2))"]),
        ("echo *.txt ~ {a,b} [x]", ["echo", "*.txt", "~", "{a,b}", "[x]"]),
        ("echo <N> kdamonds/<N>/state", ["echo", "<N>", "kdamonds/<N>/state"]),
        ("echo a=b", ["echo", "a=b"]),
        ("'if' x", ["if", "x"]),
        ("echo if then", ["echo", "if", "then"]),
        ("echo é ünï", ["echo", "é", "ünï"]),
        ("echo a\rb", ["echo", "a\rb"]),
        ("echo -n on", ["echo", "-n", "on"]),
    ],
)
def test_words(text: str, argv: list[str]) -> None:
    assert parse(text) == [Step(argv, None, None)]


def test_final_crlf_is_a_line_end() -> None:
    assert parse("echo on > state\r\n") == steps(echo("on", "state"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("echo 'a", "single quote"),
        ('echo "a', "double quote"),
        ("echo a\\", "backslash"),
        ('echo "a\\', "backslash"),
        ("echo $(pidof x", "$("),
        ("echo ${x", "${"),
        ("echo `x", "backquote"),
        ("echo $(echo ')", "single quote"),
        ("echo $(echo ')'", "$("),
    ],
)
def test_incomplete(text: str, reason: str) -> None:
    with pytest.raises(Incomplete) as info:
        parse(text)
    assert reason in info.value.why
    error = info.value.to_error()
    assert error.errno_name == "EINVAL" and reason in error.why


# --------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------


def test_connectors() -> None:
    assert parse("cat a; cat b && cat c") == steps(
        (["cat", "a"], None, ";"), (["cat", "b"], None, "&&"), (["cat", "c"], None, None)
    )
    assert parse("cat a;cat b&&cat c;") == parse("cat a; cat b && cat c")


def test_redirection_anywhere() -> None:
    assert parse("echo > f on") == steps(echo("on", "f"))
    assert parse(">f echo on") == steps(echo("on", "f"))
    assert parse("echo on>f") == steps(echo("on", "f"))
    assert parse("echo on >'my file'") == steps(echo("on", "my file"))
    assert parse("echo on > ''") == [Step(["echo", "on"], "", None)]
    assert parse("echo a>f;echo b>g") == steps(echo("a", "f"), echo("b", "g"))


def test_newline_inside_text_separates_commands() -> None:
    assert parse("echo a\necho b") == steps(echo("a", None), echo("b", None))
    assert parse("echo a &&\necho b") == steps(echo("a", None, "&&"), echo("b", None))


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("echo a >> f", ">>"),
        ("echo a>>f", ">>"),
        ("cat a | cat", "|"),
        ("cat a || cat b", "||"),
        ("sleep 5 &", "&"),
        ("echo a & echo b", "&"),
        ("cat < f", "<"),
        ("cat <f", "<"),
        ("cat << EOF", "<<"),
        ("cat <<-EOF", "<<-"),
        ("cat <<< word", "<<<"),
        ("echo a >| f", ">|"),
        ("echo a >&2", ">&"),
        ("echo a &> f", "&>"),
        ("cat a |& cat", "|&"),
        ("(cd x)", "("),
        ("echo a)", ")"),
        ("echo a;; echo b", ";;"),
        ("echo 1>f", "1>"),
        ("echo a 2>f", "2>"),
        ("cat 0<f", "0<"),
        ("if true; then echo; fi", "if"),
        ("for x in a; do echo; done", "for"),
        ("{ echo a; }", "{"),
        ("! echo a", "!"),
        ("x=1", "x="),
        ("x=1 echo a", "x="),
        ("x+=1", "x+="),
        ('x="a b"', "x="),
    ],
)
def test_refused_constructs_are_named(text: str, construct: str) -> None:
    assert f"`{construct}" in refused(text)


@pytest.mark.parametrize(
    "text",
    [
        "; echo a",
        "echo a;;",
        "echo a && && echo b",
        "&& echo a",
        "echo a &&",
        "echo a >",
        "echo a > ; echo b",
        "> f",
        "echo a > f > g",
        "echo a &&\n",
    ],
)
def test_malformed_chains(text: str) -> None:
    refused(text)


def test_first_refusal_from_the_left_is_reported() -> None:
    assert "`|`" in refused("echo a | cat >> f")
    assert "`>>`" in refused("echo a >> f | cat")


def test_quoted_operators_are_words() -> None:
    assert parse("echo '>' \";\" \\& '|' \\<x\\>") == steps(
        (["echo", ">", ";", "&", "|", "<x>"], None)
    )


# --------------------------------------------------------------------------------------------
# echo
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "payload"),
    [
        (["echo", "on"], "on\n"),
        (["echo", "1", "2", "3"], "1 2 3\n"),
        (["echo"], "\n"),
        (["echo", ""], "\n"),
        (["echo", "-n", "on"], "on"),
        (["echo", "-n"], ""),
        (["echo", "-n", "-n", "x"], "-n x"),
        (["echo", "-e", "a\\nb"], "-e a\\nb\n"),
        (["echo", "-nn", "x"], "-nn x\n"),
        (["echo", "a", "-n"], "a -n\n"),
        (["echo", "a  b", "c"], "a  b c\n"),
    ],
)
def test_echo_payload(argv: list[str], payload: str) -> None:
    assert echo_payload(argv) == payload


# --------------------------------------------------------------------------------------------
# LineAssembler
# --------------------------------------------------------------------------------------------


def test_assembler_continuations_and_line_ends() -> None:
    a = LineAssembler()
    assert a.feed("echo 'a") is None and a.pending
    assert a.feed("b' \\\r\n") is None
    assert a.feed("> f\r\n") == "echo 'a\nb' \\\n> f"
    assert not a.pending
    assert parse("echo 'a\nb' \\\n> f") == [Step(["echo", "a\nb"], "f", None)]


def test_assembler_chunks() -> None:
    a = LineAssembler()
    assert a.feed_chunk("cat a\necho 'x") == ["cat a"]
    assert a.feed_chunk("\ny' > f\r") == []
    assert a.feed_chunk("\ncat b") == ["echo 'x\ny' > f"]
    assert a.close() == ["cat b"]
    assert a.close() == []


def test_assembler_end_of_input_inside_a_quote() -> None:
    a = LineAssembler()
    assert a.feed_chunk('echo "abc\n') == []
    (error,) = a.close()
    assert isinstance(error, DamonError) and error.errno_name == "EINVAL"
    assert "double quote" in error.why


def test_assembler_too_long_request_is_one_error_and_the_stream_goes_on() -> None:
    a = LineAssembler()
    big = "x" * MAX_REQUEST_BYTES
    with pytest.raises(DamonError) as info:
        a.feed(f"echo {big} > f")
    assert info.value.errno_name == "E2BIG"
    assert a.feed("cat a") == "cat a"
    # An overlong quoted value: its later lines are not taken for commands.
    out = a.feed_chunk("echo '" + big + "\nrm -rf /\n' > f\ncat b\n")
    assert [type(x) for x in out] == [DamonError, str]
    assert out[1] == "cat b"


def test_assembler_exactly_at_the_limit_is_accepted() -> None:
    a = LineAssembler(max_bytes=10)
    assert a.feed("echo 'é") is None  # 8 bytes
    assert a.feed("'") == "echo 'é\n'"  # 10 bytes
    with pytest.raises(DamonError):
        a.feed("echo 'éé'")  # 11 bytes


def test_assembler_spills_overlong_unterminated_lines() -> None:
    a = LineAssembler(max_bytes=8)
    for piece in ["echo '", "x" * 20, "\r", "x" * 20, "' # a comment", "\r"]:
        assert a.feed_chunk(piece) == []
    assert len(a._partial) <= 10
    (error,) = a.feed_chunk("\nnext")
    assert isinstance(error, DamonError) and error.errno_name == "E2BIG"
    assert a.close() == ["next"]


def test_assembler_feed_rejects_several_lines() -> None:
    with pytest.raises(ValueError):
        LineAssembler().feed("a\nb")


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

SHELLISH = st.text(
    alphabet=st.sampled_from(list(" \t\n\r#$'\"\\`(){}<>|&;=!-0123abn")) | st.characters(),
    max_size=80,
)


def outcome(items: list) -> list:
    return [(x.errno_name, x.why) if isinstance(x, DamonError) else x for x in items]


def assemble_whole(text: str, max_bytes: int) -> list:
    a = LineAssembler(max_bytes)
    return outcome(a.feed_chunk(text) + a.close())


@settings(max_examples=800)
@given(st.one_of(SHELLISH, st.text()))
def test_parse_raises_only_damon_error_or_incomplete(text: str) -> None:
    try:
        result = parse(text)
    except (DamonError, Incomplete):
        return
    for step in result:
        assert step.argv and step.connector in (";", "&&", None)
    if result:
        assert result[-1].connector is None


@settings(max_examples=500)
@given(st.lists(st.text(), min_size=1, max_size=6))
def test_quoted_words_round_trip(words: list[str]) -> None:
    assert parse(shell_join(words)) == [Step(words, None, None)]


@given(st.lists(st.text(), min_size=1, max_size=4), st.text(min_size=1))
def test_quoted_redirect_round_trips(words: list[str], path: str) -> None:
    line = f"{shell_join(words)} > {shell_quote(path)}"
    assert parse(line) == [Step(words, path, None)]


@settings(max_examples=500)
@given(SHELLISH, st.lists(st.integers(0, 80), max_size=6), st.sampled_from([16, 64, 4096]))
def test_split_feeding_equals_whole_feeding(text: str, cuts: list[int], max_bytes: int) -> None:
    a = LineAssembler(max_bytes)
    got: list = []
    last = 0
    for cut in sorted(min(c, len(text)) for c in cuts):
        got += a.feed_chunk(text[last:cut])
        last = cut
    got += a.feed_chunk(text[last:]) + a.close()
    assert outcome(got) == assemble_whole(text, max_bytes)


@settings(max_examples=500)
@given(SHELLISH)
def test_line_feeding_equals_chunk_feeding(text: str) -> None:
    assume(not text.endswith("\n"))
    lines = text.split("\n")
    a = LineAssembler()
    got: list = []
    for line in lines:
        try:
            request = a.feed(line + "\n")
        except DamonError as e:
            request = e
        if request is not None:
            got.append(request)
    expected = assemble_whole(text + "\n", MAX_REQUEST_BYTES)
    assert outcome(got) + outcome(a.close()) == expected


@settings(max_examples=500)
@given(SHELLISH)
def test_assembled_requests_are_never_incomplete(text: str) -> None:
    a = LineAssembler()
    for request in a.feed_chunk(text) + a.close():
        if isinstance(request, str):
            with contextlib.suppress(DamonError):
                parse(request)


@settings(max_examples=500)
@given(SHELLISH)
def test_assembler_and_parser_agree_on_where_a_line_ends(text: str) -> None:
    line = text.replace("\n", " ").removesuffix("\r")  # feed() drops a final CR
    try:
        parse(line)
        incomplete = False
    except Incomplete:
        incomplete = True
    except DamonError:
        incomplete = False
    assert (LineAssembler().feed(line) is None) is incomplete
