"""Inline-SVG chart geometry for the HTML reports: numbers in, rectangles, lines and texts out.

The geometry is computed here and the template emits the `<rect>`/`<line>`/`<text>` elements, so every
label goes through Jinja's autoescaping and the page needs no chart library, script, font or image.
A chart is a plain dict: {"width", "height", "rects", "lines", "texts"}; coordinates are SVG user units.
"""

from __future__ import annotations

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
