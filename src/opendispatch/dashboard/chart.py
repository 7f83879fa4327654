"""A stacked bar chart as plain geometry, which a template draws as inline SVG.

Drawn on the server, from numbers the page already has: no charting library, no script, and
the chart reads the same with JavaScript off. Each bar's parts carry a title (the browser
shows it on hover) and the page has the same figures in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Bar", "Chart", "Part", "Series", "stacked_bars"]


@dataclass(frozen=True, slots=True)
class Series:
    name: str  # shown in titles and the legend
    css_class: str  # its colour, from the stylesheet
    values: Sequence[int]  # one per bar


@dataclass(frozen=True, slots=True)
class Part:
    x: float
    y: float
    width: float
    height: float
    css_class: str
    title: str


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # shown under the bar when `labelled`
    x_center: float
    total: int
    parts: tuple[Part, ...]
    labelled: bool


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    plot_top: float
    plot_bottom: float
    plot_left: float
    y_max: int  # the value at the top of the plot
    y_ticks: tuple[tuple[float, int], ...]  # (y, value) of each gridline
    bars: tuple[Bar, ...]


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above `value` (at least 1)."""
    if value <= 1:
        return 1
    magnitude: int = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover (the loop always returns)


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    width: int = 760,
    height: int = 220,
    max_labels: int = 8,
) -> Chart:
    """Bars of `series` stacked bottom up in the order given, one bar per label."""
    left, right, top, bottom = 48.0, 8.0, 10.0, 26.0
    plot_bottom = height - bottom
    plot_height = plot_bottom - top
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    y_max = _nice_ceiling(max(totals, default=0))
    slot = (width - left - right) / max(1, len(labels))
    bar_width = max(1.0, slot * 0.75)
    every = max(1, math.ceil(len(labels) / max_labels))
    bars = []
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar_width) / 2
        base = plot_bottom
        parts = []
        for one in series:
            value = one.values[i]
            if value <= 0:
                continue
            part_height = value / y_max * plot_height
            base -= part_height
            parts.append(
                Part(x, base, bar_width, part_height, one.css_class, f"{label}: {value} {one.name}")
            )
        bars.append(
            Bar(
                label=label,
                x_center=x + bar_width / 2,
                total=totals[i],
                parts=tuple(parts),
                labelled=(len(labels) - 1 - i) % every == 0,
            )
        )
    # Gridlines at round numbers: y_max is 1, 2 or 5 x 10^n; 2 x 10^n in quarters, the others
    # in fifths (or in ones, below 5).
    steps = 4 if y_max >= 20 and str(y_max)[0] == "2" else min(5, y_max)
    ticks = tuple(
        (plot_bottom - plot_height * k / steps, y_max * k // steps) for k in range(steps + 1)
    )
    return Chart(
        width=width,
        height=height,
        plot_top=top,
        plot_bottom=plot_bottom,
        plot_left=left,
        y_max=y_max,
        y_ticks=ticks,
        bars=tuple(bars),
    )
