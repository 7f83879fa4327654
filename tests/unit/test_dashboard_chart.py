"""The overview's chart: bars as tall as their totals, parts stacked in order, gridlines at
whole numbers, a readable number of labels."""

from __future__ import annotations

import pytest

from opendispatch.dashboard.chart import Series, stacked_bars


def test_parts_stack_bottom_up_and_a_bar_is_as_tall_as_its_total() -> None:
    chart = stacked_bars(
        ["a", "b", "c"],
        [Series("completed", "completed", [8, 0, 3]), Series("error", "error", [2, 0, 1])],
    )
    assert chart.y_max == 10
    plot = chart.plot_bottom - chart.plot_top
    first, empty, third = chart.bars
    assert [p.css_class for p in first.parts] == ["completed", "error"]
    assert first.parts[0].y + first.parts[0].height == pytest.approx(chart.plot_bottom)
    assert first.parts[1].y + first.parts[1].height == pytest.approx(first.parts[0].y)
    assert first.parts[1].y == pytest.approx(chart.plot_top)  # 10 of 10: the full height
    assert sum(p.height for p in third.parts) == pytest.approx(plot * 4 / 10)
    assert empty.parts == ()
    assert first.parts[1].title == "a: 2 error"


@pytest.mark.parametrize(
    ("largest", "top", "ticks"),
    [
        (0, 1, [0, 1]),
        (3, 5, [0, 1, 2, 3, 4, 5]),
        (7, 10, [0, 2, 4, 6, 8, 10]),
        (180, 200, [0, 50, 100, 150, 200]),
        (2_000_001, 5_000_000, [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000]),
    ],
)
def test_the_scale_ends_on_a_round_number_with_whole_gridlines(
    largest: int, top: int, ticks: list[int]
) -> None:
    chart = stacked_bars(["x"], [Series("s", "s", [largest])])
    assert chart.y_max == top
    assert [value for _, value in chart.y_ticks] == ticks


def test_at_most_eight_labels_the_newest_always_among_them() -> None:
    chart = stacked_bars([f"{h:02d}:00" for h in range(24)], [Series("s", "s", [1] * 24)])
    labelled = [bar.label for bar in chart.bars if bar.labelled]
    assert len(labelled) == 8
    assert labelled[-1] == "23:00"
