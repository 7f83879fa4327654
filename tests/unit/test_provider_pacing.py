"""Per-account pacing and circuit breaking, driven by a clock in milliseconds."""

from __future__ import annotations

import pytest

from opendispatch.runtime.provider_pacing import BreakerState, CircuitBreaker, RatePacer


def test_sends_are_spaced_at_the_accounts_rate():
    pacer = RatePacer(10)  # one every 100 ms
    waits = [pacer.reserve(0, max_wait_ms=1_000) for _ in range(5)]
    assert waits == [0, 100, 200, 300, 400]


def test_a_slot_further_away_than_the_caller_may_wait_is_left_free():
    pacer = RatePacer(2)  # one every 500 ms
    assert pacer.reserve(0, max_wait_ms=600) == 0
    assert pacer.reserve(0, max_wait_ms=600) == 500
    assert pacer.reserve(0, max_wait_ms=600) is None  # would wait 1,000 ms
    assert pacer.available_at_ms(0) == 1_000  # and nothing was taken


def test_a_429_pauses_the_account_for_its_retry_after_and_halves_its_pace():
    pacer = RatePacer(100)
    pacer.throttled(1_000, retry_after_ms=3_000)
    assert pacer.available_at_ms(1_000) == 4_000
    assert pacer.current_per_s == 50
    assert pacer.reserve(1_000, max_wait_ms=1_000) is None


def test_without_a_hint_the_pause_doubles_with_each_429_in_a_row():
    pacer = RatePacer(100)
    pauses = []
    now = 0
    for _ in range(4):
        pacer.throttled(now)
        pauses.append(pacer.paused_until_ms() - now)
        now = int(pacer.paused_until_ms())
    assert pauses == [1_000, 2_000, 4_000, 8_000]


def test_429s_to_sends_that_left_before_the_pause_do_not_lengthen_it():
    """Many sends are in flight when the first 429 comes back: their 429s are the same news."""
    pacer = RatePacer(100)
    pacer.throttled(0)
    for late in range(1, 50):
        pacer.throttled(late)
    assert pacer.paused_until_ms() == 1_000
    assert pacer.current_per_s == 50


def test_sends_that_go_through_win_the_rate_back_step_by_step():
    pacer = RatePacer(100)
    pacer.throttled(0)
    pacer.throttled(1_000)
    assert pacer.current_per_s == 25
    for _ in range(15):
        pacer.went_through()
    assert pacer.current_per_s == 100  # never above the configured rate
    pacer.throttled(10_000)
    assert pacer.paused_until_ms() == 11_000  # the count in a row started over


def test_a_rate_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        RatePacer(0)


def test_five_failures_in_a_row_rest_the_account_then_one_probe_goes_through():
    breaker = CircuitBreaker()
    for at in range(4):
        assert breaker.failed(at) is False
    assert breaker.failed(4) is True
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows(5_000)
    assert breaker.reopens_at_ms(5_000) == 10_004
    assert breaker.allows(10_004)  # the probe
    assert breaker.state is BreakerState.PROBING
    assert not breaker.allows(10_005)  # only one probe at a time
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows(10_006)


def test_a_failed_probe_rests_the_account_twice_as_long_up_to_five_minutes():
    breaker = CircuitBreaker()
    for at in range(5):
        breaker.failed(at)
    cool_downs = []
    now = breaker.open_until_ms
    for _ in range(8):
        assert breaker.allows(now)
        breaker.failed(now)
        cool_downs.append(breaker.open_until_ms - now)
        now = breaker.open_until_ms
    assert cool_downs == [20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000, 300_000]


def test_a_success_between_failures_starts_the_count_over():
    breaker = CircuitBreaker()
    for at in range(4):
        breaker.failed(at)
    breaker.succeeded()
    for at in range(4):
        breaker.failed(10 + at)
    assert breaker.state is BreakerState.CLOSED
