"""The developer sandbox: every channel simulated, its behaviour chosen by the recipient.

The last character of `to.number` (or `to.id` for messenger) decides:

    1      rejected when submitted (error 1300)
    2      submitted, then undeliverable (error 1330) after `delivered_after_ms`
    3      submitted, delivered, never read
    4      submitted, then silent
    other  submitted, delivered after `delivered_after_ms`, then read `read_after_ms` later
           on channels that report reads (whatsapp, messenger, viber_service_msg);
           sms and mms stop at delivered

It behaves as a real provider does. It keeps its own record of what it was asked to send,
written before it answers (`SandboxLog`), and honours the message uuid as an idempotency
key: asked again for the same message, it answers the same and counts the attempt, so tests
can prove that no step went out twice. Its later statuses are its callbacks: it lands them in
the inbox (`StatusInbox`) when it accepts a message, each due when it would arrive, and the
runtime applies them then, in the order they happened, like any provider's. Statuses already
reached by the time it answers (all of them, at zero delay) come with the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import (
    Accepted,
    OutboundMessage,
    ProviderStatus,
    Rejected,
    SendResult,
    StatusInbox,
)
from opendispatch.providers.sandbox.log import SandboxLog

__all__ = [
    "DEFAULT_PRICES",
    "SANDBOX_REJECTED",
    "SANDBOX_UNDELIVERABLE",
    "SandboxLog",
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


class SandboxProvider:
    name = "sandbox"

    def __init__(
        self,
        log: SandboxLog,
        inbox: StatusInbox,
        now_ms: Callable[[], int],
        settings: SandboxSettings | None = None,
    ) -> None:
        self._log = log
        self._inbox = inbox
        self._now_ms = now_ms
        self.settings = settings or SandboxSettings()

    async def send(self, message: OutboundMessage) -> SendResult:
        recipient = _recipient(message)
        rejected = recipient.endswith("1")
        now = self._now_ms()
        logged = await self._log.record(
            message_uuid=message.message_uuid,
            channel=message.channel,
            recipient=recipient,
            outcome="rejected" if rejected else "accepted",
            now_ms=now,
        )
        if rejected:
            return Rejected(error=SANDBOX_REJECTED)
        # Counted from the first time it was asked: a retry (after a crash) keeps the times.
        statuses = self._statuses(message, recipient[-1:], logged.first_sent_at_ms)
        reached = tuple(status for status in statuses if status.arrives_at_ms <= now)
        coming = [status for status in statuses if status.arrives_at_ms > now]
        if coming:
            await self._inbox.receive(coming)  # before answering, as a provider keeps them
        return Accepted(
            provider_message_id=message.message_uuid,
            price=self.settings.prices.get(message.channel),
            statuses=reached,
        )

    def _statuses(
        self, message: OutboundMessage, last: str, sent_at_ms: int
    ) -> list[ProviderStatus]:
        delivered_at = sent_at_ms + self.settings.delivered_after_ms

        def status(
            what: MessageStatus, at_ms: int, error: MessageError | None = None
        ) -> ProviderStatus:
            return ProviderStatus(
                message_uuid=message.message_uuid,
                status=what,
                occurred_at_ms=at_ms,
                arrives_at_ms=at_ms,
                error=error,
            )

        if last == "2":
            return [status(MessageStatus.UNDELIVERABLE, delivered_at, SANDBOX_UNDELIVERABLE)]
        if last == "4":
            return []
        delivered = status(MessageStatus.DELIVERED, delivered_at)
        if last == "3" or message.channel not in _REPORTS_READS:
            return [delivered]
        read_at = delivered_at + self.settings.read_after_ms
        return [delivered, status(MessageStatus.READ, read_at)]

    async def close(self) -> None:
        await self._log.stop()


def _recipient(message: OutboundMessage) -> str:
    field_name = "id" if message.channel == "messenger" else "number"
    value = message.to.get(field_name) or message.to.get("number") or message.to.get("id") or ""
    return str(value)
