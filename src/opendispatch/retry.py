"""When to try failed work again (webhooks, sends): exponential backoff, equal jitter.

A pure function of (policy, attempts, first attempt time, now, jitter): no clock, no randomness.
The caller reads the time and draws `jitter` (uniform in [0, 1)), so tests drive both and a
delivery's schedule can be replayed exactly. The store then only needs "due at" per webhook.

Why equal jitter (`delay/2 + jitter * delay/2`) and not full jitter (`jitter * delay`): it
spreads a burst of retries to a receiver that came back (so they do not all arrive in the same
millisecond) while still promising the receiver at least half the backoff to recover.

Why a give-up period measured from the *first* attempt rather than a maximum attempt count: what
the user cares about is how stale a status may be when it finally arrives, and a count would
mean a different age for every `max_delay_ms`. A webhook whose next attempt would fall after the
period is dead.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy", "backoff_ceiling_ms", "next_attempt_at"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Defaults: 1 s, 2 s, 4 s ... capped at 5 minutes, for at most one day."""

    first_delay_ms: int = 1000
    max_delay_ms: int = 300_000
    give_up_after_ms: int = 86_400_000

    def __post_init__(self) -> None:
        if self.first_delay_ms < 1:
            raise ValueError("first_delay_ms must be at least 1")
        if self.max_delay_ms < self.first_delay_ms:
            raise ValueError("max_delay_ms must be at least first_delay_ms")
        if self.give_up_after_ms < 0:
            raise ValueError("give_up_after_ms must not be negative")


def backoff_ceiling_ms(policy: RetryPolicy, *, attempts: int) -> int:
    """The un-jittered delay after `attempts` failures: `first * 2**(attempts-1)`, capped.

    The exponent is bounded by the cap's bit length (past it the cap wins anyway, since
    `first_delay_ms >= 1`), so a webhook that failed a million times costs no big integers.
    """
    if attempts < 1:
        raise ValueError("attempts counts failed attempts and starts at 1")
    exponent = min(attempts - 1, policy.max_delay_ms.bit_length())
    return min(policy.first_delay_ms << exponent, policy.max_delay_ms)


def next_attempt_at(
    policy: RetryPolicy,
    *,
    attempts: int,
    first_attempt_at_ms: int,
    now_ms: int,
    jitter: float,
) -> int | None:
    """The time (Unix ms) of the next attempt after `attempts` failures, or None to give up.

    The wait lies in `[ceiling/2, ceiling]`. None when the next attempt would come after
    `first_attempt_at_ms + give_up_after_ms`; an attempt exactly at that instant still happens.
    """
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be in [0, 1)")
    ceiling = backoff_ceiling_ms(policy, attempts=attempts)
    half = ceiling // 2
    wait_ms = half + int(jitter * (ceiling - half))
    due_at = now_ms + wait_ms
    if due_at > first_attempt_at_ms + policy.give_up_after_ms:
        return None
    return due_at
