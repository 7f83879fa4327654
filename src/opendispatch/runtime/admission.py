"""Admission control: refuse new workflows (503, `Retry-After`) before the server falls behind.

Without it, offered load beyond capacity is all accepted: every 202 is a promise, the work
queues in the database, the event loop spends more and more of its time on requests and less
on the work they created, and completions fall *below* capacity while failover latency grows
without bound (measured at 1.5x capacity: 455 completed/s against 606/s at 1x, the next send
starting 7.5 s after a rejection). Refusing a new workflow costs little and is honest: the
client retries a second later, and the work already accepted goes at full speed.

Two signals, each smoothed (an exponential moving average over about a second):

- **queue delays**: how long a due send waited before a worker took it (the oldest of each
  claim), and likewise a new status webhook to a healthy receiver (never one held back by
  its own application's limit or its endpoint's backoff: a tenant's slow receiver is that
  tenant's affair, not a reason to refuse everyone). The event loop stays responsive when the
  server is over capacity (each callback is short), but the work piles up in the database;
  this is where it shows, and the send delay is exactly the delay the failover promises to
  keep small. A queue nobody takes from for a while counts as empty.
- **loop lag**: how late a timer set for every `interval_s` fires, for a loop that is stuck.

Refusing starts above a limit and stops below half of it (hysteresis), so the server does not
flap. Only new workflows are refused: reads, provider callbacks and the sandbox's injections
are not. Times are the runtime clock's (queue delay) and the loop's (lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ["AdmissionControl"]

log = logging.getLogger(__name__)


class AdmissionControl:
    def __init__(
        self,
        *,
        max_queue_delay_s: float = 0.25,
        max_webhook_delay_s: float = 1.0,
        max_loop_lag_s: float = 0.1,
        interval_s: float = 0.02,
        smoothing: float = 0.05,
    ) -> None:
        """A limit of 0 switches that signal off (both 0: every workflow is accepted)."""
        self.max_queue_delay_s = max_queue_delay_s
        self.max_webhook_delay_s = max_webhook_delay_s
        self.max_loop_lag_s = max_loop_lag_s
        self._interval_s = interval_s
        self._smoothing = smoothing
        self.queue_delay_s = 0.0
        self.webhook_delay_s = 0.0
        self.loop_lag_s = 0.0
        self.refusing = False
        self.refused = 0
        self._queue_seen = False
        self._webhooks_seen = False
        self._task: asyncio.Task[None] | None = None

    def admit(self) -> bool:
        """May a new workflow be accepted now?"""
        if self.refusing:
            self.refused += 1
            return False
        return True

    def observe_queue_delay(self, delay_s: float) -> None:
        self._queue_seen = True
        self.queue_delay_s += self._smoothing * (max(0.0, delay_s) - self.queue_delay_s)
        self._decide()

    def observe_webhook_delay(self, delay_s: float) -> None:
        self._webhooks_seen = True
        self.webhook_delay_s += self._smoothing * (max(0.0, delay_s) - self.webhook_delay_s)
        self._decide()

    def observe_loop_lag(self, lag_s: float) -> None:
        self.loop_lag_s += self._smoothing * (max(0.0, lag_s) - self.loop_lag_s)
        self._decide()

    def _decide(self) -> None:
        over = [
            (value, limit)
            for value, limit in (
                (self.queue_delay_s, self.max_queue_delay_s),
                (self.webhook_delay_s, self.max_webhook_delay_s),
                (self.loop_lag_s, self.max_loop_lag_s),
            )
            if limit > 0
        ]
        if not self.refusing and any(value > limit for value, limit in over):
            self.refusing = True
            log.warning(
                "at capacity (sends wait %.0f ms, webhooks %.0f ms, event loop %.0f ms "
                "behind): refusing new workflows with 503 until it catches up",
                self.queue_delay_s * 1000,
                self.webhook_delay_s * 1000,
                self.loop_lag_s * 1000,
            )
        elif self.refusing and all(value < limit / 2 for value, limit in over):
            self.refusing = False
            log.info("caught up: accepting new workflows again (%d refused)", self.refused)

    def start(self) -> None:
        limits = (self.max_loop_lag_s, self.max_queue_delay_s, self.max_webhook_delay_s)
        if any(limit > 0 for limit in limits) and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name="opendispatch-admission"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        quiet_sends = quiet_webhooks = 0
        while True:
            expected = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self.observe_loop_lag(loop.time() - expected)
            # Nothing taken from a queue for five ticks: nothing waits there (its delay decays).
            quiet_sends = 0 if self._queue_seen else quiet_sends + 1
            quiet_webhooks = 0 if self._webhooks_seen else quiet_webhooks + 1
            self._queue_seen = self._webhooks_seen = False
            if quiet_sends >= 5:
                self.observe_queue_delay(0.0)
            if quiet_webhooks >= 5:
                self.observe_webhook_delay(0.0)
            self._queue_seen = self._webhooks_seen = False
