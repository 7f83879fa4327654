"""The dashboard's reads: workflows and webhooks across applications, and the overview's counts.

Each answers within a page's time however many rows are stored, and none may hold up the
hot path: they run through `fetch_all_aside` (on SQLite, a connection and thread of their own,
never the event loop), at most `_AT_ONCE` at a time per process.

**A page of workflows** is one walk down one index, newest first. The index is that of the
most selective filter given: a recipient's range of `workflow_terms` (a few rows), a status
other than `completed` (`workflows_not_completed`), a channel's terms, an application's
workflows, or every workflow. The other filters are checked on the rows walked, which a rare
combination (a channel that an application never uses) could make a walk of every row. So a
filtered walk is bounded: at most `WALK_BUDGET` rows of its index, newest first (the floor of
those is found first, by a walk of the index alone); a page that is not full by then says how
far it searched, and its next page goes on from there. Pages are keyset (`before`: the last
id shown), never OFFSET, so a page costs the same at the millionth row as at the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opendispatch.ids import uuid7_time_prefix
from opendispatch.store import mappers
from opendispatch.store.connector import Connector
from opendispatch.store.records import WebhookRecord, WorkflowRecord

__all__ = [
    "WALK_BUDGET",
    "Browse",
    "ChannelFailover",
    "Outcomes",
    "Queues",
    "WorkflowFilter",
    "WorkflowPage",
    "channel_term",
    "recipient_term",
]

# Rows of its index a filtered page may walk. Measured on a million workflows (bench/
# dashboard.py): a page whose filters walk all of them costs 8-17 ms of the server's CPU, its
# rendering included; 1.5-6 ms for the others.
WALK_BUDGET = 10_000
_AT_ONCE = 2  # dashboard reads at once per process (PostgreSQL: pool connections they hold)
_AFTER_EVERY_UUID = "g"  # sorts after every canonical UUID
_AFTER_EVERY_ID = 2**63 - 1
_WORKFLOW_STATUSES_INDEXED = ("in_progress", "error", "cancelled")  # all but `completed`


def channel_term(channel: str) -> str:
    """The term `workflow_terms` holds for a workflow with a step on `channel`."""
    return f"channel:{channel}"


def recipient_term(recipient: str) -> str:
    """The term for a step to `recipient` (its `to.number`, or `to.id` for messenger)."""
    return f"to:{recipient}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFilter:
    """Which workflows a page shows; None: any."""

    application_id: str | None = None
    status: str | None = None
    channel: str | None = None
    recipient: str | None = None
    created_from_ms: int | None = None  # inclusive
    created_until_ms: int | None = None  # exclusive


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowPage:
    workflows: list[WorkflowRecord]
    # The next page is the workflows before this id (None: this is the last page).
    next_before: str | None
    # The page is short because the walk used its budget, not because nothing older matches:
    # the next page searches on from `next_before`.
    searched_only_to: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcomes:
    """The workflows accepted in one period, by their status now."""

    since_ms: int
    accepted: int
    in_progress: int
    error: int
    cancelled: int

    @property
    def completed(self) -> int:
        return self.accepted - self.in_progress - self.error - self.cancelled


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelFailover:
    channel: str
    sent: int  # messages on the channel
    failed_over: int  # of which the workflow moved on to its next message

    @property
    def rate(self) -> float:
        return self.failed_over / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Queues:
    sends_pending: int
    sends_in_flight: int
    timers: int
    webhooks_waiting: int
    webhooks_in_flight: int
    webhooks_held: int
    webhooks_failing: int
    webhooks_dead: int
    statuses_waiting: int


class Browse:
    def __init__(self, connector: Connector, *, walk_budget: int = WALK_BUDGET) -> None:
        self._connector = connector
        self._walk_budget = walk_budget
        self._at_once = asyncio.Semaphore(_AT_ONCE)

    async def _rows(self, query: str, parameters: dict[str, Any]) -> list[Any]:
        async with self._at_once:
            return list(await self._connector.fetch_all_aside(query, parameters))

    # -- workflows ---------------------------------------------------------------------------

    async def workflows(
        self, which: WorkflowFilter, *, limit: int, before: str | None = None
    ) -> WorkflowPage:
        upper = before or _AFTER_EVERY_UUID
        if which.created_until_ms is not None:
            upper = min(upper, uuid7_time_prefix(which.created_until_ms))
        lower = "" if which.created_from_ms is None else uuid7_time_prefix(which.created_from_ms)
        floor_of_range = lower
        query, walked_by, checked = _plan(which)
        filters: dict[str, Any] = {
            "application_id": which.application_id,
            "status": which.status,
            "channel": None if which.channel is None else channel_term(which.channel),
            "recipient": None if which.recipient is None else recipient_term(which.recipient),
        }
        walk: dict[str, Any] = {name: filters[name] for name in walked_by}
        if query == "dashboard_workflows_of_term":
            # The term walked is not checked again on its own rows.
            (name,) = walked_by
            walk = {"term": filters[name]}
            filters[name] = None
        budget_used = False
        if checked and lower < upper:
            (bound,) = await self._rows(
                f"{query}_walk",
                walk | {"before": upper, "after": lower, "budget": self._walk_budget},
            )
            if bound["walked"] >= self._walk_budget:
                lower = max(lower, str(bound["floor"]))
                budget_used = True
        rows = await self._rows(
            query,
            filters | walk | {"before": upper, "after": lower, "limit": limit + 1},
        )
        records = [mappers.workflow_record(row) for row in rows]
        if len(records) > limit:
            return WorkflowPage(
                workflows=records[:limit], next_before=records[limit - 1].dispatch_uuid
            )
        if budget_used:
            # The walk stopped at its budget: go on from there, if anything is left below.
            (older,) = await self._rows(
                f"{query}_walk", walk | {"before": lower, "after": floor_of_range, "budget": 1}
            )
            if older["walked"]:
                return WorkflowPage(workflows=records, next_before=lower, searched_only_to=lower)
        return WorkflowPage(workflows=records, next_before=None)

    # -- webhooks ----------------------------------------------------------------------------

    async def dead_webhooks(
        self, *, application_id: str | None, limit: int, before_id: int | None = None
    ) -> list[WebhookRecord]:
        return await self._webhooks("dashboard_dead_webhooks", application_id, limit, before_id)

    async def failing_webhooks(
        self, *, application_id: str | None, limit: int, before_id: int | None = None
    ) -> list[WebhookRecord]:
        """Webhooks still being retried after a failed attempt."""
        return await self._webhooks("dashboard_failing_webhooks", application_id, limit, before_id)

    async def _webhooks(
        self, query: str, application_id: str | None, limit: int, before_id: int | None
    ) -> list[WebhookRecord]:
        rows = await self._rows(
            query,
            {
                "application_id": application_id,
                "before_id": _AFTER_EVERY_ID if before_id is None else before_id,
                "limit": limit,
            },
        )
        return [mappers.webhook_record(row) for row in rows]

    # -- the overview ------------------------------------------------------------------------

    async def outcomes(self, bounds_ms: Sequence[int]) -> list[Outcomes]:
        """One `Outcomes` per period between consecutive `bounds_ms`, oldest first."""
        prefixes = [uuid7_time_prefix(ms) for ms in bounds_ms]
        starts = dict(zip(prefixes, bounds_ms, strict=True))
        rows = await self._rows("dashboard_outcomes", {"bounds": prefixes})
        return [
            Outcomes(
                since_ms=starts[row["since"]],
                accepted=row["accepted"],
                in_progress=row["in_progress"],
                error=row["error"],
                cancelled=row["cancelled"],
            )
            for row in rows
        ]

    async def failover_by_channel(self, *, since_ms: int) -> list[ChannelFailover]:
        rows = await self._rows(
            "dashboard_failover_by_channel", {"since": uuid7_time_prefix(since_ms)}
        )
        return [
            ChannelFailover(
                channel=row["channel"], sent=row["sent"], failed_over=int(row["failed_over"] or 0)
            )
            for row in rows
        ]

    async def queues(self) -> Queues:
        (row,) = await self._rows("dashboard_queues", {})
        return Queues(**{name: int(row[name]) for name in Queues.__dataclass_fields__})


def _plan(which: WorkflowFilter) -> tuple[str, tuple[str, ...], bool]:
    """The query whose index the walk follows, the filter that index answers by itself, and
    whether any other filter is left to check on the rows walked."""
    given = {
        name
        for name in ("application_id", "status", "channel", "recipient")
        if getattr(which, name) is not None
    }
    drive: tuple[str, ...]
    if which.recipient is not None:
        query, drive = "dashboard_workflows_of_term", ("recipient",)
    elif which.status in _WORKFLOW_STATUSES_INDEXED:
        query, drive = "dashboard_workflows_of_status", ("status",)
    elif which.channel is not None:
        query, drive = "dashboard_workflows_of_term", ("channel",)
    elif which.application_id is not None:
        query, drive = "dashboard_workflows_of_application", ("application_id",)
    else:
        query, drive = "dashboard_workflows", ()
    return query, drive, bool(given - set(drive))
