"""The overview: what was accepted and how it ended, over a window of time; how often each
channel fails over; and what is waiting (sends, timers, webhooks)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from opendispatch.api.http import Request, Response
from opendispatch.auth.operators import Session
from opendispatch.dashboard.chart import Series, stacked_bars
from opendispatch.dashboard.web import Pages, query
from opendispatch.runtime.clock import Clock
from opendispatch.store.browse import Browse

__all__ = ["WINDOWS", "OverviewPage", "Window"]


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    title: str
    period_ms: int  # one bar
    periods: int
    label_format: str  # strftime of a bar's start, UTC


WINDOWS = {
    window.key: window
    for window in (
        Window("1h", "last hour", 5 * 60_000, 12, "%H:%M"),
        Window("24h", "last 24 hours", 3_600_000, 24, "%H:00"),
        Window("7d", "last 7 days", 6 * 3_600_000, 28, "%a %Hh"),
    )
}
_DEFAULT_WINDOW = "24h"


class OverviewPage:
    def __init__(self, pages: Pages, browse: Browse, clock: Clock) -> None:
        self._pages = pages
        self._browse = browse
        self._clock = clock

    async def show(self, request: Request, session: Session) -> Response:
        window = WINDOWS.get(query(request, "window") or "", WINDOWS[_DEFAULT_WINDOW])
        now_ms = self._clock.now_ms()
        # Whole periods, the last one under way: bars line up with the clock.
        end_ms = (now_ms // window.period_ms + 1) * window.period_ms
        bounds = [end_ms - window.period_ms * (window.periods - i) for i in range(window.periods)]
        bounds.append(end_ms)
        periods = await self._browse.outcomes(bounds)
        failover = await self._browse.failover_by_channel(since_ms=bounds[0])
        queues = await self._browse.queues()
        labels = [
            time.strftime(window.label_format, time.gmtime(p.since_ms / 1000)) for p in periods
        ]
        chart = stacked_bars(
            labels,
            [
                Series("completed", "completed", [p.completed for p in periods]),
                Series("error", "error", [p.error for p in periods]),
                Series("cancelled", "cancelled", [p.cancelled for p in periods]),
                Series("in progress", "in_progress", [p.in_progress for p in periods]),
            ],
        )
        totals = {
            "accepted": sum(p.accepted for p in periods),
            "completed": sum(p.completed for p in periods),
            "error": sum(p.error for p in periods),
            "cancelled": sum(p.cancelled for p in periods),
            "in_progress": sum(p.in_progress for p in periods),
        }
        return self._pages.page(
            "overview.html",
            session=session,
            section="overview",
            window=window,
            windows=WINDOWS.values(),
            chart=chart,
            periods=list(zip(labels, periods, strict=True)),
            totals=totals,
            failover=failover,
            queues=queues,
            since_ms=bounds[0],
        )
