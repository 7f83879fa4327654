"""The per-application request budget, driven by the caller's clock."""

from __future__ import annotations

import pytest

from opendispatch.api.rate_limit import RateLimiter, parse_rate


def admitted(limiter: RateLimiter, key: str, at_ms: int, count: int) -> int:
    return sum(limiter.admit(key, at_ms) == 0 for _ in range(count))


def test_a_burst_of_one_second_passes_then_the_rest_wait():
    limiter = RateLimiter(30)
    assert admitted(limiter, "app", 0, 100) == 30
    assert limiter.admit("app", 0) == pytest.approx(1 / 30)


def test_tokens_come_back_at_the_rate_and_never_above_one_second():
    limiter = RateLimiter(10)
    admitted(limiter, "app", 0, 10)
    assert admitted(limiter, "app", 500, 100) == 5  # half a second: five requests
    assert admitted(limiter, "app", 60_500, 100) == 10  # a minute idle: still one second


def test_each_application_has_its_own_budget():
    limiter = RateLimiter(2)
    assert admitted(limiter, "a", 0, 5) == 2
    assert admitted(limiter, "b", 0, 5) == 2


def test_a_rate_below_one_still_lets_one_request_through_and_says_how_long_to_wait():
    limiter = RateLimiter(0.5)
    assert limiter.admit("app", 0) == 0
    assert limiter.admit("app", 0) == pytest.approx(2.0)
    assert limiter.admit("app", 2_000) == 0


def test_a_clock_going_back_gives_nothing_away():
    limiter = RateLimiter(1)
    assert limiter.admit("app", 10_000) == 0
    assert limiter.admit("app", 5_000) > 0
    assert limiter.admit("app", 10_999) > 0
    assert limiter.admit("app", 11_000) == 0


@pytest.mark.parametrize(
    ("text", "rate"), [("30/s", 30.0), ("30", 30.0), (" 0.5/s ", 0.5), ("off", 0.0), ("0", 0.0)]
)
def test_rates_are_written_n_per_second(text: str, rate: float):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "-1/s", "nan", "inf/s", "30/min", ""])
def test_anything_else_is_refused(text: str):
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(text)
