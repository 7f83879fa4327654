"""The work queues on PostgreSQL: sends, timers, provider statuses (inbox) and webhooks.

Any number of processes claim from the same tables. A claim is one statement: it locks due
rows with `FOR UPDATE SKIP LOCKED` (rows another claimer is taking right now are passed by,
not waited for) and stamps them with a lease (`lease_until_ms`, `lease_owner`) in the same
`UPDATE ... RETURNING`. The lease, not a lock, is what keeps the work this process's while it
performs it; if the process dies, the lease runs out and the rows are claimable again by
anyone. So `release_leases` does nothing here: a lease left in the tables may belong to a
process that is alive and busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from opendispatch.store.postgres.coalesce import AGAIN, Again, Coalescer
from opendispatch.store.postgres.driver import PostgresAccess, columns
from opendispatch.store.records import (
    InboxEvent,
    SendJob,
    WebhookAttempt,
    WebhookJob,
    WebhookRecord,
)

__all__ = ["PostgresOutbox"]


class PostgresOutbox(PostgresAccess):
    """Queue operations of `PostgresStore`; `lease_owner` names this process in its claims."""

    lease_owner: str

    def _init_outbox(self) -> None:
        self._sandbox_log: Coalescer[_SandboxSend, int] = Coalescer(self._log_sandbox_sends)

    async def _stop_outbox(self) -> None:
        await self._sandbox_log.wait_idle()

    # -- sends ---------------------------------------------------------------------------------

    async def claim_due_sends(self, *, now_ms: int, limit: int, lease_ms: int) -> list[SendJob]:
        rows = await self._fetch("claim_sends", now_ms + lease_ms, self.lease_owner, now_ms, limit)
        return [SendJob(**dict(row)) for row in rows]

    async def retry_send(self, message_uuid: str, *, next_attempt_at_ms: int, error: str) -> None:
        await self._execute("retry_send", next_attempt_at_ms, error, message_uuid, self.lease_owner)

    async def next_send_due_ms(self) -> int | None:
        due: int | None = await self._fetchval("next_send_due")
        return due

    # -- timers --------------------------------------------------------------------------------

    async def due_timers(self, *, now_ms: int, limit: int) -> list[str]:
        return [row[0] for row in await self._fetch("due_timers", now_ms, limit)]

    async def next_timer_due_ms(self) -> int | None:
        due: int | None = await self._fetchval("next_timer_due")
        return due

    # -- inbox ---------------------------------------------------------------------------------

    async def claim_due_inbox(self, *, now_ms: int, limit: int, lease_ms: int) -> list[InboxEvent]:
        rows = await self._fetch("claim_inbox", now_ms + lease_ms, self.lease_owner, now_ms, limit)
        return [InboxEvent(**dict(row)) for row in rows]

    async def next_inbox_due_ms(self) -> int | None:
        due: int | None = await self._fetchval("next_inbox_due")
        return due

    # -- webhooks ------------------------------------------------------------------------------

    async def claim_due_webhooks(
        self, *, now_ms: int, limit: int, lease_ms: int, exclude_applications: frozenset[str]
    ) -> list[WebhookJob]:
        rows = await self._fetch(
            "claim_webhooks",
            now_ms + lease_ms,
            self.lease_owner,
            now_ms,
            sorted(exclude_applications),
            limit,
        )
        return [WebhookJob(**dict(row)) for row in rows]

    async def next_webhook_due_ms(self) -> int | None:
        due: int | None = await self._fetchval("next_webhook_due")
        return due

    async def record_webhook_attempts(self, attempts: Sequence[WebhookAttempt]) -> None:
        """Record outcomes and release the final reports they were the last to wait for, in
        one statement and without locking the workflows: a transition that holds its final
        report at the very moment the last pending webhook is recorded (each unseen by the
        other) leaves the report held; `release_settled_final_reports`, run periodically,
        releases it. Locking the workflows here instead made event transitions queue behind
        webhook bookkeeping (measured as the largest cost in the database under load).
        """
        if not attempts:
            return
        latest = {attempt.id: attempt for attempt in attempts}  # as applied in order: last wins
        rows = [
            (
                attempt.id,
                attempt.state,
                attempt.next_attempt_at_ms,
                attempt.status_code,
                attempt.error,
                attempt.at_ms if attempt.state == "delivered" else None,
            )
            for attempt in sorted(latest.values(), key=lambda attempt: attempt.id)
        ]
        await self._execute("record_webhook_attempts", *columns(rows))

    async def release_settled_final_reports(self) -> None:
        await self._execute("release_settled_final_reports")

    async def list_webhooks(self, dispatch_uuid: str) -> list[WebhookRecord]:
        rows = await self._fetch("list_webhooks", dispatch_uuid)
        return [WebhookRecord(**dict(row)) for row in rows]

    # -- recovery and the sandbox --------------------------------------------------------------

    async def release_leases(self) -> None:
        """Nothing to do: other live processes hold leases here; a dead one's run out."""

    async def sandbox_record_send(
        self, *, message_uuid: str, channel: str, recipient: str, outcome: str, now_ms: int
    ) -> int:
        """The sandbox's own log, committed before it answers; returns the attempt count.
        Concurrent sends are logged together, one statement per batch."""
        return await self._sandbox_log.submit(
            _SandboxSend(message_uuid, channel, recipient, outcome, now_ms)
        )

    async def _log_sandbox_sends(self, batch: list[_SandboxSend]) -> list[int | Again]:
        # One message at most once per statement (ON CONFLICT cannot touch a row twice): a
        # repeat, which only a lease that ran out mid-send can cause, waits for the next.
        first: dict[str, _SandboxSend] = {}
        for send in batch:
            first.setdefault(send.message_uuid, send)
        rows = await self._fetch("sandbox_record_sends", *columns(list(first.values())))
        attempts = {row["message_uuid"]: row["attempts"] for row in rows}
        return [
            attempts[send.message_uuid] if first[send.message_uuid] is send else AGAIN
            for send in batch
        ]


class _SandboxSend(NamedTuple):
    message_uuid: str
    channel: str
    recipient: str
    outcome: str
    sent_at_ms: int
