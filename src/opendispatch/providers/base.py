"""The one interface every provider implements: a send call; statuses that come later land
in the inbox.

A send answers at once with what the provider said: `Accepted` (with its message id, price,
and any statuses its answer already reports), `Rejected` (a no, with an error code and reason:
final for this message when the reason is the recipient's or the message's, worth another
provider when it is the provider's own, `provider_side`), `Unavailable` (a transient failure:
nothing was sent, try again), or `Unknown` (the request went out and no answer came back: it
may have been sent, so it is never sent again blindly). Statuses the provider reports
later (its callbacks) are handed to a `StatusInbox`: stored durably first, applied to their
workflow afterwards, in the order they happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opendispatch.engine.model import MessageError, MessageStatus

__all__ = [
    "Accepted",
    "OutboundMessage",
    "Provider",
    "ProviderStatus",
    "Rejected",
    "SendResult",
    "StatusInbox",
    "Unavailable",
    "Unknown",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """One message to send: its addressing and content exactly as the client submitted them.

    `message_uuid` is stable across attempts: providers that accept an idempotency key (or a
    client reference) get it, so a retry after a crash cannot send twice.
    """

    message_uuid: str
    dispatch_uuid: str
    channel: str
    to: dict[str, Any]
    from_: dict[str, Any]
    message: dict[str, Any]
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStatus:
    """A status a provider reports for a message: it happened at `occurred_at_ms`, and
    reaches us at `arrives_at_ms` (now, for a callback; later, for the sandbox's simulation)."""

    message_uuid: str
    status: MessageStatus
    occurred_at_ms: int
    arrives_at_ms: int
    error: MessageError | None = None
    price: str | None = None
    provider_message_id: str | None = None  # a callback's: it lands once per id and status


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    provider_message_id: str
    price: str | None = None
    # Statuses the answer itself reports as already reached (beyond `submitted`): applied
    # with the answer, in the same transaction.
    statuses: tuple[ProviderStatus, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """A refusal. `provider_side`: the provider's own reason (credentials, balance, quota,
    throttling, a channel or content it cannot carry), so another provider may succeed; else
    the recipient's or the message's (an invalid number, a barred recipient), final."""

    error: MessageError
    provider_side: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    """Nothing was sent (refused connection, 5xx, 429): trying again later is safe.
    `throttled`: the provider asked us to slow down (429), for `retry_after_ms` if it said."""

    reason: str
    retry_after_ms: int | None = None
    throttled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """The request was written and no answer came (a read timeout, a connection lost while
    waiting): the provider may have sent the message. None of the providers takes an
    idempotency key, so the step is not sent again; its callbacks or its deadline settle it."""

    reason: str


SendResult = Accepted | Rejected | Unavailable | Unknown


class StatusInbox(Protocol):
    """Where a provider's statuses land: durably, before it is told they were received."""

    async def receive(self, statuses: Sequence[ProviderStatus]) -> None: ...


class Provider(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...
