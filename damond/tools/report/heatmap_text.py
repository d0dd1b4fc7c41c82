"""The heatmap as text: a grid of one character per cell, then damo-like footer lines saying
what the axes and characters mean (``# access_frequency``, ``# x-axis``, ``# y-axis``,
``# resolution``), or damo's ``raw`` triplets for plotting tools.

Levels are relative to the hottest cell: ``0`` is no access, ``9`` the top tenth up to the
hottest (damo scales from the coldest cell instead, which makes a uniformly warm map look
hot). Cells nothing was monitored in are blank.
"""

from __future__ import annotations

import numpy as np

from damond.formats.damo.units import format_sz, format_time_ns
from damond.tools.report.heatmap import Heatmap

STYLES = {"digits": "0123456789", "shades": ".,:-=+*#%@"}
#: rounding slack: a cell at exactly 30 % of the hottest is level 3, whatever the float error
_EPSILON = 1e-9


def levels(hm: Heatmap) -> np.ndarray:
    """0-9 per cell (-1 where nothing was monitored)."""
    top = np.nanmax(hm.values) if np.isfinite(hm.values).any() else 0.0
    out = np.full(hm.values.shape, -1, dtype=np.int64)
    known = np.isfinite(hm.values)
    if top > 0:
        out[known] = np.minimum(9, (hm.values[known] * 10 / top + _EPSILON).astype(np.int64))
    else:
        out[known] = 0
    return out


def _value(value: float, unit: str) -> str:
    return f"{value:.1f} %" if unit == "%" else f"{value:.1f}"


def footer(hm: Heatmap, style: str = "digits") -> list[str]:
    top = float(np.nanmax(hm.values)) if np.isfinite(hm.values).any() else 0.0
    what = "access rate" if hm.unit == "%" else "samples with access per aggregation"
    lines = [f"# access_frequency: {STYLES[style]} ({_value(0, hm.unit)} to "
             f"{_value(top, hm.unit)} {what}; blank: not monitored)"]
    size = format_sz(hm.total_bytes, False)
    nr = len(hm.monitored)
    if len(hm.ranges) == 1:
        s, e = hm.ranges[0]
        note = {"hottest": f"; the hottest of {nr} monitored ranges",
                "zoom": "; the monitored part of --address-range"}.get(hm.selection, "")
        lines.append(f"# x-axis: space [{s:#x}, {e:#x}) ({size}{note})")
    else:
        lines.append(f"# x-axis: space {size} in {len(hm.ranges)} monitored ranges, "
                     "the gaps between them cut out:")
        for (s, e), cols in zip(hm.ranges, hm.range_columns(), strict=True):
            where = (f"columns {cols.start}-{cols.stop - 1}" if len(cols) > 1
                     else f"column {cols.start}")
            lines.append(f"#   {where}: [{s:#x}, {e:#x}) ({format_sz(e - s, False)})")
    t0, t1 = hm.t0_ns - hm.base_ns, hm.t1_ns - hm.base_ns
    lines.append(f"# y-axis: time [{format_time_ns(t0, False)}, {format_time_ns(t1, False)}) "
                 f"({format_time_ns(t1 - t0, False)})")
    lines.append(f"# resolution: {hm.cols}x{hm.rows} ({format_sz(hm.bytes_per_col, False)} and "
                 f"{format_time_ns((t1 - t0) / hm.rows, False)} for each character)")
    return lines


def render(hm: Heatmap, style: str = "digits") -> str:
    chars = STYLES[style]
    grid = ["".join(" " if lv < 0 else chars[lv] for lv in row) for row in levels(hm).tolist()]
    return "\n".join(grid + footer(hm, style)) + "\n"


def render_raw(hm: Heatmap) -> str:
    """damo's ``--output raw``: ``<time ns> <address> <value>`` per cell, time relative to the
    recording's start, address of the cell's first byte (``nan`` where not monitored)."""
    lines = []
    row_ns = (hm.t1_ns - hm.t0_ns) / hm.rows
    starts = []
    for col in range(hm.cols):
        starts.append(_address_at(hm, col * hm.bytes_per_col))
    for r in range(hm.rows):
        t = int(hm.t0_ns - hm.base_ns + r * row_ns)
        for col, addr in enumerate(starts):
            lines.append(f"{t}\t{addr}\t{hm.values[r, col]:.6g}")
    return "\n".join(lines) + "\n"


def _address_at(hm: Heatmap, offset: float) -> int:
    for s, e in hm.ranges:
        if offset < e - s:
            return int(s + offset)
        offset -= e - s
    return hm.ranges[-1][1]
