"""Inline-SVG chart geometry for the HTML reports: numbers in, rectangles, lines and texts out.

The geometry is computed here and the template emits the `<rect>`/`<line>`/`<text>` elements, so every
label goes through Jinja's autoescaping and the page needs no chart library, script, font or image.
A chart is a plain dict: {"width", "height", "rects", "lines", "texts"}; coordinates are SVG user units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Chart = dict[str, Any]

LABEL_CHARS = 24  # longer row labels are cut in the chart; the full label stays in the bar's tooltip


def fmt_number(value: float) -> str:
    """Thousands separators for integers, three significant decimals at most for the rest."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.1f}"


def _chart(width: float, height: float) -> Chart:
    return {"width": round(width), "height": round(height), "rects": [], "lines": [], "texts": []}


def _rect(chart: Chart, x: float, y: float, width: float, height: float, cls: str, title: str) -> None:
    box = {"x": x, "y": y, "width": max(width, 0.0), "height": max(height, 0.0)}
    chart["rects"].append({k: round(v, 1) for k, v in box.items()} | {"cls": cls, "title": title})


def _line(chart: Chart, x1: float, y1: float, x2: float, y2: float, cls: str) -> None:
    chart["lines"].append({"x1": round(x1, 1), "y1": round(y1, 1), "x2": round(x2, 1), "y2": round(y2, 1), "cls": cls})


def _text(chart: Chart, x: float, y: float, text: str, anchor: str = "start", cls: str = "") -> None:
    chart["texts"].append({"x": round(x, 1), "y": round(y, 1), "text": text, "anchor": anchor, "cls": cls})


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def bar_chart(rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], width: int = 640) -> Chart | None:
    """Horizontal grouped bars: one group per row label, one bar per series (e.g. prompt vs response).

    Bars share one scale (the largest value), so groups compare at a glance. Returns None for no rows.
    """
    if not rows or not series:
        return None
    label_w, value_w, bar_h, gap = 160.0, 70.0, 14.0, 10.0
    legend_h = 22.0 if len(series) > 1 else 0.0
    group_h = bar_h * len(series) + gap
    peak = max((float(v) for _, values in rows for v in values), default=0.0) or 1.0
    plot_w = width - label_w - value_w
    chart = _chart(width, legend_h + group_h * len(rows) + gap / 2)
    for j, name in enumerate(series if legend_h else ()):
        _rect(chart, label_w + j * 110, 4, 12, 12, f"s{j}", name)
        _text(chart, label_w + j * 110 + 16, 14, name, cls="legend")
    for i, (label, values) in enumerate(rows):
        top = legend_h + i * group_h + gap / 2
        _text(chart, label_w - 8, top + bar_h * len(series) / 2 + 4, _short(str(label)), "end", "label")
        for j, value in enumerate(values):
            y, bar_w = top + j * bar_h, plot_w * float(value) / peak
            _rect(chart, label_w, y, bar_w, bar_h - 2, f"s{j}", f"{label} · {series[j]}: {fmt_number(value)}")
            _text(chart, label_w + bar_w + 4, y + bar_h - 4, fmt_number(value), cls="value")
    return chart


def histogram(
    edges: Sequence[float],
    counts: Sequence[int],
    marker: float | None = None,
    marker_label: str = "truncation",
    width: int = 640,
    height: int = 230,
) -> Chart | None:
    """Vertical bars over bin edges, with an optional vertical marker line (e.g. the truncation limit).

    The x range widens to include the marker, so a limit beyond the longest row is still drawn. Bins that
    start at or past the marker get class "over". Returns None when there are no bins or a value is not a number.
    """
    n = min(len(counts), len(edges) - 1)
    if n <= 0 or not all(isinstance(v, (int, float)) for v in [*edges[: n + 1], *counts[:n]]):
        return None
    left, right, top, bottom = 56.0, 20.0, 30.0, 40.0
    lo = float(edges[0])
    hi = max(float(edges[n]), float(marker) if marker is not None else lo)
    span = (hi - lo) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((float(c) for c in counts[:n]), default=0.0) or 1.0

    def x_of(value: float) -> float:
        return left + (min(max(float(value), lo), hi) - lo) / span * plot_w

    chart = _chart(width, height)
    base = top + plot_h
    for i in range(n):
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        bar_h = plot_h * float(counts[i]) / peak
        over = marker is not None and float(edges[i]) >= float(marker)
        title = f"{fmt_number(edges[i])}–{fmt_number(edges[i + 1])}: {fmt_number(counts[i])} rows"
        _rect(chart, x0 + 0.5, base - bar_h, x1 - x0 - 1, bar_h, "over" if over else "s0", title)
    _line(chart, left, base, left + plot_w, base, "axis")
    _line(chart, left, top, left, base, "axis")
    _text(chart, left - 6, top + 4, fmt_number(peak), "end", "tick")
    _text(chart, left - 6, base, "0", "end", "tick")
    for value in (lo, lo + span / 2, hi):
        _text(chart, x_of(value), base + 16, fmt_number(round(value)), "middle", "tick")
    _text(chart, left + plot_w / 2, height - 4, "tokens per row", "middle", "axis-label")
    if marker is not None:
        mx = x_of(marker)
        _line(chart, mx, top - 12, mx, base, "marker")
        anchor = "end" if mx > left + plot_w * 0.7 else "start"
        _text(
            chart,
            mx + (-4 if anchor == "end" else 4),
            top - 14,
            f"{marker_label} ({fmt_number(marker)})",
            anchor,
            "marker",
        )
    return chart


def funnel(steps: Sequence[tuple[str, int, int]], width: int = 640) -> Chart | None:
    """One centred bar per stage, scaled to the widest input: kept rows solid, rejected rows as light flanks.

    `steps` holds (stage name, rows_in, rows_out). Returns None for no steps.
    """
    if not steps:
        return None
    label_w, value_w, bar_h, gap = 130.0, 150.0, 20.0, 8.0
    peak = float(max(max(rows_in, rows_out) for _, rows_in, rows_out in steps)) or 1.0
    plot_w = width - label_w - value_w
    centre = label_w + plot_w / 2
    chart = _chart(width, len(steps) * (bar_h + gap) + gap)
    for i, (name, rows_in, rows_out) in enumerate(steps):
        y = gap + i * (bar_h + gap)
        in_w, out_w = plot_w * rows_in / peak, plot_w * rows_out / peak
        dropped = rows_in - rows_out
        if dropped:
            _rect(chart, centre - in_w / 2, y, in_w, bar_h, "rejected", f"{name}: {fmt_number(dropped)} rejected")
        _rect(chart, centre - out_w / 2, y, out_w, bar_h, "s0", f"{name}: {fmt_number(rows_out)} kept")
        _text(chart, label_w - 8, y + bar_h / 2 + 4, _short(name), "end", "label")
        note = f"{fmt_number(rows_out)} kept" + (f" · −{fmt_number(dropped)}" if dropped else "")
        _text(chart, label_w + plot_w + 8, y + bar_h / 2 + 4, note, cls="value")
    return chart


PALETTE = 6  # line series cycle through CSS classes l0..l5


def _nice_axis(lo: float, hi: float, count: int = 5, whole: bool = False) -> tuple[float, float, list[float]]:
    """Round the range out to a 1/2/2.5/5 x 10^k step so tick labels read cleanly; `whole` keeps the step a
    whole number (for steps and epochs counted in units)."""
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    if whole:
        step = float(max(1, math.ceil(step)))
    start, stop = math.floor(lo / step) * step, math.ceil(hi / step) * step
    ticks = [start + i * step for i in range(round((stop - start) / step) + 1)]
    return start, stop, [round(t, 12) for t in ticks]


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    x_label: str = "step",
    y_label: str = "loss",
    markers: Sequence[tuple[str, float, float]] = (),
    width: int = 640,
    height: int = 260,
) -> Chart | None:
    """Lines over a shared x axis (e.g. train and eval loss by step), with a legend and optional labelled markers.

    Series with few points also get a dot per point (with a tooltip). Non-finite values are skipped.
    Returns None when no series has a point.
    """
    clean = [
        (str(name), [(float(x), float(y)) for x, y in points if _finite(x) and _finite(y)]) for name, points in series
    ]
    clean = [(name, points) for name, points in clean if points]
    if not clean:
        return None
    marks = [(str(label), float(x), float(y)) for label, x, y in markers if _finite(x) and _finite(y)]
    xs = [x for _, points in clean for x, _ in points] + [x for _, x, _ in marks]
    ys = [y for _, points in clean for _, y in points] + [y for _, _, y in marks]
    legend = _legend_slots([name for name, _ in clean], 104.0, width - 20.0)
    left, right, top, bottom = 64.0, 20.0, 30.0 + 16 * max(row for _, row in legend), 40.0
    x_lo, x_hi, x_ticks = _nice_axis(min(xs), max(xs), 6, whole=all(x.is_integer() for x in xs))
    y_lo, y_hi, y_ticks = _nice_axis(min(ys), max(ys), 4)
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w, top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    chart = _chart(width, height) | {"paths": [], "dots": []}
    for tick in y_ticks:
        _line(chart, left, at(x_lo, tick)[1], left + plot_w, at(x_lo, tick)[1], "grid")
        _text(chart, left - 6, at(x_lo, tick)[1] + 4, fmt_number(tick), "end", "tick")
    for tick in x_ticks:
        _text(chart, at(tick, y_lo)[0], top + plot_h + 16, fmt_number(tick), "middle", "tick")
    _line(chart, left, top + plot_h, left + plot_w, top + plot_h, "axis")
    _text(chart, left + plot_w / 2, height - 4, x_label, "middle", "axis-label")
    _text(chart, 4, 16, y_label, cls="axis-label")
    for j, (name, points) in enumerate(clean):
        cls = f"l{j % PALETTE}"
        legend_x, legend_y = legend[j][0], 12 + 16 * legend[j][1]
        _line(chart, legend_x, legend_y, legend_x + 18, legend_y, cls)
        _text(chart, legend_x + 24, legend_y + 4, _short(name), cls="legend")
        xy = [at(x, y) for x, y in points]
        chart["paths"].append({"points": " ".join(f"{px:.1f},{py:.1f}" for px, py in xy), "cls": cls, "title": name})
        if len(points) <= 60:
            for (x, y), (px, py) in zip(points, xy):
                title = f"{name} · {x_label} {fmt_number(x)}: {fmt_number(y)}"
                chart["dots"].append({"cx": round(px, 1), "cy": round(py, 1), "r": 3, "cls": cls, "title": title})
    for label, x, y in marks:
        px, py = at(x, y)
        chart["dots"].append(
            {
                "cx": round(px, 1),
                "cy": round(py, 1),
                "r": 6,
                "cls": "marker",
                "title": f"{label} · {x_label} {fmt_number(x)}: {fmt_number(y)}",
            }
        )
        _text(chart, px - 9, py - 9, label, "end", "marker")
    return chart


def _legend_slots(names: Sequence[str], start: float, stop: float) -> list[tuple[float, int]]:
    """(x, line) of each legend entry: entries sit side by side, sized by their label, wrapping at `stop`."""
    slots, x, row = [], start, 0
    for name in names:
        entry = 24 + len(_short(name)) * 6.5 + 18  # swatch, label at ~6.5 units a character, gap
        if x > start and x + entry > stop:
            x, row = start, row + 1
        slots.append((x, row))
        x += entry
    return slots


def interval_glyph(low: float, high: float, mid: float, cls: str, width: int = 120, height: int = 18) -> Chart:
    """A tiny forest-plot cell: the interval as a bar, the point estimate as a tick, zero as a dashed line."""
    reach = max(abs(low), abs(high), abs(mid)) * 1.1 or 1.0
    centre, half = width / 2, width / 2 - 4

    def x_of(value: float) -> float:
        return centre + value / reach * half

    chart = _chart(width, height)
    _line(chart, centre, 1, centre, height - 1, "zero")
    _rect(chart, x_of(min(low, high)), height / 2 - 3, abs(x_of(high) - x_of(low)), 6, cls, f"[{low:.3g}, {high:.3g}]")
    _line(chart, x_of(mid), 2, x_of(mid), height - 2, f"mid {cls}")
    return chart


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
