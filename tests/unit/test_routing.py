"""Walking a route for one send: which provider answers, and which are skipped or tried next
(the rules in `runtime/routing.py`)."""

from __future__ import annotations

import pytest

from opendispatch.engine.model import MessageError
from opendispatch.providers.base import (
    Accepted,
    OutboundMessage,
    Rejected,
    SendResult,
    Unavailable,
    Unknown,
)
from opendispatch.providers.kinds import cannot_carry
from opendispatch.runtime.clock import ManualClock
from opendispatch.runtime.provider_pacing import CircuitBreaker, RatePacer
from opendispatch.runtime.routing import Route, RouteStop, send_along

pytestmark = pytest.mark.anyio

MESSAGE = OutboundMessage(
    message_uuid="m-1",
    dispatch_uuid="d-1",
    channel="sms",
    to={"type": "sms", "number": "447700900003"},
    from_={"type": "sms", "number": "447700900000"},
    message={"content": {"type": "text", "text": "hi"}},
    attempt=1,
)
RECIPIENT_REFUSAL = Rejected(error=MessageError(code=21211, reason="invalid To"))
QUOTA = Rejected(error=MessageError(code=1070, reason="quota exceeded"), provider_side=True)


class Scripted:
    """A provider that answers from a script, and counts what it was asked."""

    def __init__(self, name: str, *answers: SendResult) -> None:
        self.name = name
        self._answers = list(answers)
        self.asked = 0

    async def send(self, message: OutboundMessage) -> SendResult:
        self.asked += 1
        return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]

    async def close(self) -> None:
        pass


def route(*providers: Scripted, paced: bool = False) -> Route:
    return Route(
        stops=tuple(
            RouteStop(p, RatePacer(1e6) if paced else None, CircuitBreaker()) for p in providers
        ),
        live=True,
    )


ACCEPTED = Accepted(provider_message_id="x")


async def test_the_first_provider_that_accepts_carries_the_message():
    first, second = Scripted("a", ACCEPTED), Scripted("b", ACCEPTED)
    outcome = await send_along(route(first, second), MESSAGE, ManualClock())
    assert (outcome.provider, outcome.result) == ("a", ACCEPTED)
    assert second.asked == 0


async def test_an_unavailable_provider_hands_the_same_step_to_the_next():
    first = Scripted("a", Unavailable(reason="503"))
    second = Scripted("b", ACCEPTED)
    outcome = await send_along(route(first, second), MESSAGE, ManualClock())
    assert (outcome.provider, outcome.result) == ("b", ACCEPTED)


async def test_a_provider_side_refusal_hands_it_to_the_next_and_a_recipient_one_does_not():
    quota, other = Scripted("a", QUOTA), Scripted("b", ACCEPTED)
    assert (await send_along(route(quota, other), MESSAGE, ManualClock())).provider == "b"
    refused, untouched = Scripted("a", RECIPIENT_REFUSAL), Scripted("b", ACCEPTED)
    outcome = await send_along(route(refused, untouched), MESSAGE, ManualClock())
    assert (outcome.provider, outcome.result) == ("a", RECIPIENT_REFUSAL)
    assert untouched.asked == 0


async def test_an_unknown_outcome_is_never_sent_through_another_provider():
    lost, backup = Scripted("a", Unknown(reason="read timeout")), Scripted("b", ACCEPTED)
    outcome = await send_along(route(lost, backup), MESSAGE, ManualClock())
    assert isinstance(outcome.result, Unknown)
    assert backup.asked == 0


async def test_when_every_provider_fails_the_send_is_retried_later_not_failed():
    route_ = route(Scripted("a", Unavailable(reason="503")), Scripted("b", QUOTA))
    outcome = await send_along(route_, MESSAGE, ManualClock())
    assert isinstance(outcome.result, Unavailable)
    assert "a: 503" in outcome.result.reason
    assert "b: quota exceeded" in outcome.result.reason


async def test_when_no_provider_can_carry_the_content_that_is_final():
    route_ = route(Scripted("a", cannot_carry("no templates")), Scripted("b", cannot_carry("no")))
    outcome = await send_along(route_, MESSAGE, ManualClock())
    assert isinstance(outcome.result, Rejected)
    assert outcome.result.error.code == 1420


async def test_a_provider_that_keeps_failing_is_skipped_until_its_cool_down_ends():
    clock = ManualClock()
    failing, backup = Scripted("a", Unavailable(reason="503")), Scripted("b", ACCEPTED)
    stops = route(failing, backup)
    for _ in range(8):
        await send_along(stops, MESSAGE, clock)
    assert failing.asked == 5  # then rested: the backup carries the rest
    assert backup.asked == 8
    await clock.advance(10_000)
    await send_along(stops, MESSAGE, clock)
    assert failing.asked == 6  # one probe after the cool-down


async def test_a_throttled_provider_is_paused_and_the_next_one_carries_the_message():
    clock = ManualClock()
    throttled = Scripted("a", Unavailable(reason="429", throttled=True, retry_after_ms=5_000))
    backup = Scripted("b", ACCEPTED)
    stops = route(throttled, backup, paced=True)
    assert (await send_along(stops, MESSAGE, clock)).provider == "b"
    assert (await send_along(stops, MESSAGE, clock)).provider == "b"
    assert throttled.asked == 1  # paused for its Retry-After, not asked again meanwhile


async def test_when_no_provider_can_be_tried_now_nothing_is_sent_and_it_waits():
    clock = ManualClock()
    throttled = Scripted("a", Unavailable(reason="429", throttled=True, retry_after_ms=5_000))
    stops = route(throttled, paced=True)
    first = await send_along(stops, MESSAGE, clock)
    assert isinstance(first.result, Unavailable)  # tried: an attempt, retried after 5 s
    assert first.result.retry_after_ms == 5_000
    second = await send_along(stops, MESSAGE, clock)
    assert second.result is None  # not tried: handed back untouched
    assert second.retry_at_ms == clock.now_ms() + 5_000


async def test_a_route_without_providers_says_why():
    outcome = await send_along(Route(stops=(), missing="no route for sms"), MESSAGE, ManualClock())
    assert isinstance(outcome.result, Unavailable)
    assert outcome.result.reason == "no route for sms"
