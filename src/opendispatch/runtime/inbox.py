"""Where providers' statuses land (`StatusInbox`): stored durably first, then applied when
due by the inbox worker, in the order they happened. A provider's callback is answered only
once `receive` returned, so nothing a provider was told we have is ever lost."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opendispatch.providers.base import ProviderStatus
from opendispatch.store.protocol import Store
from opendispatch.store.records import NewInboxEvent

__all__ = ["ProviderInbox"]


class ProviderInbox:
    def __init__(self, store: Store) -> None:
        self._store = store
        # Told the earliest due time of what just landed (the runtime wakes its worker).
        self.on_landed: Callable[[int], None] = lambda due_at_ms: None

    async def receive(self, statuses: Sequence[ProviderStatus]) -> None:
        if not statuses:
            return
        await self._store.receive_statuses(
            [
                NewInboxEvent(
                    message_uuid=status.message_uuid,
                    status=status.status,
                    due_at_ms=status.arrives_at_ms,
                    occurred_at_ms=status.occurred_at_ms,
                    error_code=None if status.error is None else status.error.code,
                    error_reason=None if status.error is None else status.error.reason,
                    price=status.price,
                    provider_message_id=status.provider_message_id,
                )
                for status in statuses
            ]
        )
        self.on_landed(min(status.arrives_at_ms for status in statuses))
