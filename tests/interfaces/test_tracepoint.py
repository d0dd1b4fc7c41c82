"""The ``damon:damon_aggregated`` text (``damond.interfaces.tracepoint``): exact lines for known
events, every form the tools print parsed back, and the grouping into snapshots."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from damond.core.events import AggregationEvent, TargetSnapshot
from damond.interfaces import tracepoint
from damond.interfaces.tracepoint import TracepointLine


def target(index: int, regions: list[tuple[int, int, int, int]]) -> TargetSnapshot:
    cols = list(zip(*regions, strict=True)) if regions else [(), (), (), ()]
    return TargetSnapshot(index, np.array(cols[0], dtype=np.uint64),
                          np.array(cols[1], dtype=np.uint64), np.array(cols[2], dtype=np.int64),
                          np.array(cols[3], dtype=np.int64))


KNOWN = AggregationEvent(
    kdamond_index=2, context_index=0, start_ns=82877_215633_000, end_ns=82877_315633_789,
    sample_us=5000, aggr_us=100_000,
    targets=(target(0, [(4096, 8192, 3, 7), (8192, 1 << 47, 0, 12)]), target(1, []),
             target(2, [(0, 4096, 20, 0)])))


# -- formatting ------------------------------------------------------------------------------------


def test_known_event_as_damonds_trace_prints_it():
    assert tracepoint.format_lines(KNOWN) == [
        "kdamond.2 82877.315633: damon:damon_aggregated: target_id=0 nr_regions=2 4096-8192: 3 7",
        "kdamond.2 82877.315633: damon:damon_aggregated: target_id=0 nr_regions=2 "
        "8192-140737488355328: 0 12",
        "kdamond.2 82877.315633: damon:damon_aggregated: target_id=2 nr_regions=1 0-4096: 20 0",
    ]


def test_known_event_as_perf_script_prints_it():
    assert tracepoint.format_target_lines(KNOWN, KNOWN.targets[2], pid=4452) == [
        "kdamond.2 4452 [000] 82877.315633: damon:damon_aggregated: target_id=2 nr_regions=1 "
        "0-4096: 20 0"]
    assert tracepoint.format_target_lines(KNOWN, KNOWN.targets[1]) == []
    assert tracepoint.format_lines(KNOWN, pid=4452)[2] == tracepoint.format_target_lines(
        KNOWN, KNOWN.targets[2], pid=4452)[0]


def test_time_stamps_are_microseconds_with_six_digits():
    assert tracepoint.format_timestamp(0) == "0.000000"
    assert tracepoint.format_timestamp(1_000_999) == "0.001000"
    assert tracepoint.format_head(0, 5_000_000_000) == (
        "kdamond.0 5.000000: damon:damon_aggregated: ")


# -- parsing ---------------------------------------------------------------------------------------


def test_every_form_the_tools_print_is_parsed():
    body = "target_id=3 nr_regions=2 4096-8192: 5 9"
    expected = dict(target_id=3, nr_regions=2, start=4096, end=8192, nr_accesses=5, age=9)
    forms = {
        # damond's trace
        f"kdamond.1 82877.315633: damon:damon_aggregated: {body}": (1, 82877_315633_000),
        # perf script
        f"kdamond.1  4452 [000] 82877.315633: damon:damon_aggregated: {body}":
            (1, 82877_315633_000),
        # tracefs' trace file and trace-cmd report
        f"  kdamond.1-4452    [001] ..... 82877.315633: damon_aggregated: {body}":
            (1, 82877_315633_000),
        f"kdamond.1-4452 [001] 82877.315633123: damon_aggregated: {body}": (1, 82877_315633_123),
        # damo's own perf_script writer
        f"kdamond.x xxxx xxxx 82877.315633: damon:damon_aggregated: {body}":
            (None, 82877_315633_000),
        # no head at all
        f"damon:damon_aggregated: {body}": (None, None),
    }
    for line, (kdamond, time_ns) in forms.items():
        assert tracepoint.parse_line(line) == TracepointLine(kdamond, time_ns, **expected), line


def test_pre_5_18_lines_have_no_age():
    line = ("kdamond.0 1.5: damon:damon_aggregated: target_id=18446623435582458880 "
            "nr_regions=1 0-1: 2")
    assert tracepoint.parse_line(line) == TracepointLine(
        0, 1_500_000_000, 18446623435582458880, 1, 0, 1, 2, None)


def test_other_lines_are_not_events():
    for line in ("", "# dropped 3 events", "OK", "ERR EINVAL x: y", "# tracer: nop",
                 "kdamond.0 5.000000: damon:damos_before_apply: ctx_idx=0",
                 "kdamond.0 5.000000: damon:damon_aggregated: nr_regions=1 0-1: 2 3",
                 "kdamond.0 5.000000: damon:damon_aggregated: target_id=0 nr_regions=1 0-1:",
                 "kdamond.0 5.000000: damon:damon_aggregated: target_id=x nr_regions=1 0-1: 2 3",
                 "kdamond.0 5.000000: damon:damon_aggregated: target_id=0 nr_regions=1 0_1: 2 3"):
        assert tracepoint.parse_line(line) is None, line
    assert list(tracepoint.parse_lines(["OK", "x"])) == []


def test_heads_and_time_stamps():
    assert tracepoint.parse_head("kdamond.12 82877.315633: damon:...") == (12, 82877315633000)
    assert tracepoint.parse_head("# dropped 3 events") is None
    assert tracepoint.parse_head("kdamond.x 1.0: damon:...") is None
    assert tracepoint.parse_timestamp("82877.315633") == 82877_315633_000
    assert tracepoint.parse_timestamp("1.123456789") == 1_123456789
    assert tracepoint.parse_timestamp("7") == 7_000_000_000
    for token in ("", "x", "1.x", "-1.0", "[000]"):
        assert tracepoint.parse_timestamp(token) is None


u64 = st.integers(0, (1 << 64) - 1)
counts = st.integers(0, (1 << 31) - 1)
targets = st.lists(st.lists(st.tuples(u64, u64, counts, counts), max_size=4), max_size=3)
events = st.builds(
    lambda kd, end_ns, regions: AggregationEvent(
        kd, 0, 0, end_ns, 5000, 100_000, tuple(target(i, r) for i, r in enumerate(regions))),
    st.integers(0, 1000), st.integers(0, 1 << 62), targets)


@given(events, st.none() | st.integers(1, 1 << 22))
def test_format_parse_round_trip(event, pid):
    parsed = [tracepoint.parse_line(line) for line in tracepoint.format_lines(event, pid)]
    expected = [
        TracepointLine(event.kdamond_index, event.end_ns // 1000 * 1000, t.target_index,
                       t.nr_regions, s, e, a, g)
        for t in event.targets
        for s, e, a, g in zip(t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(),
                              t.age.tolist(), strict=True)]
    assert parsed == expected


# -- grouping --------------------------------------------------------------------------------------


def _columns(s: TargetSnapshot) -> list[list[int]]:
    return [s.start.tolist(), s.end.tolist(), s.nr_accesses.tolist(), s.age.tolist()]


@given(st.lists(events, max_size=4))
def test_grouping_gives_back_each_targets_snapshots(evs):
    lines = [line for ev in evs for line in tracepoint.format_lines(ev)]
    grouped = tracepoint.group_snapshots(tracepoint.parse_lines(lines))
    expected: dict[int, list[tuple[int, TargetSnapshot]]] = {}
    for ev in evs:
        for t in ev.targets:
            if t.nr_regions:
                expected.setdefault(t.target_index, []).append((ev.end_ns // 1000 * 1000, t))
    assert list(grouped) == list(expected)
    for target_id, snapshots in grouped.items():
        assert [s.end_ns for s in snapshots] == [end for end, _ in expected[target_id]]
        assert all(s.complete for s in snapshots)
        assert [_columns(s.regions) for s in snapshots] == [
            _columns(t) for _, t in expected[target_id]]
        assert all(s.regions.target_index == target_id for s in snapshots)


def test_grouping_interleaved_targets_incomplete_end_and_missing_age():
    head = "kdamond.0 {}.000000: damon:damon_aggregated: target_id={} nr_regions={} {}-{}: 1"
    lines = [head.format(1, 5, 2, 0, 10), head.format(1, 7, 1, 0, 4), head.format(1, 5, 2, 10, 20),
             "# dropped 1 events", head.format(2, 5, 2, 0, 20)]
    grouped = tracepoint.group_snapshots(tracepoint.parse_lines(lines), missing_age=-1)
    assert list(grouped) == [5, 7]
    first, last = grouped[5]
    assert (first.end_ns, first.nr_regions, first.complete) == (1_000_000_000, 2, True)
    assert _columns(first.regions) == [[0, 10], [10, 20], [1, 1], [-1, -1]]
    assert (last.end_ns, last.complete, last.regions.nr_regions) == (2_000_000_000, False, 1)
    assert _columns(grouped[7][0].regions) == [[0], [4], [1], [-1]]
    zero = tracepoint.group_snapshots(tracepoint.parse_lines(lines[:1]), missing_age=0)
    assert zero[5][0].regions.age.tolist() == [0]


def test_trace_grouper_turns_a_stream_back_into_events():
    later = AggregationEvent(2, 0, 0, KNOWN.end_ns + 100_000_000, 5000, 100_000, KNOWN.targets)
    lines = [*tracepoint.format_lines(KNOWN), "# dropped 3 events", *tracepoint.format_lines(later)]
    grouper = tracepoint.TraceGrouper(2, 5000, 100_000)
    got = [ev for line in lines if (ev := grouper.feed(line)) is not None]
    got.append(grouper.finish())
    assert [(e.start_ns, e.end_ns) for e in got] == [
        (82877_215633_000, 82877_315633_000), (82877_315633_000, 82877_415633_000)]
    for ev in got:
        assert [t.target_index for t in ev.targets] == [0, 2]  # no lines for the empty target
        assert [_columns(t) for t in ev.targets] == [
            _columns(KNOWN.targets[0]), _columns(KNOWN.targets[2])]
    assert tracepoint.TraceGrouper(1, 5000, 100_000).feed(lines[0]) is None  # other kdamond
