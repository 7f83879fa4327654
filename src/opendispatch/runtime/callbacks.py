"""Provider callbacks in: verified as the provider signs them, read, checked against what we
sent, landed in the inbox durably, and only then answered.

A callback names its message by our reference (each adapter attaches one to every send) and by
the provider's own id. Both are checked against the message's row: the message must exist and,
once its send's answer recorded the provider's id, carry that same id. A signed callback
replayed with someone else's reference (Telnyx signs the body, not the URL that carries the
reference) is refused that way. A callback without our reference (an account-level webhook
when the server has no `--public-url`) is matched by the provider's id alone.

Repeats are dropped where they land (one row per provider id and status while it waits) and
by the engine afterwards (a status a message already has changes nothing); statuses are
applied in the order they happened, never moving a message backwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opendispatch.errors import NotFound
from opendispatch.providers.base import ProviderStatus
from opendispatch.providers.kinds import CallbackRefused, CallbackRequest, CallbackStatus
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.inbox import ProviderInbox
from opendispatch.runtime.provider_directory import LiveAccount, ProviderDirectory
from opendispatch.store.database import DatabaseStore

__all__ = ["CallbackIntake", "CallbackReceipt"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallbackReceipt:
    landed: int  # statuses stored for their messages
    ignored: int  # statuses with no Dispatch meaning, or for messages we did not send


class CallbackIntake:
    def __init__(
        self,
        *,
        directory: ProviderDirectory,
        store: DatabaseStore,
        inbox: ProviderInbox,
        clock: Clock,
    ) -> None:
        self._directory = directory
        self._store = store
        self._inbox = inbox
        self._clock = clock

    async def receive(self, account_name: str, request: CallbackRequest) -> CallbackReceipt:
        """Raises `NotFound` (no such account) or `CallbackRefused`; returns once every
        status it reports for one of our messages is stored."""
        account = await self._account(account_name)
        account.adapter.verify_callback(request)
        statuses = account.adapter.read_callback(request)
        landing: list[ProviderStatus] = []
        ignored = 0
        for status in statuses:
            matched = await self._match(account, status)
            if matched is None:
                ignored += 1
                continue
            landing.append(matched)
        await self._inbox.receive(landing)
        return CallbackReceipt(landed=len(landing), ignored=ignored)

    async def handshake(self, account_name: str, request: CallbackRequest) -> bytes:
        account = await self._account(account_name)
        return account.adapter.handshake(request)

    async def _account(self, name: str) -> LiveAccount:
        account = await self._directory.account(name)
        if account is None:
            raise NotFound(f"No provider account {name!r}.")
        return account

    async def _match(self, account: LiveAccount, status: CallbackStatus) -> ProviderStatus | None:
        if status.status is None:
            log.debug(
                "%s: status %r of %s has no Dispatch meaning",
                account.record.name,
                status.raw_status,
                status.provider_message_id,
            )
            return None
        message_uuid = status.message_uuid
        if message_uuid is None:
            if not status.provider_message_id:
                return None
            message_uuid = await self._store.message_by_provider_id(status.provider_message_id)
            if message_uuid is None:
                log.info(
                    "%s: callback for %s, which is not a message OpenDispatch sent",
                    account.record.name,
                    status.provider_message_id,
                )
                return None
        sent = await self._store.message_for_callback(message_uuid)
        if sent is None:
            log.info("%s: callback for unknown message %s", account.record.name, message_uuid)
            return None
        if (
            sent.provider_message_id
            and status.provider_message_id
            and sent.provider_message_id != status.provider_message_id
        ):
            raise CallbackRefused(
                f"the callback's message id does not match the one recorded for {message_uuid}",
                status_code=403,
            )
        now = self._clock.now_ms()
        return ProviderStatus(
            message_uuid=message_uuid,
            status=status.status,
            occurred_at_ms=status.occurred_at_ms,
            arrives_at_ms=now,
            error=status.error,
            price=status.price,
            provider_message_id=status.provider_message_id or None,
        )
