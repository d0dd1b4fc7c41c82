"""The offload relay's reading of the kernel's trace text, on text in tracefs' own form: bulk
parsing agrees with the line parser, and the grouper rebuilds each aggregation exactly however
``trace_pipe`` cuts the text, skips a burst cut by enabling the tracepoint, and drops (and
counts) an aggregation that lost events."""

from __future__ import annotations

import random

import numpy as np

from damond.interfaces import tracepoint
from damond.service.offload import KernelTraceGrouper

AGGR_US = 100_000


def _tracefs_lines(aggrs: list[list[list[tuple[int, int, int, int]]]], t0_ns: int = 10**12,
                   pid: int = 4242) -> list[str]:
    """tracefs' form of ``aggrs[k][target] = [(start, end, nr_accesses, age)...]``: one burst
    per aggregation (a microsecond per event), bursts ``AGGR_US`` apart."""
    lines = []
    for k, targets in enumerate(aggrs):
        t = t0_ns + k * AGGR_US * 1000
        for tid, regions in enumerate(targets):
            for s, e, n, a in regions:
                sec, ns = divmod(t, 10**9)
                lines.append(f"       kdamond.0-{pid}    [001] ..... {sec}.{ns // 1000:06d}: "
                             f"damon_aggregated: target_id={tid} nr_regions={len(regions)} "
                             f"{s}-{e}: {n} {a}")
                t += 1000
    return lines


def _random_aggrs(rng: random.Random, nr_aggrs: int, nr_targets: int):
    aggrs = []
    for _ in range(nr_aggrs):
        targets = []
        for _t in range(nr_targets):
            edges = sorted(rng.sample(range(1, 1 << 20), rng.randint(2, 40)))
            targets.append([(edges[i] << 12, edges[i + 1] << 12, rng.randint(0, 20),
                             rng.randint(0, 1000)) for i in range(len(edges) - 1)])
        aggrs.append(targets)
    return aggrs


def _cut(text: str, rng: random.Random) -> list[str]:
    """``text`` cut at random line ends, as successive ``trace_pipe`` reads deliver it."""
    lines = text.splitlines(keepends=True)
    blocks, i = [], 0
    while i < len(lines):
        j = i + rng.randint(1, 25)
        blocks.append("".join(lines[i:j]))
        i = j
    return blocks


def _assert_same(ev, targets) -> None:
    assert len(ev.targets) == len(targets)
    for snap, regions in zip(ev.targets, targets, strict=True):
        s, e, n, a = (np.array(c) for c in zip(*regions, strict=True))
        assert snap.start.tolist() == s.tolist() and snap.end.tolist() == e.tolist()
        assert snap.nr_accesses.tolist() == n.tolist() and snap.age.tolist() == a.tolist()


def test_parse_block_agrees_with_parse_line_in_every_form():
    rng = random.Random(1)
    lines = _tracefs_lines(_random_aggrs(rng, 2, 2))
    lines += ["# tracer: nop", "kdamond.3 99.000001: damon:damon_aggregated: target_id=1 "
              "nr_regions=1 30-40: 1", "kdamond.0 115 [000] 5.123456789: "
              "damon:damon_aggregated: target_id=0 nr_regions=1 1-18446744073709551615: 1 2",
              "not an event", "kdamond.0-1 [000] ..... 7.000001: other_event: target_id=0"]
    cols = tracepoint.parse_block("\n".join(lines) + "\n", missing_age=-1)
    expected = [p for p in map(tracepoint.parse_line, lines) if p is not None]
    assert len(cols) == len(expected) > 0
    for i, p in enumerate(expected):
        row = (int(cols.time_ns[i]), int(cols.target_id[i]), int(cols.nr_regions[i]),
               int(cols.start[i]), int(cols.end[i]), int(cols.nr_accesses[i]), int(cols.age[i]))
        assert row == (p.time_ns, p.target_id, p.nr_regions, p.start, p.end, p.nr_accesses,
                       -1 if p.age is None else p.age)


def test_grouper_rebuilds_every_aggregation_however_the_text_is_cut():
    rng = random.Random(2)
    for nr_targets in (1, 3):
        aggrs = _random_aggrs(rng, 12, nr_targets)
        text = "\n".join(_tracefs_lines(aggrs)) + "\n"
        g = KernelTraceGrouper(nr_targets, 5000, AGGR_US)
        events = [ev for block in _cut(text, rng) for ev in g.feed_block(block)]
        assert len(events) == len(aggrs) and g.dropped == 0
        for ev, targets in zip(events, aggrs, strict=True):
            _assert_same(ev, targets)
        ends = [ev.end_ns for ev in events]
        assert all(b - a == AGGR_US * 1000 for a, b in zip(ends, ends[1:], strict=False))
        assert all(ev.end_ns - ev.start_ns == AGGR_US * 1000 for ev in events)


def test_a_burst_cut_by_enabling_is_skipped_and_lost_events_drop_one_aggregation():
    rng = random.Random(3)
    aggrs = _random_aggrs(rng, 6, 2)
    lines = _tracefs_lines(aggrs)
    per = [sum(len(r) for r in t) for t in aggrs]
    first_cut = per[0] // 2  # the tracepoint came on in the middle of aggregation 0
    lost_at = sum(per[:3]) + per[3] // 3  # one event of aggregation 3 never arrived
    kept = lines[first_cut:lost_at] + lines[lost_at + 1:]
    g = KernelTraceGrouper(2, 5000, AGGR_US)
    events = [ev for block in _cut("\n".join(kept) + "\n", rng) for ev in g.feed_block(block)]
    assert len(events) == 4 and g.dropped == 1
    for ev, targets in zip(events, [aggrs[1], aggrs[2], aggrs[4], aggrs[5]], strict=True):
        _assert_same(ev, targets)
