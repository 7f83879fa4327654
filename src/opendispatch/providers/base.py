"""The one interface every provider implements: a send call, and status events fed back.

A send answers at once with what the provider said: `Accepted` (with its message id, price,
and any statuses it already knows it will report, which the sandbox uses), `Rejected` (a
final no, with an error code and reason), or `Unavailable` (a transient failure: try again).
Statuses that arrive later become `StatusReported` engine events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from opendispatch.engine.model import MessageError, MessageStatus

__all__ = [
    "Accepted",
    "OutboundMessage",
    "Provider",
    "Rejected",
    "ScheduledStatus",
    "SendResult",
    "Unavailable",
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
class ScheduledStatus:
    """A status the provider already knows it will report, `after_ms` after accepting."""

    status: MessageStatus
    after_ms: int
    error: MessageError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    provider_message_id: str
    price: str | None = None
    later: tuple[ScheduledStatus, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    error: MessageError


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    reason: str
    retry_after_ms: int | None = None


SendResult = Accepted | Rejected | Unavailable


class Provider(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...
