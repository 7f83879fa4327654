"""Admission control: refuse a share of new workflows (503, `Retry-After`) before the server
falls behind, and just enough of them to keep it at capacity.

Without it, offered load beyond capacity is all accepted: every 202 is a promise, the work
queues in the database, the event loop spends more and more of its time on requests and less
on the work they created, and completions fall *below* capacity while failover latency grows
without bound (measured at 1.5x capacity: 455 completed/s against 606/s at 1x, the next send
starting 7.5 s after a rejection). Refusing a new workflow costs little and is honest: the
client retries a second later, and the work already accepted goes at full speed.

How much to refuse is a proportional-integral controller on queue delay, as PIE does for a
router's packets (RFC 8033): every `interval_s` the refused share moves by how far the delay
is above or below its target (the integral part: it settles where the delay sits at the
target) and by how fast the delay is growing (the proportional part: it reacts before the
queue is long). The delays are smoothed over about five intervals and each counts as at most
twice its target, and nothing is refused while they are under half their targets, so one late
claim (sends that were due while the server was down) or one pause of the loop refuses
nothing.

It replaced an on/off switch with hysteresis, which refused everything until the queues had
drained, let the loop idle, then accepted everything again. Measured with `bench/failover.py
e2e --rates 1500,2000 --seconds 15` (capacity about 1,000/s on that machine) at the same
100 ms target: the switch completed 1,002/s at 1.5x but 722/s at 2x, its loop 65 % busy;
this controller 995/s and 1,041/s, its loop 90-92 % busy, and 1,049/s over 45 s at 2x with
no growing backlog. The default target is 250 ms (`--max-queue-delay-ms`): on PostgreSQL a
claim's oldest send waits 40-130 ms well below capacity, and 100 ms refused work there.

The delays it watches, each relative to its target (the largest one counts):

- **sends**: how long a due send waited before a worker took it (the oldest of each claim),
  exactly the delay the failover promises to keep small;
- **provider statuses**: how long a status waited in the inbox before it was applied (the
  same target: a `rejected` applied late starts the next step late);
- **webhooks**: how long a new status webhook to a healthy receiver waited (never one held
  back by its own application's limit or its endpoint's backoff: a tenant's slow receiver is
  that tenant's affair, not a reason to refuse everyone);
- **loop lag**: how late the controller's own timer fires, for a loop that is stuck.

A queue nobody takes from for a few intervals counts as empty. A target of 0 switches that
signal off. Only new workflows are refused: reads, provider callbacks and the sandbox's
injections are not. Times are the runtime clock's (queue delays) and the loop's (lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

__all__ = ["AdmissionControl"]

log = logging.getLogger(__name__)

# Intervals a queue may go unclaimed before its delay counts as zero.
_QUIET_INTERVALS = 5
# A delay counts as at most this many times its target; each signal is smoothed by this.
_MAX_PRESSURE = 2.0
_SMOOTHING = 0.2
# Intervals without refusing before "caught up" is logged (and the next refusal warned of).
_CALM_INTERVALS = 50


class _Signal:
    """One delay relative to its target: the largest seen in each interval, smoothed over
    the intervals it was seen in."""

    __slots__ = ("last", "quiet", "seen_s", "target_s")

    def __init__(self, target_s: float) -> None:
        self.target_s = target_s
        self.seen_s: float | None = None
        self.last = 0.0  # smoothed, in targets
        self.quiet = 0

    def observe(self, delay_s: float) -> None:
        if self.target_s > 0 and (self.seen_s is None or delay_s > self.seen_s):
            self.seen_s = delay_s

    def take(self) -> float:
        """This interval's delay over target; a queue unclaimed for a while is empty."""
        if self.target_s <= 0:
            return 0.0
        if self.seen_s is None:
            self.quiet += 1
            if self.quiet >= _QUIET_INTERVALS:
                self.last += _SMOOTHING * (0.0 - self.last)
        else:
            self.quiet = 0
            latest = min(_MAX_PRESSURE, max(0.0, self.seen_s) / self.target_s)
            self.last += _SMOOTHING * (latest - self.last)
            self.seen_s = None
        return self.last


class AdmissionControl:
    def __init__(
        self,
        *,
        max_queue_delay_s: float = 0.25,
        max_webhook_delay_s: float = 1.0,
        max_loop_lag_s: float = 0.1,
        interval_s: float = 0.02,
        integral_gain: float = 0.02,
        proportional_gain: float = 0.2,
        chance: random.Random | None = None,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        """Each `max_*` is its signal's target; 0 switches it off (all 0: every workflow is
        accepted). The gains are per interval, for a delay measured in targets: a delay at
        twice its target adds `integral_gain` to the refused share each interval.
        `on_refused`: told of each workflow refused (the metrics)."""
        self._sends = _Signal(max_queue_delay_s)
        self._statuses = _Signal(max_queue_delay_s)
        self._webhooks = _Signal(max_webhook_delay_s)
        self._lag = _Signal(max_loop_lag_s)
        self._signals = (self._sends, self._statuses, self._webhooks, self._lag)
        self._interval_s = interval_s
        self._integral_gain = integral_gain
        self._proportional_gain = proportional_gain
        self._random = (chance or random.Random()).random
        self._on_refused = on_refused
        self._pressure = 0.0
        self._calm = _CALM_INTERVALS
        self.refused_share = 0.0
        self.refused = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return any(signal.target_s > 0 for signal in self._signals)

    def admit(self) -> bool:
        """May a new workflow be accepted now? Never refused while the delays are under half
        their targets (the share is still coming down then)."""
        if self.refused_share > 0 and self._pressure >= 0.5 and self._random() < self.refused_share:
            self.refused += 1
            self._on_refused()
            return False
        return True

    def observe_queue_delay(self, delay_s: float) -> None:
        """A claim of due sends: how long the oldest of them waited."""
        self._sends.observe(delay_s)

    def observe_inbox_delay(self, delay_s: float) -> None:
        """A claim of provider statuses: how long the oldest of them waited."""
        self._statuses.observe(delay_s)

    def observe_webhook_delay(self, delay_s: float) -> None:
        self._webhooks.observe(delay_s)

    def observe_loop_lag(self, lag_s: float) -> None:
        self._lag.observe(lag_s)

    def update(self) -> None:
        """One interval's step: move the refused share by where the delays are going."""
        # Each signal is smoothed over about five of the intervals it was seen in, and capped,
        # so that one late claim or one pause of the loop moves it little.
        pressure = max(signal.take() for signal in self._signals)
        share = self.refused_share + (
            self._integral_gain * (pressure - 1.0)
            + self._proportional_gain * (pressure - self._pressure)
        )
        self._pressure = pressure
        self.refused_share = min(1.0, max(0.0, share))
        if self.refused_share > 0:
            if self._calm >= _CALM_INTERVALS:
                log.warning(
                    "at capacity (sends wait %.0f ms, statuses %.0f ms, webhooks %.0f ms, "
                    "event loop %.0f ms behind): refusing a share of new workflows with 503",
                    *(signal.last * signal.target_s * 1000 for signal in self._signals),
                )
            self._calm = 0
        elif self._calm < _CALM_INTERVALS:
            self._calm += 1
            if self._calm == _CALM_INTERVALS:
                log.info("caught up: accepting every new workflow (%d refused)", self.refused)

    def start(self) -> None:
        if self.enabled and self._task is None:
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
        while True:
            expected = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self.observe_loop_lag(loop.time() - expected)
            self.update()
