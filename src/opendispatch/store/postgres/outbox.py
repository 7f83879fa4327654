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
    Expired,
    InboxEvent,
    SendJob,
    WebhookAttempt,
    WebhookDeferral,
    WebhookFilter,
    WebhookJob,
    WebhookRecord,
)

__all__ = ["PostgresOutbox"]

_AFTER_EVERY_ID = 2**63 - 1  # "no upper bound" for lists that page down by id


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
        one round trip. A transition writing a held final report at the same moment is
        ordered against it by row locks (see migration 0005), so no report is left held."""
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
                attempt.at_ms,
            )
            for attempt in sorted(latest.values(), key=lambda attempt: attempt.id)
        ]
        await self._execute("record_webhook_attempts", *columns(rows))

    async def defer_webhooks(self, deferrals: Sequence[WebhookDeferral]) -> None:
        if deferrals:
            ids = [deferral.id for deferral in deferrals]
            until = [deferral.until_ms for deferral in deferrals]
            await self._execute("defer_webhooks", ids, until, self.lease_owner)

    async def wake_webhooks(self, *, application_id: str, url: str, now_ms: int) -> int:
        return await self._execute("wake_webhooks", application_id, url, now_ms)

    async def release_settled_final_reports(self) -> None:
        await self._execute("release_settled_final_reports")

    async def list_webhooks(self, dispatch_uuid: str) -> list[WebhookRecord]:
        rows = await self._fetch("list_webhooks", dispatch_uuid)
        return [WebhookRecord(**dict(row)) for row in rows]

    async def find_webhook(self, event_id: str) -> WebhookRecord | None:
        row = await self._fetchrow("find_webhook", event_id)
        return None if row is None else WebhookRecord(**dict(row))

    async def list_webhooks_page(
        self, which: WebhookFilter, *, limit: int, before_id: int | None = None
    ) -> list[WebhookRecord]:
        """Newest first; `before_id` is the last `id` of the previous page."""
        before = _AFTER_EVERY_ID if before_id is None else before_id
        if which.dispatch_uuid is not None:
            rows = await self._fetch(
                "list_webhooks_of_workflow",
                which.dispatch_uuid,
                which.application_id,
                which.state,
                before,
                limit,
            )
        elif which.application_id is None:
            rows = await self._fetch("list_webhooks_everywhere", which.state, before, limit)
        elif which.state == "dead":
            rows = await self._fetch(
                "list_dead_webhooks_of_application", which.application_id, before, limit
            )
        else:
            rows = await self._fetch(
                "list_webhooks_of_application", which.application_id, which.state, before, limit
            )
        return [WebhookRecord(**dict(row)) for row in rows]

    async def replay_webhook(self, webhook_id: int, *, now_ms: int) -> bool:
        """Deliver a delivered or dead webhook again; False if it is not settled."""
        return await self._execute("replay_webhook", now_ms, webhook_id) > 0

    async def replay_webhooks(self, which: WebhookFilter, *, now_ms: int, limit: int) -> int:
        """Replay up to `limit` settled webhooks (`which.state`: dead or delivered)."""
        query = {"dead": "replay_dead_webhooks", "delivered": "replay_delivered_webhooks"}
        return await self._execute(
            query[which.state or "dead"], now_ms, which.application_id, which.dispatch_uuid, limit
        )

    # -- retention -----------------------------------------------------------------------------

    async def delete_expired(self, *, before_ms: int, limit: int) -> Expired:
        """One small batch of what is older than the retention: settled webhooks, then ended
        workflows with nothing left to deliver (their messages and statuses with them). Rows
        another process is deleting are skipped, not waited for."""
        webhooks = await self._execute("expire_webhooks", before_ms, limit)
        workflows = await self._execute("expire_workflows", before_ms, limit)
        return Expired(webhooks=webhooks, workflows=workflows)

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
