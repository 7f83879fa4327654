"""What happens on the database, read as it happens (`opendispatch tail`).

No log of events is written for this: every event a person follows already leaves a row
the hot path writes anyway. A workflow accepted is its row (its id a UUIDv7: new ones sort
last); a status and a final report are each a webhook row (one per event, ids in insert
order); a failover shows as the first status of a later step's message; a failed delivery
stamps its webhook's `failed_at_ms` (migration 0012, a partial index of webhooks that ever
failed). Each read here is a range walk of one index from a position, so following costs
a few small reads per poll however large the tables are. A workflow of the Messages API v1
ends without a final report: its end is read from its row (the partial index of ended
workflows, by when the row last changed), and the time it ended from its state.

Positions are where reading resumes: rows may commit out of order (an id is taken before
its transaction commits, and on PostgreSQL several commit at once), so the follower reads
again from a position a little behind what it has seen and drops repeats (see
`cli.following`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opendispatch.store.connector import Connector
from opendispatch.templates import MESSAGES_V1

__all__ = ["ActivityReader", "EndedWorkflowRow", "FailedDelivery", "NewWorkflowRow", "WebhookEvent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewWorkflowRow:
    dispatch_uuid: str
    application_id: str
    channels: tuple[str, ...]  # empty for workflows stored before migration 0010
    created_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookEvent:
    """A status or a final report, with the step and provider of its message."""

    id: int
    dispatch_uuid: str
    application_id: str
    kind: str  # message_status | final_report
    message_uuid: str | None
    status: str
    payload: str  # its body: the status's own time, error and price
    created_at_ms: int
    step: int | None
    channel: str | None
    provider: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndedWorkflowRow:
    """A workflow that ends without a final report, as its row is now: its state says when
    it ended (the row changes again if a late status arrives)."""

    dispatch_uuid: str
    application_id: str
    status: str
    state_json: str
    updated_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedDelivery:
    id: int
    dispatch_uuid: str
    application_id: str
    kind: str
    message_uuid: str | None
    status: str
    state: str  # pending (to be tried again) or dead
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at_ms: int
    failed_at_ms: int
    step: int | None


class ActivityReader:
    def __init__(self, connector: Connector) -> None:
        self._connector = connector

    async def webhooks_end(self) -> int:
        """The position after every webhook stored now."""
        row = await self._connector.fetch_one("activity_webhooks_end")
        return int(row["position"]) if row is not None else 1

    async def workflows(
        self, position: str, *, application_id: str | None, limit: int
    ) -> list[NewWorkflowRow]:
        rows = await self._connector.fetch_all(
            "activity_workflows", _where(position, application_id, limit)
        )
        return [
            NewWorkflowRow(
                dispatch_uuid=row["dispatch_uuid"],
                application_id=row["application_id"],
                channels=tuple(filter(None, (row["channels"] or "").split(","))),
                created_at_ms=row["created_at_ms"],
            )
            for row in rows
        ]

    async def webhooks(
        self, position: int, *, application_id: str | None, limit: int
    ) -> list[WebhookEvent]:
        rows = await self._connector.fetch_all(
            "activity_webhooks", _where(position, application_id, limit)
        )
        return [WebhookEvent(**row) for row in rows]

    async def ended_without_report(
        self, position: int, *, application_id: str | None, limit: int
    ) -> list[EndedWorkflowRow]:
        """Ended workflows of the Messages API v1 (which has no final report), by when their
        row last changed, from `position` (ms) on."""
        parameters = {**_where(position, application_id, limit), "template": MESSAGES_V1}
        rows = await self._connector.fetch_all("activity_ended_workflows", parameters)
        return [EndedWorkflowRow(**row) for row in rows]

    async def failed_webhooks(
        self, position: int, *, application_id: str | None, limit: int
    ) -> list[FailedDelivery]:
        rows = await self._connector.fetch_all(
            "activity_failed_webhooks", _where(position, application_id, limit)
        )
        return [FailedDelivery(**row) for row in rows]


def _where(position: object, application_id: str | None, limit: int) -> dict[str, Any]:
    return {"position": position, "application_id": application_id, "limit": limit}
