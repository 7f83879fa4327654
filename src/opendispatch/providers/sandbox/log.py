"""The sandbox's own record of what it was asked to send, written before it answers (as a
real provider's would be). Tests read it to prove that no step went out twice; its first
send time is what the simulated statuses count from, so a retry after a crash keeps them.

Its table lives beside the store's, but the store never touches it: the log runs its own
named queries (`sqlite.sql`, `postgres.sql`) through the same connector. On PostgreSQL
concurrent sends are logged together, one statement per batch (see `coalesce`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from opendispatch.store.coalesce import AGAIN, Again, Coalescer
from opendispatch.store.connector import Connector

__all__ = ["LoggedSend", "SandboxLog"]


@dataclass(frozen=True, slots=True)
class LoggedSend:
    attempts: int
    first_sent_at_ms: int


class _Send(NamedTuple):
    message_uuid: str
    channel: str
    recipient: str
    outcome: str
    sent_at_ms: int


class SandboxLog:
    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        connector.add_queries("opendispatch.providers.sandbox", f"{connector.dialect}.sql")
        self._batches: Coalescer[_Send, LoggedSend] | None = (
            None if connector.sole_owner else Coalescer(self._record_batch)
        )

    async def record(
        self, *, message_uuid: str, channel: str, recipient: str, outcome: str, now_ms: int
    ) -> LoggedSend:
        """Log one send; committed before this returns."""
        send = _Send(message_uuid, channel, recipient, outcome, now_ms)
        if self._batches is not None:
            return await self._batches.submit(send)
        [row] = await self._connector.execute_many_returning(
            "sandbox_record_sends", [send._asdict()]
        )
        return LoggedSend(row["attempts"], row["first_sent_at_ms"])

    async def _record_batch(self, batch: list[_Send]) -> list[LoggedSend | Again]:
        # One message at most once per statement (ON CONFLICT cannot touch a row twice): a
        # repeat, which only a lease that ran out mid-send can cause, waits for the next.
        first: dict[str, _Send] = {}
        for send in batch:
            first.setdefault(send.message_uuid, send)
        rows = await self._connector.execute_many_returning(
            "sandbox_record_sends", [send._asdict() for send in first.values()]
        )
        logged = {
            row["message_uuid"]: LoggedSend(row["attempts"], row["first_sent_at_ms"])
            for row in rows
        }
        return [
            logged[send.message_uuid] if first[send.message_uuid] is send else AGAIN
            for send in batch
        ]

    async def expire(self, *, before_ms: int, limit: int) -> int:
        """Forget sends first made before `before_ms` (retention), a batch at a time."""
        return await self._connector.execute(
            "sandbox_expire_sends", {"before_ms": before_ms, "limit": limit}
        )

    async def forget_application(self, application_id: str) -> int:
        """Forget what was sent for an application's workflows (its data is being purged);
        how many sends. Before the store deletes their messages, which lead to them."""
        return await self._connector.execute(
            "sandbox_forget_application", {"application_id": application_id}
        )

    async def stop(self) -> None:
        if self._batches is not None:
            await self._batches.wait_idle()
