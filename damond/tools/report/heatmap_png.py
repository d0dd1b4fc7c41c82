"""The heatmap as an image (PNG, or SVG/PDF/JPEG by the file's extension) with matplotlib.

Same orientation as the terminal map: address left to right, time top to bottom, brighter is
hotter (``inferno``: black for no access, yellow for the hottest cell, grey where nothing was
monitored). Where gaps between monitored ranges were cut out, a dashed line marks the cut.
The figure has a fixed size (:data:`SIZE_PX`) and a fixed axes box, so scripts and tests can
find a cell's pixels (:func:`axes_box_px`). Only the Agg backend is used: no display needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from damond.formats.damo.units import format_sz
from damond.tools.report.heatmap import Heatmap
from damond.tools.report.source import ReportError

SIZE_PX = (1000, 700)
DPI = 100
#: axes and colour bar boxes, as figure fractions (left, bottom, width, height)
AXES_BOX = (0.11, 0.20, 0.70, 0.70)
COLORBAR_BOX = (0.85, 0.20, 0.025, 0.70)
FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")
MIN_TICK_GAP = 0.09  # of the axis width: closer address labels would overlap


@dataclass(frozen=True)
class PixelBox:
    """The heatmap's pixels in the image: columns ``left..right``, rows ``top..bottom``."""

    left: float
    top: float
    right: float
    bottom: float


def axes_box_px() -> PixelBox:
    left, bottom, width, height = AXES_BOX
    w, h = SIZE_PX
    return PixelBox(left * w, (1 - bottom - height) * h, (left + width) * w, (1 - bottom) * h)


def _address_ticks(hm: Heatmap) -> tuple[list[float], list[str]]:
    """Ticks at each drawn range's start (and the last one's end), a few more inside a single
    range; labels that would overlap are dropped."""
    total = hm.total_bytes
    points: list[tuple[float, int]] = []
    offset = 0
    for s, e in hm.ranges:
        points.append((offset, s))
        offset += e - s
    points.append((total, hm.ranges[-1][1]))
    if len(hm.ranges) == 1:
        s, _ = hm.ranges[0]
        align = 1 << 20 if total >= 8 << 20 else 4096
        inner = [(s + int(total * i / 4)) // align * align for i in range(1, 4)]
        points[1:1] = [(float(a - s), a) for a in inner if s < a]
    ticks: list[float] = []
    labels: list[str] = []
    for x, addr in points:
        if ticks and x - ticks[-1] < MIN_TICK_GAP * total:
            if x == total:  # keep the right edge rather than the label before it
                ticks.pop()
                labels.pop()
            else:
                continue
        ticks.append(x)
        labels.append(f"{addr:#x}")
    return ticks, labels


def save(hm: Heatmap, path: str, title: str) -> None:
    """Write the image; the format comes from the extension."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise ReportError(f"unsupported image type {ext!r} (use one of {', '.join(FORMATS)})")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(AXES_BOX)
    cax = fig.add_axes(COLORBAR_BOX)
    import matplotlib

    cmap = matplotlib.colormaps["inferno"].with_extremes(bad="#9a9a9a")
    top = float(np.nanmax(hm.values)) if np.isfinite(hm.values).any() else 0.0
    t0 = (hm.t0_ns - hm.base_ns) / 1e9
    t1 = (hm.t1_ns - hm.base_ns) / 1e9
    image = ax.imshow(np.ma.masked_invalid(hm.values), cmap=cmap, vmin=0.0,
                      vmax=top if top > 0 else 1.0, aspect="auto", interpolation="nearest",
                      extent=(0.0, float(hm.total_bytes), t1, t0))
    offset = 0
    for s, e in hm.ranges[:-1]:
        offset += e - s
        ax.axvline(offset, color="white", linestyle="--", linewidth=1.0)
    ticks, labels = _address_ticks(hm)
    ax.set_xticks(ticks, labels, rotation=25, ha="right", fontsize=8)
    ax.set_xlim(0.0, float(hm.total_bytes))
    if len(hm.ranges) > 1:
        xlabel = (f"address: {len(hm.ranges)} monitored ranges, "
                  f"{format_sz(hm.total_bytes, False)} (dashed: gaps cut out)")
    else:
        xlabel = f"address ({format_sz(hm.total_bytes, False)})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("time (s)")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, cax=cax)
    bar.set_label("access rate (%)" if hm.unit == "%" else "accesses (samples per aggregation)")
    try:
        fig.savefig(path, dpi=DPI, format="jpeg" if ext == "jpg" else ext)
    except OSError as e:
        raise ReportError(f"cannot write {path}: {e.strerror or e}") from None
