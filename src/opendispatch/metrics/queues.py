"""Queue depths for `GET /metrics`, read from the database when it is scraped.

Kept nowhere in memory: what waits (sends, deadlines, webhooks, dead letters) is in the
database, which every process on one PostgreSQL shares, so each reports the same numbers,
and a restarted process reports them at once. One statement counts them all
(`queue_counts`), each count walking only the partial index of the rows it counts.

A count costs what its queue holds: measured at 1M workflows (100,000 open) and 2M webhooks
(857,000 dead), 1-15 ms per count and 50 ms (SQLite) to 100 ms (PostgreSQL) for the dead
letters, which pile up while a receiver stays down. So:

- the counts run aside: on PostgreSQL on a pooled connection, on SQLite on a thread with its
  own connection (reads otherwise run on the event loop, and every request would wait);
- they are read at most once a second, and at most 1 % of the time: after a read that took
  50 ms the next comes 5 s later, earlier scrapes getting the same figures (with their age,
  `opendispatch_queue_depths_age_seconds`); scrapes at the same moment share one read.

A read that fails leaves the depths out of the scrape (the counters are still served) rather
than serve stale ones as fresh; the failure is logged once, and its recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from opendispatch.errors import StoreError
from opendispatch.runtime.clock import Clock
from opendispatch.store.database import DatabaseStore
from opendispatch.store.records import QueueCounts

__all__ = ["QueueDepths"]

log = logging.getLogger(__name__)

_MIN_INTERVAL_MS = 1_000
_MAX_SHARE = 0.01  # of the time spent counting, at most

# (metric, help, field of QueueCounts)
_GAUGES = (
    ("opendispatch_sends_pending", "Steps waiting to be handed to a provider: due now, or "
     "retrying later.", "sends_pending"),
    ("opendispatch_sends_due", "Steps due to be handed to a provider now and not taken yet: "
     "the send backlog.", "sends_due"),
    ("opendispatch_sends_in_flight", "Steps with a provider now (claimed by a process).",
     "sends_in_flight"),
    ("opendispatch_timers_pending", "Open workflows waiting on their step's deadline.",
     "timers_pending"),
    ("opendispatch_timers_due", "Deadlines passed and not acted on yet: the timer backlog.",
     "timers_due"),
    ("opendispatch_webhooks_due", "Webhooks due for delivery now and not under way: the "
     "webhook backlog (those waiting to be retried later are not counted).", "webhooks_due"),
    ("opendispatch_webhooks_dead", "Webhooks given up on (dead letters), until replayed or "
     "deleted by retention.", "webhooks_dead"),
)  # fmt: skip


class QueueDepths(Collector):
    """The queue depths as a prometheus_client collector: `refresh()` (async) reads them,
    `collect()` (what the registry calls as it renders) serves the last read."""

    def __init__(self, store: DatabaseStore, clock: Clock, registry: CollectorRegistry) -> None:
        self._store = store
        self._clock = clock
        self._counts: QueueCounts | None = None
        self._read_at_ms = 0
        self._next_read_ms = 0
        self._reading: asyncio.Future[None] | None = None
        self._failing = False
        registry.register(self)

    async def refresh(self) -> None:
        """Read the depths unless the last read is recent enough (see the module)."""
        now_ms = self._clock.now_ms()
        if self._counts is not None and self._read_at_ms <= now_ms < self._next_read_ms:
            return
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read(now_ms))
        # Shielded: a scraper that goes away does not cancel the read the others wait for.
        await asyncio.shield(self._reading)

    async def _read(self, now_ms: int) -> None:
        started = time.perf_counter()
        try:
            counts = await self._store.queue_counts(now_ms)
        except StoreError as exc:
            self._counts = None
            if not self._failing:
                log.warning("metrics: cannot read the queue depths: %s", exc)
            self._failing = True
            return
        finally:
            self._reading = None
        if self._failing:
            log.info("metrics: the queue depths can be read again")
            self._failing = False
        took_ms = (time.perf_counter() - started) * 1000
        self._counts = counts
        self._read_at_ms = now_ms
        self._next_read_ms = now_ms + max(_MIN_INTERVAL_MS, int(took_ms / _MAX_SHARE))

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts = self._counts
        if counts is None:
            return
        for name, help_text, field in _GAUGES:
            yield GaugeMetricFamily(name, help_text, value=getattr(counts, field))
        yield GaugeMetricFamily(
            "opendispatch_queue_depths_age_seconds",
            "How long ago the queue depths were read from the database.",
            value=max(0, self._clock.now_ms() - self._read_at_ms) / 1000,
        )
