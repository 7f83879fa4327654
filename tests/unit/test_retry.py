"""Retry timing is a pure function: backoff, cap, equal jitter and the give-up period."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opendispatch.retry import RetryPolicy, backoff_ceiling_ms, next_attempt_at

DEFAULT = RetryPolicy()
T0 = 1_700_000_000_000

policies = st.builds(
    lambda first, factor, period: RetryPolicy(
        first_delay_ms=first, max_delay_ms=first * factor, give_up_after_ms=period
    ),
    st.integers(1, 60_000),
    st.integers(1, 1000),
    st.integers(0, 10 * 86_400_000),
)
attempts = st.integers(1, 200)
jitters = st.floats(0.0, 1.0, exclude_max=True)


def test_default_backoff_doubles_from_one_second_to_five_minutes() -> None:
    ceilings = [backoff_ceiling_ms(DEFAULT, attempts=n) for n in range(1, 12)]
    assert ceilings == [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000] + [300000] * 2


def test_equal_jitter_waits_half_the_ceiling_at_least_and_all_of_it_at_most() -> None:
    at = {
        jitter: next_attempt_at(
            DEFAULT, attempts=3, first_attempt_at_ms=T0, now_ms=T0, jitter=jitter
        )
        for jitter in (0.0, 0.5, 0.999999)
    }
    assert at == {0.0: T0 + 2000, 0.5: T0 + 3000, 0.999999: T0 + 3999}


def test_gives_up_exactly_when_the_next_attempt_would_pass_the_period() -> None:
    policy = RetryPolicy(first_delay_ms=1000, max_delay_ms=1000, give_up_after_ms=10_000)
    # Wait is 500 ms with jitter 0: an attempt landing exactly on the deadline still happens.
    last = next_attempt_at(policy, attempts=9, first_attempt_at_ms=T0, now_ms=T0 + 9500, jitter=0)
    assert last == T0 + 10_000
    dead = next_attempt_at(policy, attempts=9, first_attempt_at_ms=T0, now_ms=T0 + 9501, jitter=0)
    assert dead is None


def test_a_webhook_failing_forever_dies_within_one_day_by_default() -> None:
    now, failures = T0, 1
    while True:
        due = next_attempt_at(
            DEFAULT, attempts=failures, first_attempt_at_ms=T0, now_ms=now, jitter=0.5
        )
        if due is None:
            break
        now, failures = due, failures + 1
    assert T0 + DEFAULT.give_up_after_ms - DEFAULT.max_delay_ms < now
    assert now <= T0 + DEFAULT.give_up_after_ms
    # Jitter 0.5 waits 3/4 of the ceiling: 9 doubling waits (0.75 s ... 192 s), then 225 s each
    # for the rest of the day; every scheduled retry failed too, and so did the first attempt.
    ramp_up_ms = sum(750 * 2**k for k in range(9))
    retries = 9 + (DEFAULT.give_up_after_ms - ramp_up_ms) // 225_000
    assert failures == 1 + retries == 392


@given(policies, attempts, st.integers(0, 10**7), jitters)
def test_the_wait_stays_within_jitter_bounds_and_never_exceeds_the_cap(
    policy: RetryPolicy, attempts: int, elapsed: int, jitter: float
) -> None:
    due = next_attempt_at(
        policy, attempts=attempts, first_attempt_at_ms=T0, now_ms=T0 + elapsed, jitter=jitter
    )
    ceiling = backoff_ceiling_ms(policy, attempts=attempts)
    assert ceiling <= policy.max_delay_ms
    if due is not None:
        wait = due - (T0 + elapsed)
        assert ceiling // 2 <= wait <= ceiling


@given(policies, attempts)
def test_the_backoff_ceiling_never_decreases(policy: RetryPolicy, attempts: int) -> None:
    assert backoff_ceiling_ms(policy, attempts=attempts) <= backoff_ceiling_ms(
        policy, attempts=attempts + 1
    )


@given(policies, attempts, st.integers(0, 20 * 86_400_000), jitters)
def test_gives_up_if_and_only_if_the_attempt_would_fall_after_the_period(
    policy: RetryPolicy, attempts: int, elapsed: int, jitter: float
) -> None:
    now = T0 + elapsed
    due = next_attempt_at(policy, attempts=attempts, first_attempt_at_ms=T0, now_ms=now, jitter=0.0)
    earliest = now + backoff_ceiling_ms(policy, attempts=attempts) // 2
    assert (due is None) == (earliest > T0 + policy.give_up_after_ms)
    jittered = next_attempt_at(
        policy, attempts=attempts, first_attempt_at_ms=T0, now_ms=now, jitter=jitter
    )
    if jittered is not None:
        assert jittered <= T0 + policy.give_up_after_ms


@given(policies, attempts, jitters)
def test_same_inputs_give_the_same_answer(
    policy: RetryPolicy, attempts: int, jitter: float
) -> None:
    def ask() -> int | None:
        return next_attempt_at(
            policy, attempts=attempts, first_attempt_at_ms=T0, now_ms=T0 + 5, jitter=jitter
        )

    assert ask() == ask()


def test_a_huge_attempt_count_is_capped_without_big_integers() -> None:
    assert backoff_ceiling_ms(DEFAULT, attempts=10**9) == DEFAULT.max_delay_ms


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2.0])
def test_jitter_outside_zero_to_one_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        next_attempt_at(DEFAULT, attempts=1, first_attempt_at_ms=T0, now_ms=T0, jitter=jitter)


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempts"):
        next_attempt_at(DEFAULT, attempts=0, first_attempt_at_ms=T0, now_ms=T0, jitter=0.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"first_delay_ms": 0},
        {"first_delay_ms": 2000, "max_delay_ms": 1000},
        {"give_up_after_ms": -1},
    ],
)
def test_nonsensical_policies_are_refused(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**fields)
