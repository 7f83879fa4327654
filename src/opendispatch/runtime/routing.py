"""Which providers carry a message, and how one step's send walks them.

A `Route` is the ordered list of providers that may carry a channel for an application: the
sandbox alone for a sandbox application, the operator's route (`apps route`) for a live one.
`send_along` walks it for one send. The rules, in one place:

- A provider whose circuit breaker is open (it kept failing) is skipped; so is one whose
  rate would make the send wait more than a second (its slot is left for others).
- `Accepted`, or a refusal for the recipient's or the message's own reason: the answer.
- `Unknown` (the request went out, no answer came): the answer too. It may have been sent,
  and none of these providers takes an idempotency key, so no other provider is tried.
- `Unavailable` or a provider-side refusal (credentials, balance, quota, a 429, a channel or
  content it cannot carry): the next provider of the route is tried, at once, for the same
  step; the workflow's own failover to its next message comes only after.
- When every provider was tried and none answered, the send is `Unavailable` (retried with
  backoff, the step's deadline being the backstop) unless every one of them said it cannot
  carry the message: that is final, a `Rejected`.
- When none could be tried (all resting or at their rate), nothing was sent: the send goes
  back to the store, due when the first of them frees up (`RouteOutcome.retry_at_ms`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from opendispatch.providers.base import (
    Accepted,
    OutboundMessage,
    Provider,
    Rejected,
    SendResult,
    Unavailable,
    Unknown,
)
from opendispatch.providers.kinds import CAPABILITY_CODE
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.provider_pacing import CircuitBreaker, RatePacer

__all__ = ["Route", "RouteOutcome", "RouteStop", "Routes", "StaticRoutes", "send_along"]

# How long a send may wait for its provider's next slot before the route moves on.
MAX_PACING_WAIT_MS = 1_000


@dataclass(frozen=True, slots=True)
class RouteStop:
    provider: Provider
    pacer: RatePacer | None = None
    breaker: CircuitBreaker | None = None


@dataclass(frozen=True, slots=True)
class Route:
    stops: tuple[RouteStop, ...]
    live: bool = False
    missing: str | None = None  # why there are no stops (a live application without a route)


class Routes(Protocol):
    async def start(self) -> None: ...

    async def route(self, application_id: str, channel: str) -> Route: ...

    async def close(self) -> None: ...


class StaticRoutes:
    """One provider per channel for every application: the sandbox, or a test's provider."""

    def __init__(self, providers: Mapping[str, Provider], provider_for_channel: Mapping[str, str]):
        self._routes = {
            channel: Route(stops=(RouteStop(providers[name]),))
            for channel, name in provider_for_channel.items()
            if name in providers
        }

    async def start(self) -> None:
        pass

    async def route(self, application_id: str, channel: str) -> Route:
        return self._routes.get(channel) or Route(
            stops=(), missing=f"no provider is configured for {channel}"
        )

    async def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RouteOutcome:
    """`result` None: no provider could be tried now; hand the send back until
    `retry_at_ms`. `provider`: whose answer `result` is (the last one tried)."""

    provider: str
    result: SendResult | None
    retry_at_ms: int | None = None


async def send_along(
    route: Route,
    message: OutboundMessage,
    clock: Clock,
    *,
    max_wait_ms: int = MAX_PACING_WAIT_MS,
) -> RouteOutcome:
    if not route.stops:
        return RouteOutcome(
            provider="", result=Unavailable(reason=route.missing or "no provider for it")
        )
    tried: list[str] = []
    reasons: list[str] = []
    all_cannot_carry = True
    last_refusal: Rejected | None = None
    free_at: int | None = None

    def frees_at(at_ms: float) -> None:
        nonlocal free_at
        free_at = int(at_ms) if free_at is None else min(free_at, int(at_ms))

    for stop in route.stops:
        name = stop.provider.name
        now = clock.now_ms()
        if stop.pacer is not None and stop.pacer.available_at_ms(now) - now > max_wait_ms:
            frees_at(stop.pacer.available_at_ms(now))
            reasons.append(f"{name}: at its rate limit")
            continue
        if stop.breaker is not None and not stop.breaker.allows(now):
            frees_at(stop.breaker.reopens_at_ms(now))
            reasons.append(f"{name}: resting after repeated failures")
            continue
        if stop.pacer is not None:
            wait_ms = stop.pacer.reserve(now, max_wait_ms=max_wait_ms) or 0.0
            if wait_ms > 0:
                await clock.sleep_until(now + int(wait_ms), asyncio.Event())
        tried.append(name)
        result = await stop.provider.send(message)
        now = clock.now_ms()
        if isinstance(result, Accepted) or (
            isinstance(result, Rejected) and not result.provider_side
        ):
            _went_through(stop)
            return RouteOutcome(provider=name, result=result)
        if isinstance(result, Unknown):
            if stop.breaker is not None:
                stop.breaker.failed(now)
            return RouteOutcome(provider=name, result=result)
        if isinstance(result, Rejected):  # provider-side: another provider may carry it
            last_refusal = result
            if result.error.code != CAPABILITY_CODE:
                all_cannot_carry = False
                if stop.breaker is not None:
                    stop.breaker.failed(now)
            reasons.append(f"{name}: {result.error.reason}")
            continue
        all_cannot_carry = False
        if result.throttled:
            if stop.pacer is not None:
                stop.pacer.throttled(now, retry_after_ms=result.retry_after_ms)
                frees_at(stop.pacer.available_at_ms(now))
        elif stop.breaker is not None:
            stop.breaker.failed(now)
        if result.retry_after_ms is not None:
            frees_at(now + result.retry_after_ms)
        reasons.append(
            result.reason if result.reason.startswith(name) else f"{name}: {result.reason}"
        )
    if not tried:
        return RouteOutcome(provider="", result=None, retry_at_ms=free_at)
    if all_cannot_carry and last_refusal is not None and len(tried) == len(route.stops):
        return RouteOutcome(provider=tried[-1], result=last_refusal)
    now = clock.now_ms()
    return RouteOutcome(
        provider=tried[-1],
        result=Unavailable(
            reason="; ".join(reasons),
            retry_after_ms=None if free_at is None else max(0, free_at - now),
        ),
    )


def _went_through(stop: RouteStop) -> None:
    if stop.pacer is not None:
        stop.pacer.went_through()
    if stop.breaker is not None:
        stop.breaker.succeeded()
