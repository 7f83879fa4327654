"""The developer sandbox: every channel simulated, its behaviour chosen by the recipient.

The last character of `to.number` (or `to.id` for messenger) decides:

    1      rejected when submitted (error 1300)
    2      submitted, then undeliverable (error 1330) after `delivered_after_ms`
    3      submitted, delivered, never read
    4      submitted, then silent
    other  submitted, delivered after `delivered_after_ms`, then read `read_after_ms` later
           on channels that report reads (whatsapp, messenger, viber_service_msg);
           sms and mms stop at delivered

Like a real provider, it keeps its own record of what it was asked to send (written before
it answers) and honours the message uuid as an idempotency key: asked again for the same
message, it answers the same and counts the attempt, so tests can prove that no step went
out twice. Its later statuses are announced in `Accepted.later`; the runtime stores them with
the send's result, so they survive a restart as real callbacks would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import (
    Accepted,
    OutboundMessage,
    Rejected,
    ScheduledStatus,
    SendResult,
)

__all__ = [
    "DEFAULT_PRICES",
    "SANDBOX_REJECTED",
    "SANDBOX_UNDELIVERABLE",
    "SandboxProvider",
    "SandboxSettings",
]

DEFAULT_PRICES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "sms": "0.0070",
        "mms": "0.0250",
        "whatsapp": "0.0140",
        "viber_service_msg": "0.0100",
        "messenger": "0.0010",
    }
)
SANDBOX_REJECTED: Final = MessageError(
    code=1300, reason="Not part of the provider network (sandbox: recipient ends in 1)"
)
SANDBOX_UNDELIVERABLE: Final = MessageError(
    code=1330, reason="The message could not be delivered (sandbox: recipient ends in 2)"
)
_REPORTS_READS: Final = frozenset({"whatsapp", "messenger", "viber_service_msg"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxSettings:
    delivered_after_ms: int = 1000
    read_after_ms: int = 1000
    prices: Mapping[str, str] = field(default_factory=lambda: DEFAULT_PRICES)


class SendLog(Protocol):
    async def sandbox_record_send(
        self, *, message_uuid: str, channel: str, recipient: str, outcome: str, now_ms: int
    ) -> int: ...


class SandboxProvider:
    name = "sandbox"

    def __init__(
        self, log: SendLog, now_ms: Callable[[], int], settings: SandboxSettings | None = None
    ) -> None:
        self._log = log
        self._now_ms = now_ms
        self.settings = settings or SandboxSettings()

    async def send(self, message: OutboundMessage) -> SendResult:
        recipient = _recipient(message)
        rejected = recipient.endswith("1")
        await self._log.sandbox_record_send(
            message_uuid=message.message_uuid,
            channel=message.channel,
            recipient=recipient,
            outcome="rejected" if rejected else "accepted",
            now_ms=self._now_ms(),
        )
        if rejected:
            return Rejected(error=SANDBOX_REJECTED)
        return Accepted(
            provider_message_id=message.message_uuid,
            price=self.settings.prices.get(message.channel),
            later=self._later(message.channel, recipient[-1:]),
        )

    def _later(self, channel: str, last: str) -> tuple[ScheduledStatus, ...]:
        delivered_after = self.settings.delivered_after_ms
        if last == "2":
            return (
                ScheduledStatus(
                    status=MessageStatus.UNDELIVERABLE,
                    after_ms=delivered_after,
                    error=SANDBOX_UNDELIVERABLE,
                ),
            )
        if last == "4":
            return ()
        delivered = ScheduledStatus(status=MessageStatus.DELIVERED, after_ms=delivered_after)
        if last == "3" or channel not in _REPORTS_READS:
            return (delivered,)
        read_after = delivered_after + self.settings.read_after_ms
        return (delivered, ScheduledStatus(status=MessageStatus.READ, after_ms=read_after))

    async def close(self) -> None:
        return None


def _recipient(message: OutboundMessage) -> str:
    field_name = "id" if message.channel == "messenger" else "number"
    value = message.to.get(field_name) or message.to.get("number") or message.to.get("id") or ""
    return str(value)
