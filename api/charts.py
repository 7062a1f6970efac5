"""Chart geometry for the server-rendered pages (inline SVG, no script, no CDN).

Python computes rectangles and ticks; the templates only draw them. Values are
integer minor units; labels are formatted with the currency's decimals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from api.finance_views import display_amount
from core.money import currency_exponent

PALETTE = ("#2f6fdf", "#e8873a", "#3aa76d", "#c0392b", "#8e5cc7", "#7f8c8d")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_labels: list[Tick] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    zero_y: float = 0.0
    empty: bool = False
    left: int = 78  # where the plot starts: room for the widest y label


def _nice_step(span: int, currency: str) -> int:
    """A round tick step (1, 2 or 5 times a power of ten, in whole currency units if possible)."""
    unit = 10 ** currency_exponent(currency)
    raw = max(span / 4, 1)
    step = 1
    while step * 10 <= raw:
        step *= 10
    for m in (1, 2, 5, 10):
        if step * m >= raw:
            step *= m
            break
    return max(step, unit) if span >= unit else step


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    currency: str,
    *,
    width: int = 640,
    height: int = 240,
) -> Chart:
    """Grouped bars, one group per label, one bar per series; negatives go below zero."""
    right, top, bottom = 10, 10, 28
    chart = Chart(width, height)
    chart.legend = [(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)]
    values = [v for _, vs in series for v in vs]
    if not labels or not values or not any(values):
        chart.empty = True
        return chart
    hi, lo = max(0, *values), min(0, *values)
    step = _nice_step(hi - lo, currency)
    hi = -(-hi // step) * step
    lo = (lo // step) * step
    plot_h = height - top - bottom

    def y_of(v: int) -> float:
        return top + (hi - v) * plot_h / (hi - lo)

    chart.zero_y = y_of(0)
    chart.y_ticks = [Tick(y_of(v), display_amount(v, currency)) for v in range(lo, hi + 1, step)]
    # 11 px text: about 6.5 px a character, and a gap before the axis.
    left = chart.left = max(78, 12 + round(6.5 * max(len(t.label) for t in chart.y_ticks)))
    plot_w = width - left - right
    group_w = plot_w / len(labels)
    bar_w = max(group_w * 0.8 / len(series), 1.0)
    for i, label in enumerate(labels):
        gx = left + i * group_w + group_w * 0.1
        chart.x_labels.append(Tick(left + (i + 0.5) * group_w, label))
        for j, (name, vs) in enumerate(series):
            v = vs[i]
            y0, y1 = sorted((y_of(0), y_of(v)))
            title = f"{label} {name}: {display_amount(v, currency)}"
            color = PALETTE[j % len(PALETTE)]
            chart.bars.append(Bar(gx + j * bar_w, y0, bar_w - 1, max(y1 - y0, 0.5), color, title))
    if len(labels) > 12:  # keep the axis readable: every n-th label
        every = -(-len(labels) // 12)
        chart.x_labels = chart.x_labels[::every]
    return chart


def hbar_chart(rows: Sequence[tuple[str, int, str]], *, width: int = 420, row_h: int = 26) -> Chart:
    """Horizontal bars: (label, value, value text); lengths relative to the largest value."""
    left, right = 120, 110
    chart = Chart(width, max(row_h * len(rows), row_h), left=left)
    top = max((v for _, v, _ in rows), default=0)
    if not rows or top <= 0:
        chart.empty = True
        return chart
    for i, (label, value, text) in enumerate(rows):
        w = (width - left - right) * value / top
        color = PALETTE[i % len(PALETTE)]
        chart.bars.append(Bar(left, i * row_h + 4, max(w, 1.0), row_h - 8, color, text))
        chart.y_ticks.append(Tick(i * row_h + row_h / 2, label))
    return chart
