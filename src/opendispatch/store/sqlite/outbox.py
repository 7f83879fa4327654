"""The work queues on SQLite: sends, timers, provider statuses (inbox) and webhooks.

A claim marks rows with a lease (`lease_until_ms`) in one UPDATE ... RETURNING, so the same
queries would serve several workers; on SQLite one process owns the file, so at start every
lease left by a crashed predecessor is released at once (`release_leases`).
"""

from __future__ import annotations

import json
import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

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
from opendispatch.store.sqlite.batching import WriteOperation

__all__ = ["SqliteOutbox", "named_rows"]

T = TypeVar("T")

_AFTER_EVERY_ID = 2**63 - 1  # "no upper bound" for lists that page down by id


def named_rows(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """Rows by column name, as the record types want them."""
    names = [column[0] for column in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


class SqliteOutbox:
    """Queue operations of `SqliteStore`; it supplies the connection plumbing below."""

    _queries: dict[str, str]

    @abstractmethod
    async def _write(self, operation: WriteOperation[T]) -> T: ...

    @abstractmethod
    def _read_one(self, query: str, parameters: tuple[Any, ...]) -> Any: ...

    @abstractmethod
    def _read_all(self, query: str, parameters: tuple[Any, ...]) -> list[Any]: ...

    @abstractmethod
    def _read_named(self, query: str, parameters: Any) -> list[dict[str, Any]]: ...

    def _run(self, query: str, *parameters: Any) -> WriteOperation[list[Any]]:
        sql = self._queries[query]
        return lambda connection: connection.execute(sql, parameters).fetchall()

    def _count(self, query: str, *parameters: Any) -> WriteOperation[int]:
        """A write that returns how many rows it changed."""
        sql = self._queries[query]
        return lambda connection: connection.execute(sql, parameters).rowcount

    # -- sends ---------------------------------------------------------------------------------

    async def claim_due_sends(self, *, now_ms: int, limit: int, lease_ms: int) -> list[SendJob]:
        rows = await self._write(self._run("claim_sends", now_ms + lease_ms, now_ms, limit))
        return [
            SendJob(
                message_uuid=row[0],
                dispatch_uuid=row[1],
                step=row[2],
                channel=row[3],
                provider=row[4],
                payload_json=row[5],
                attempts=row[6],
                created_at_ms=row[7],
            )
            for row in rows
        ]

    async def retry_send(self, message_uuid: str, *, next_attempt_at_ms: int, error: str) -> None:
        await self._write(self._run("retry_send", next_attempt_at_ms, error, message_uuid))

    async def next_send_due_ms(self) -> int | None:
        due: int | None = self._read_one("next_send_due", ())[0]
        return due

    # -- timers --------------------------------------------------------------------------------

    async def due_timers(self, *, now_ms: int, limit: int) -> list[str]:
        return [row[0] for row in self._read_all("due_timers", (now_ms, limit))]

    async def next_timer_due_ms(self) -> int | None:
        due: int | None = self._read_one("next_timer_due", ())[0]
        return due

    # -- inbox ---------------------------------------------------------------------------------

    async def claim_due_inbox(self, *, now_ms: int, limit: int, lease_ms: int) -> list[InboxEvent]:
        rows = await self._write(self._run("claim_inbox", now_ms + lease_ms, now_ms, now_ms, limit))
        return [
            InboxEvent(
                id=row[0],
                message_uuid=row[1],
                status=row[2],
                error_code=row[3],
                error_reason=row[4],
                price=row[5],
                due_at_ms=row[6],
            )
            for row in rows
        ]

    async def next_inbox_due_ms(self) -> int | None:
        due: int | None = self._read_one("next_inbox_due", ())[0]
        return due

    # -- webhooks ------------------------------------------------------------------------------

    async def claim_due_webhooks(
        self, *, now_ms: int, limit: int, lease_ms: int, exclude_applications: frozenset[str]
    ) -> list[WebhookJob]:
        excluded = json.dumps(sorted(exclude_applications))
        sql = self._queries["claim_webhooks"]

        def operation(connection: sqlite3.Connection) -> list[WebhookJob]:
            cursor = connection.execute(sql, (now_ms + lease_ms, now_ms, excluded, limit))
            return [WebhookJob(**row) for row in named_rows(cursor)]

        return await self._write(operation)

    async def next_webhook_due_ms(self) -> int | None:
        due: int | None = self._read_one("next_webhook_due", ())[0]
        return due

    async def record_webhook_attempts(self, attempts: Sequence[WebhookAttempt]) -> None:
        sql = self._queries["record_webhook_attempt"]
        rows = [
            (
                attempt.state,
                attempt.next_attempt_at_ms,
                attempt.status_code,
                attempt.error,
                attempt.at_ms if attempt.state == "delivered" else None,
                attempt.id,
                attempt.at_ms,
            )
            for attempt in attempts
        ]

        release = self._queries["release_final_report"]
        # A settled webhook (delivered or dead) may be the last one its final report waited for.
        settled = {(a.dispatch_uuid,) for a in attempts if a.state in ("delivered", "dead")}

        def operation(connection: sqlite3.Connection) -> None:
            connection.executemany(sql, rows)
            connection.executemany(release, settled)

        await self._write(operation)

    async def defer_webhooks(self, deferrals: Sequence[WebhookDeferral]) -> None:
        sql = self._queries["defer_webhook"]
        rows = [(deferral.until_ms, deferral.id) for deferral in deferrals]
        await self._write(lambda connection: connection.executemany(sql, rows).rowcount)

    async def wake_webhooks(self, *, application_id: str, url: str, now_ms: int) -> int:
        rows = await self._write(self._count("wake_webhooks", application_id, url, now_ms))
        return rows

    async def release_settled_final_reports(self) -> None:
        await self._write(self._run("release_settled_final_reports"))

    async def list_webhooks(self, dispatch_uuid: str) -> list[WebhookRecord]:
        return [WebhookRecord(**row) for row in self._read_named("list_webhooks", (dispatch_uuid,))]

    async def find_webhook(self, event_id: str) -> WebhookRecord | None:
        found = [WebhookRecord(**row) for row in self._read_named("find_webhook", (event_id,))]
        return found[0] if found else None

    async def list_webhooks_page(
        self, which: WebhookFilter, *, limit: int, before_id: int | None = None
    ) -> list[WebhookRecord]:
        """Newest first; `before_id` is the last `id` of the previous page."""
        parameters = {
            "application_id": which.application_id,
            "state": which.state,
            "dispatch_uuid": which.dispatch_uuid,
            "before_id": _AFTER_EVERY_ID if before_id is None else before_id,
            "limit": limit,
        }
        if which.dispatch_uuid is not None:
            query = "list_webhooks_of_workflow"
        elif which.application_id is None:
            query = "list_webhooks_everywhere"
        elif which.state == "dead":
            query = "list_dead_webhooks_of_application"
        else:
            query = "list_webhooks_of_application"
        return [WebhookRecord(**row) for row in self._read_named(query, parameters)]

    async def replay_webhook(self, webhook_id: int, *, now_ms: int) -> bool:
        """Deliver a delivered or dead webhook again; False if it is not settled."""
        sql = self._queries["replay_webhook"]
        parameters = {"id": webhook_id, "now_ms": now_ms}
        changed = await self._write(lambda c: c.execute(sql, parameters).rowcount)
        return bool(changed)

    async def replay_webhooks(self, which: WebhookFilter, *, now_ms: int, limit: int) -> int:
        """Replay up to `limit` settled webhooks (`which.state`: dead or delivered)."""
        query = {"dead": "replay_dead_webhooks", "delivered": "replay_delivered_webhooks"}
        sql = self._queries[query[which.state or "dead"]]
        parameters = {
            "application_id": which.application_id,
            "dispatch_uuid": which.dispatch_uuid,
            "now_ms": now_ms,
            "limit": limit,
        }
        changed: int = await self._write(lambda c: c.execute(sql, parameters).rowcount)
        return changed

    # -- retention -----------------------------------------------------------------------------

    async def delete_expired(self, *, before_ms: int, limit: int) -> Expired:
        """One small batch of what is older than the retention: settled webhooks, then ended
        workflows with nothing left to deliver (their messages and statuses with them)."""
        queries = self._queries

        def operation(connection: sqlite3.Connection) -> Expired:
            webhooks = connection.execute(queries["expire_webhooks"], (before_ms, limit)).rowcount
            found = connection.execute(queries["expired_workflows"], (before_ms, limit))
            uuids = json.dumps([row[0] for row in found.fetchall()])
            for name in (
                "delete_workflows_inbox",
                "delete_workflows_sandbox_sends",
                "delete_workflows_messages",
            ):
                connection.execute(queries[name], (uuids,))
            workflows = connection.execute(queries["delete_workflows"], (uuids,)).rowcount
            return Expired(webhooks=webhooks, workflows=workflows)

        return await self._write(operation)

    # -- recovery and the sandbox --------------------------------------------------------------

    async def release_leases(self) -> None:
        """On SQLite the serving process owns every queue: leases left are a dead process's."""
        queries = self._queries

        def operation(connection: sqlite3.Connection) -> None:
            for name in ("release_send_leases", "release_webhook_leases", "release_inbox_leases"):
                connection.execute(queries[name])

        await self._write(operation)

    async def sandbox_record_send(
        self, *, message_uuid: str, channel: str, recipient: str, outcome: str, now_ms: int
    ) -> int:
        """The sandbox's own log, committed before it answers; returns the attempt count."""
        rows = await self._write(
            self._run("sandbox_record_send", message_uuid, channel, recipient, outcome, now_ms)
        )
        attempts: int = rows[0][0]
        return attempts

    # -- one process owns an SQLite file: there is nobody to wake -------------------------------

    async def notify(self, payloads: Iterable[str]) -> None:
        return None

    async def listen(self, callback: Callable[[str], None]) -> None:
        return None
