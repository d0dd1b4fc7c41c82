"""A small synthetic recording with known numbers, for golden-output tests.

One target, 24 aggregations of 100 ms (sample 5 ms, aggr 100 ms: 20 samples each) from 1 s:

* range A, [0x10000, 0x50000): its first half accessed in every sample (100 %), its second
  half never;
* range B, [0x1000000, 0x1040000), far away: its first half idle for 1.2 s, then accessed half
  of the time (50 %); its second half at 30 % throughout.
"""

from __future__ import annotations

import numpy as np

from damond.core.events import AggregationEvent, TargetSnapshot
from damond.formats.damo.record import RecordWriter

KiB = 1024
HOT = (0x10000, 0x30000)
COLD = (0x30000, 0x50000)
WARM = (0x1000000, 0x1020000)
STEADY = (0x1020000, 0x1040000)
NR_AGGREGATIONS = 24
START_NS = 1_000_000_000
AGGR_NS = 100_000_000


def events(kdamond: int = 0, targets: int = 1,
           nr_snapshots: int = NR_AGGREGATIONS) -> list[AggregationEvent]:
    out = []
    for i in range(nr_snapshots):
        warm = 10 if i >= NR_AGGREGATIONS // 2 else 0
        warm_age = i - NR_AGGREGATIONS // 2 if warm else i
        regions = [(*HOT, 20, i), (*COLD, 0, i), (*WARM, warm, warm_age), (*STEADY, 6, i)]
        snaps = []
        for t in range(targets):
            s, e, n, a = (np.array(c, dtype=dt) for c, dt in zip(
                zip(*regions, strict=True), (np.uint64, np.uint64, np.int64, np.int64),
                strict=True))
            snaps.append(TargetSnapshot(t, s + np.uint64(t << 32), e + np.uint64(t << 32), n, a))
        out.append(AggregationEvent(kdamond, 0, START_NS + i * AGGR_NS,
                                    START_NS + (i + 1) * AGGR_NS, 5_000, 100_000, tuple(snaps)))
    return out


def write(path, output_type: str = "json_compressed", targets: int = 1,
          nr_snapshots: int = NR_AGGREGATIONS) -> str:
    with RecordWriter(path, output_type, 60.0) as w:
        for ev in events(targets=targets, nr_snapshots=nr_snapshots):
            w.add(ev)
    return str(path)
