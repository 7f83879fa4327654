"""The work queues on SQLite: sends, timers, provider statuses (inbox) and webhooks.

A claim marks rows with a lease (`lease_until_ms`) in one UPDATE ... RETURNING, so the same
queries would serve several workers; on SQLite one process owns the file, so at start every
lease left by a crashed predecessor is released at once (`release_leases`).
"""

from __future__ import annotations

import json
import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from opendispatch.store.records import (
    InboxEvent,
    SendJob,
    WebhookAttempt,
    WebhookJob,
    WebhookRecord,
)
from opendispatch.store.sqlite.batching import WriteOperation

__all__ = ["SqliteOutbox"]

T = TypeVar("T")


class SqliteOutbox:
    """Queue operations of `SqliteStore`; it supplies the connection plumbing below."""

    _queries: dict[str, str]

    @abstractmethod
    async def _write(self, operation: WriteOperation[T]) -> T: ...

    @abstractmethod
    def _read_one(self, query: str, parameters: tuple[Any, ...]) -> Any: ...

    @abstractmethod
    def _read_all(self, query: str, parameters: tuple[Any, ...]) -> list[Any]: ...

    def _run(self, query: str, *parameters: Any) -> WriteOperation[list[Any]]:
        sql = self._queries[query]
        return lambda connection: connection.execute(sql, parameters).fetchall()

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
        rows = await self._write(
            self._run("claim_webhooks", now_ms + lease_ms, now_ms, now_ms, excluded, limit)
        )
        return [
            WebhookJob(
                id=row[0],
                event_id=row[1],
                dispatch_uuid=row[7],
                application_id=row[2],
                url=row[3],
                payload=row[4],
                attempts=row[5],
                created_at_ms=row[6],
            )
            for row in rows
        ]

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

    async def release_settled_final_reports(self) -> None:
        await self._write(self._run("release_settled_final_reports"))

    async def list_webhooks(self, dispatch_uuid: str) -> list[WebhookRecord]:
        return [
            WebhookRecord(
                event_id=row[0],
                kind=row[1],
                message_uuid=row[2],
                status=row[3],
                url=row[4],
                state=row[5],
                attempts=row[6],
                next_attempt_at_ms=row[7],
                last_status_code=row[8],
                last_error=row[9],
                created_at_ms=row[10],
                delivered_at_ms=row[11],
            )
            for row in self._read_all("list_webhooks", (dispatch_uuid,))
        ]

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
