"""How fast each provider account is sent to, and when it is rested: pure state machines,
driven by the caller's clock (milliseconds in, decisions out), one of each per account.

`RatePacer` spaces sends at the account's rate (its provider's documented limit unless the
operator set `rate`). A 429 pauses the account (for the provider's `Retry-After`, or a backoff
of 1 s doubling to 60 s) and halves its pace; each send that goes through wins a twentieth of
the configured rate back. Nothing is dropped: a send that cannot start soon enough is handed
back to the store, due when the account frees up.

`CircuitBreaker` rests an account that keeps failing (5 failures in a row: unreachable, 5xx,
an answer lost, a provider-side refusal): the route skips it for a cool-down (10 s doubling
to 5 min), then lets one probe through; a probe that succeeds closes it again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["BreakerState", "CircuitBreaker", "RatePacer"]

_FIRST_PAUSE_MS: Final = 1_000
_MAX_PAUSE_MS: Final = 60_000


class RatePacer:
    def __init__(self, rate_per_s: float) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate_per_s = rate_per_s
        self.current_per_s = rate_per_s
        self._next_free_ms = 0.0
        self._paused_until_ms = 0.0
        self._throttles_in_a_row = 0

    def available_at_ms(self, now_ms: float) -> float:
        """When the next send could start."""
        return max(now_ms, self._next_free_ms, self._paused_until_ms)

    def reserve(self, now_ms: float, *, max_wait_ms: float) -> float | None:
        """Take the next slot if it starts within `max_wait_ms`: how long to wait for it, or
        None (leave the slot free: the caller tries another account, or later)."""
        start = self.available_at_ms(now_ms)
        if start - now_ms > max_wait_ms:
            return None
        self._next_free_ms = start + 1000.0 / self.current_per_s
        return start - now_ms

    def throttled(self, now_ms: float, *, retry_after_ms: int | None = None) -> None:
        """The provider answered 429: pause, and slow down. Answers to sends that left
        before the pause began say nothing new: they neither lengthen nor repeat it."""
        if now_ms < self._paused_until_ms:
            if retry_after_ms is not None:
                self._paused_until_ms = max(self._paused_until_ms, now_ms + retry_after_ms)
                self._next_free_ms = max(self._next_free_ms, self._paused_until_ms)
            return
        self._throttles_in_a_row += 1
        if retry_after_ms is None:
            retry_after_ms = min(
                _MAX_PAUSE_MS, _FIRST_PAUSE_MS * 2 ** (self._throttles_in_a_row - 1)
            )
        self._paused_until_ms = now_ms + retry_after_ms
        self._next_free_ms = max(self._next_free_ms, self._paused_until_ms)
        self.current_per_s = max(self.rate_per_s / 64, self.current_per_s / 2)

    def went_through(self) -> None:
        """A send the provider took (or refused for the message's own reasons)."""
        self._throttles_in_a_row = 0
        if self.current_per_s < self.rate_per_s:
            self.current_per_s = min(self.rate_per_s, self.current_per_s + self.rate_per_s / 20)

    def paused_until_ms(self) -> float:
        return self._paused_until_ms


class BreakerState(StrEnum):
    CLOSED = "closed"  # sending
    OPEN = "open"  # resting: skipped until its cool-down ends
    PROBING = "probing"  # one probe is out; the rest wait for its answer


_FAILURES_TO_OPEN: Final = 5
_FIRST_COOL_DOWN_MS: Final = 10_000
_MAX_COOL_DOWN_MS: Final = 300_000


class CircuitBreaker:
    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures_in_a_row = 0
        self.open_until_ms = 0
        self._cool_down_ms = _FIRST_COOL_DOWN_MS

    def allows(self, now_ms: int) -> bool:
        """Whether a send may go to this account now (taking the probe, when it is due)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now_ms >= self.open_until_ms:
            self.state = BreakerState.PROBING
            return True
        return False

    def reopens_at_ms(self, now_ms: int) -> int:
        """When `allows` may say yes again."""
        if self.state is BreakerState.OPEN:
            return max(now_ms, self.open_until_ms)
        if self.state is BreakerState.PROBING:
            return now_ms + 1_000  # the probe's answer decides; look again soon
        return now_ms

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures_in_a_row = 0
        self._cool_down_ms = _FIRST_COOL_DOWN_MS

    def failed(self, now_ms: int) -> bool:
        """Count a failure; True when it opens the breaker (for a log line)."""
        self.failures_in_a_row += 1
        if self.state is BreakerState.PROBING:
            self._open(now_ms, longer=True)
            return True
        if self.state is BreakerState.CLOSED and self.failures_in_a_row >= _FAILURES_TO_OPEN:
            self._open(now_ms, longer=False)
            return True
        return False

    def _open(self, now_ms: int, *, longer: bool) -> None:
        if longer:
            self._cool_down_ms = min(_MAX_COOL_DOWN_MS, self._cool_down_ms * 2)
        self.state = BreakerState.OPEN
        self.open_until_ms = now_ms + self._cool_down_ms
