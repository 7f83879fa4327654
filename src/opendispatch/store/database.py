"""`DatabaseStore`: every storage operation, written once, over a connector per database.

The operations are the same on SQLite and PostgreSQL (applications, reads, claims, due times,
webhook bookkeeping, recovery, retention): each is a named query (`sql/<dialect>.sql`, same
name and parameters in both) run through the `Connector`, and rows come back by column name
to one set of mappers. What differs per database is the SQL text and the write strategy for
the engine's transactions (`create_workflow`, `apply`): group commit on SQLite
(`sqlite/transitions.py`), batched version-checked statements on PostgreSQL
(`postgres/transitions.py`). Both turn a transition into rows in one place
(`transition_rows.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from opendispatch.engine.model import WorkflowStatus
from opendispatch.errors import StoreError
from opendispatch.ids import uuid7_time_prefix
from opendispatch.store import mappers
from opendispatch.store.connector import Connector, Statement
from opendispatch.store.protocol import Store, TransitionFunction
from opendispatch.store.records import (
    EVERY_WORKFLOW,
    NO_SIDE_WRITES,
    Application,
    ApplicationChange,
    ApplicationCredentials,
    DeletedApplication,
    EarlierRequest,
    Expired,
    InboxEvent,
    LoadedWorkflow,
    MessageForCallback,
    MessageOwner,
    NewInboxEvent,
    NewWorkflow,
    ProviderAccountRecord,
    ProviderRoute,
    QueueCounts,
    SendJob,
    SendRecord,
    SideWrites,
    Transition,
    UpdatedApplication,
    WebhookAttempt,
    WebhookDeferral,
    WebhookFilter,
    WebhookJob,
    WebhookRecord,
    WorkflowFilter,
    WorkflowRecord,
)

__all__ = ["DatabaseStore", "WriteStrategy"]

# Every canonical UUID string sorts before "g" (hex digits and hyphens, compared byte-wise), so
# this stands for "no upper bound" in `list_workflows`.
_AFTER_EVERY_UUID = "g"
_AFTER_EVERY_ID = 2**63 - 1  # "no upper bound" for lists that page down by id
_QUEUE_COUNTS = tuple(QueueCounts.__dataclass_fields__)

# Deleting an application, in one transaction, in this order: its row first (on PostgreSQL a
# workflow being created for it then waits, and sees it gone), then what it has running.
# `delete_application` reads the counts of the second to fourth.
_ENDING = (
    "mark_application_deleted",
    "end_application_workflows",
    "cancel_application_sends",
    "drop_application_webhooks",
    "delete_application_routes",
)
_KEEPING = ("wipe_application_credentials",)
_PURGING = (
    "lock_application_workflows",  # on PostgreSQL: writers of them finish first, or wait
    "purge_application_inbox",
    "purge_application_messages",
    "purge_application_webhooks",
    "purge_application_workflows",
    "purge_application_tokens",
    "purge_application_idempotency_keys",
    "purge_application",
)


class WriteStrategy(Protocol):
    """How a database writes the engine's transactions (see the module docstring)."""

    async def create_workflow(
        self, workflow: NewWorkflow, transition: Transition
    ) -> EarlierRequest | None: ...

    async def apply(
        self,
        *,
        transition: TransitionFunction,
        dispatch_uuid: str | None = None,
        message_uuid: str | None = None,
        side: SideWrites = NO_SIDE_WRITES,
    ) -> Transition | None: ...

    async def stop(self) -> None:
        """Let writes on their way finish."""


class DatabaseStore:
    def __init__(self, connector: Connector, writes: WriteStrategy) -> None:
        self.connector = connector
        self.dialect = connector.dialect
        self._writes = writes

    async def open(self) -> None:
        await self.connector.open()

    async def close(self) -> None:
        await self._writes.stop()
        await self.connector.close()

    @property
    def failure(self) -> str | None:
        """Why the database cannot be used any more (deleted, replaced, damaged), if so:
        `/health` says it. Only SQLite watches its file; PostgreSQL reports nothing here."""
        failure: str | None = getattr(self.connector, "failure", None)
        return failure

    # -- applications ----------------------------------------------------------------------

    async def create_application(self, credentials: ApplicationCredentials) -> None:
        app = credentials.application
        await self.connector.transaction(
            [
                Statement(
                    "insert_account",
                    {
                        "api_key": app.api_key,
                        "api_secret_hash": credentials.api_secret_hash,
                        "signature_secret": credentials.signature_secret,
                        "created_at_ms": app.created_at_ms,
                    },
                ),
                Statement(
                    "insert_application",
                    {
                        "application_id": app.application_id,
                        "api_key": app.api_key,
                        "name": app.name,
                        "status_url": app.status_url,
                        "final_report_url": app.final_report_url,
                        "public_key_pem": credentials.public_key_pem,
                        "created_at_ms": app.created_at_ms,
                        "live": app.live,
                    },
                ),
            ]
        )

    async def list_applications(self) -> list[Application]:
        return [
            mappers.application(row) for row in await self.connector.fetch_all("list_applications")
        ]

    async def get_application(self, application_id: str) -> Application | None:
        row = await self.connector.fetch_one("get_application", {"application_id": application_id})
        return None if row is None else mappers.application(row)

    async def update_application(
        self, application_id: str, change: ApplicationChange, *, now_ms: int
    ) -> UpdatedApplication | None:
        """Change its settings, and send its webhooks not delivered yet to its new URLs
        (due at once), in one transaction; None if there is no such application."""
        found = await self.get_application(application_id)
        if found is None:
            return None
        status_url = change.status_url or found.status_url
        final_report_url = change.final_report_url or found.final_report_url
        parameters = {
            "application_id": application_id,
            "name": change.name,
            "status_url": change.status_url,
            "final_report_url": change.final_report_url,
            "now_ms": now_ms,
        }
        updated, moved = await self.connector.transaction(
            [
                Statement("update_application", parameters),
                Statement(
                    "repoint_webhooks",
                    parameters
                    | {
                        "status_url": status_url,
                        "final_report_url": final_report_url or status_url,
                    },
                ),
            ]
        )
        application = await self.get_application(application_id) if updated else None
        if application is None:
            return None
        return UpdatedApplication(application=application, webhooks_moved=moved)

    async def rotate_api_secret(
        self, application_id: str, api_secret_hash: str, *, previous_expires_at_ms: int | None
    ) -> bool:
        """Replace its API secret (by its hash); the one replaced stays good until
        `previous_expires_at_ms` (None: not at all). False if there is no such application."""
        changed = await self.connector.execute(
            "rotate_api_secret",
            {
                "application_id": application_id,
                "api_secret_hash": api_secret_hash,
                "previous_expires_at_ms": previous_expires_at_ms,
            },
        )
        return changed > 0

    async def delete_application(
        self, application_id: str, *, purge: bool, now_ms: int
    ) -> DeletedApplication | None:
        """Refuse its credentials from now on, end its running workflows (in `error`, without
        a final report), cancel its sends not made yet, drop its webhooks not delivered yet
        and its provider routes, in one transaction. Its data is kept (no query finds it,
        retention expires it) unless `purge`: then its rows are deleted too. None if there
        is no such application (one deleted already can still be purged)."""
        row = await self.connector.fetch_one(
            "find_application_to_delete", {"application_id": application_id}
        )
        if row is None or (row["deleted_at_ms"] is not None and not purge):
            return None
        parameters = {"application_id": application_id, "api_key": row["api_key"], "now_ms": now_ms}
        queries = (*_ENDING, *(_PURGING if purge else _KEEPING))
        changed = await self.connector.transaction(
            [Statement(query, parameters) for query in queries]
        )
        return DeletedApplication(
            application_id=application_id,
            purged=purge,
            workflows_ended=changed[1],
            sends_cancelled=changed[2],
            webhooks_dropped=changed[3],
        )

    async def find_credentials_by_api_key(self, api_key: str) -> ApplicationCredentials | None:
        row = await self.connector.fetch_one("credentials_by_api_key", {"api_key": api_key})
        return None if row is None else mappers.credentials(row)

    async def find_credentials(self, application_id: str) -> ApplicationCredentials | None:
        row = await self.connector.fetch_one(
            "credentials_by_application_id", {"application_id": application_id}
        )
        return None if row is None else mappers.credentials(row)

    async def application_is_live(self, application_id: str) -> bool | None:
        """None: no such application."""
        row = await self.connector.fetch_one(
            "application_is_live", {"application_id": application_id}
        )
        return None if row is None else bool(row["live"])

    # -- provider accounts and routes --------------------------------------------------------

    async def save_provider_account(
        self, account: ProviderAccountRecord, *, replace: bool, now_ms: int
    ) -> bool:
        """Store `account`; False if the name is taken and `replace` is not set."""
        parameters = {
            "name": account.name,
            "kind": account.kind,
            "base_url": account.base_url,
            "settings_json": json.dumps(account.settings, sort_keys=True),
            "secrets": account.sealed_secrets,
            "now_ms": now_ms,
        }
        if replace and await self.connector.execute("update_provider_account", parameters):
            return True
        if await self.get_provider_account(account.name) is not None:
            return False
        await self.connector.execute("insert_provider_account", parameters)
        return True

    async def list_provider_accounts(self) -> list[ProviderAccountRecord]:
        rows = await self.connector.fetch_all("list_provider_accounts")
        return [mappers.provider_account(row) for row in rows]

    async def get_provider_account(self, name: str) -> ProviderAccountRecord | None:
        row = await self.connector.fetch_one("get_provider_account", {"name": name})
        return None if row is None else mappers.provider_account(row)

    async def remove_provider_account(self, name: str) -> list[tuple[str, str]]:
        """Remove it unless routes use it: then nothing changes and those (application,
        channel) pairs are returned."""
        using = await self.connector.fetch_all("routes_using_provider", {"name": name})
        if using:
            return [(row["application_id"], row["channel"]) for row in using]
        await self.connector.execute("delete_provider_account", {"name": name})
        return []

    async def set_route(self, application_id: str, channel: str, providers: Sequence[str]) -> None:
        """Replace the route of `channel` (an empty list removes it)."""
        key = {"application_id": application_id, "channel": channel}
        await self.connector.transaction(
            [
                Statement("delete_route", key),
                *(
                    Statement("insert_route_stop", key | {"position": n, "provider": provider})
                    for n, provider in enumerate(providers)
                ),
            ]
        )

    async def list_routes(self, application_id: str | None = None) -> list[ProviderRoute]:
        if application_id is None:
            rows = await self.connector.fetch_all("list_routes")
        else:
            rows = await self.connector.fetch_all(
                "list_routes_of_application", {"application_id": application_id}
            )
        grouped: dict[tuple[str, str], list[str]] = {}
        for row in rows:  # ordered by position within each route
            grouped.setdefault((row["application_id"], row["channel"]), []).append(row["provider"])
        return [
            ProviderRoute(application_id=app, channel=channel, providers=tuple(providers))
            for (app, channel), providers in grouped.items()
        ]

    # -- workflows -------------------------------------------------------------------------

    async def create_workflow(
        self, workflow: NewWorkflow, transition: Transition
    ) -> EarlierRequest | None:
        return await self._writes.create_workflow(workflow, transition)

    async def apply(
        self,
        *,
        transition: TransitionFunction,
        dispatch_uuid: str | None = None,
        message_uuid: str | None = None,
        side: SideWrites = NO_SIDE_WRITES,
    ) -> Transition | None:
        return await self._writes.apply(
            transition=transition, dispatch_uuid=dispatch_uuid, message_uuid=message_uuid, side=side
        )

    async def get_workflow(self, application_id: str, dispatch_uuid: str) -> WorkflowRecord | None:
        row = await self.connector.fetch_one(
            "get_workflow", {"dispatch_uuid": dispatch_uuid, "application_id": application_id}
        )
        return None if row is None else mappers.workflow_record(row)

    async def load_workflow(self, dispatch_uuid: str) -> LoadedWorkflow | None:
        row = await self.connector.fetch_one("load_workflow", {"dispatch_uuid": dispatch_uuid})
        return None if row is None else mappers.loaded_workflow(row)

    async def list_workflows(
        self,
        application_id: str,
        *,
        limit: int,
        before: str | None = None,
        where: WorkflowFilter = EVERY_WORKFLOW,
    ) -> list[WorkflowRecord]:
        # The API names each workflow uuid7(created_at_ms): its creation time is the start of
        # its id, so a time range bounds the index walk instead of filtering it.
        upper = before or _AFTER_EVERY_UUID
        if where.created_before_ms is not None:
            upper = min(upper, uuid7_time_prefix(where.created_before_ms))
        parameters = {
            "application_id": application_id,
            "before": upper,
            "after": ""
            if where.created_after_ms is None
            else uuid7_time_prefix(where.created_after_ms),
            "channel": None if where.channel is None else mappers.channel_token(where.channel),
            "limit": limit,
        }
        statuses = sorted(where.statuses)
        if not statuses or len(statuses) == len(WorkflowStatus):
            rows = await self.connector.fetch_all("list_workflows", parameters)
        else:
            # One index walk per status, each at most a page long, merged: an `IN` over the
            # status index would read every match to sort them.
            rows = []
            for status in statuses:
                rows += await self.connector.fetch_all(
                    "list_workflows_of_status", parameters | {"status": status.value}
                )
            rows.sort(key=lambda row: str(row["dispatch_uuid"]), reverse=True)
        return [mappers.workflow_record(row) for row in rows[:limit]]

    async def unstarted_workflows(self, limit: int) -> list[str]:
        rows = await self.connector.fetch_all("unstarted_workflows", {"limit": limit})
        return [row["dispatch_uuid"] for row in rows]

    async def message_owner(self, message_uuid: str) -> MessageOwner | None:
        row = await self.connector.fetch_one("message_owner", {"message_uuid": message_uuid})
        return None if row is None else mappers.message_owner(row)

    # -- sends -----------------------------------------------------------------------------

    async def claim_due_sends(self, *, now_ms: int, limit: int, lease_ms: int) -> list[SendJob]:
        rows = await self.connector.execute_returning(
            "claim_sends", self._claim(now_ms, limit, lease_ms)
        )
        return [mappers.send_job(row) for row in rows]

    async def retry_send(
        self, message_uuid: str, *, next_attempt_at_ms: int, error: str, provider: str = ""
    ) -> None:
        await self.connector.execute(
            "retry_send",
            {
                "message_uuid": message_uuid,
                "next_attempt_at_ms": next_attempt_at_ms,
                "error": error,
                "provider": provider,
                "lease_owner": self.connector.lease_owner,
            },
        )

    async def send_outcome_unknown(self, message_uuid: str, *, provider: str, error: str) -> None:
        await self.connector.execute(
            "send_outcome_unknown",
            {
                "message_uuid": message_uuid,
                "provider": provider,
                "error": error,
                "lease_owner": self.connector.lease_owner,
            },
        )

    async def defer_send(self, message_uuid: str, *, next_attempt_at_ms: int, reason: str) -> None:
        await self.connector.execute(
            "defer_send",
            {
                "message_uuid": message_uuid,
                "next_attempt_at_ms": next_attempt_at_ms,
                "error": reason,
                "lease_owner": self.connector.lease_owner,
            },
        )

    async def send_records(self, dispatch_uuid: str) -> list[SendRecord]:
        rows = await self.connector.fetch_all("send_records", {"dispatch_uuid": dispatch_uuid})
        return [mappers.send_record(row) for row in rows]

    async def message_by_provider_id(self, provider_message_id: str) -> str | None:
        row = await self.connector.fetch_one(
            "message_by_provider_id", {"provider_message_id": provider_message_id}
        )
        return None if row is None else str(row["message_uuid"])

    async def message_for_callback(self, message_uuid: str) -> MessageForCallback | None:
        row = await self.connector.fetch_one("message_for_callback", {"message_uuid": message_uuid})
        return None if row is None else mappers.message_for_callback(row)

    async def next_send_due_ms(self) -> int | None:
        return await self._due("next_send_due")

    # -- timers ----------------------------------------------------------------------------

    async def due_timers(self, *, now_ms: int, limit: int) -> list[str]:
        rows = await self.connector.fetch_all("due_timers", {"now_ms": now_ms, "limit": limit})
        return [row["dispatch_uuid"] for row in rows]

    async def next_timer_due_ms(self) -> int | None:
        return await self._due("next_timer_due")

    # -- the inbox: provider statuses waiting to be applied ---------------------------------

    async def receive_statuses(self, events: Sequence[NewInboxEvent]) -> None:
        await self.connector.execute_many(
            "insert_inbox_events",
            [
                {
                    "message_uuid": event.message_uuid,
                    "status": event.status,
                    "error_code": event.error_code,
                    "error_reason": event.error_reason,
                    "price": event.price,
                    "due_at_ms": event.due_at_ms,
                    "occurred_at_ms": event.due_at_ms
                    if event.occurred_at_ms is None
                    else event.occurred_at_ms,
                    "provider_message_id": event.provider_message_id,
                }
                for event in events
            ],
        )

    async def claim_due_inbox(self, *, now_ms: int, limit: int, lease_ms: int) -> list[InboxEvent]:
        rows = await self.connector.execute_returning(
            "claim_inbox", self._claim(now_ms, limit, lease_ms)
        )
        return [mappers.inbox_event(row) for row in rows]

    async def next_inbox_due_ms(self) -> int | None:
        return await self._due("next_inbox_due")

    # -- webhooks --------------------------------------------------------------------------

    async def claim_due_webhooks(
        self, *, now_ms: int, limit: int, lease_ms: int, exclude_applications: frozenset[str]
    ) -> list[WebhookJob]:
        parameters = self._claim(now_ms, limit, lease_ms) | {
            "excluded": sorted(exclude_applications)
        }
        rows = await self.connector.execute_returning("claim_webhooks", parameters)
        return [mappers.webhook_job(row) for row in rows]

    async def next_webhook_due_ms(self) -> int | None:
        return await self._due("next_webhook_due")

    async def record_webhook_attempts(self, attempts: Sequence[WebhookAttempt]) -> None:
        """Record outcomes and release the final reports they were the last to wait for
        (on PostgreSQL ordered by row locks against a transition writing one: migration 0005;
        on SQLite a trigger, the one writer serialising everything)."""
        latest = {attempt.id: attempt for attempt in attempts}  # as applied in order: last wins
        await self.connector.execute_many(
            "record_webhook_attempts",
            [
                {
                    "id": attempt.id,
                    "state": attempt.state,
                    "next_attempt_at_ms": attempt.next_attempt_at_ms,
                    "status_code": attempt.status_code,
                    "error": attempt.error,
                    "delivered_at_ms": attempt.at_ms if attempt.state == "delivered" else None,
                    "at_ms": attempt.at_ms,
                }
                for attempt in sorted(latest.values(), key=lambda attempt: attempt.id)
            ],
        )

    async def defer_webhooks(self, deferrals: Sequence[WebhookDeferral]) -> None:
        owner = self.connector.lease_owner
        await self.connector.execute_many(
            "defer_webhooks",
            [{"id": d.id, "until_ms": d.until_ms, "lease_owner": owner} for d in deferrals],
        )

    async def wake_webhooks(self, *, application_id: str, url: str, now_ms: int) -> int:
        return await self.connector.execute(
            "wake_webhooks", {"application_id": application_id, "url": url, "now_ms": now_ms}
        )

    async def release_settled_final_reports(self) -> None:
        await self.connector.execute("release_settled_final_reports")

    async def list_webhooks(self, dispatch_uuid: str) -> list[WebhookRecord]:
        rows = await self.connector.fetch_all("list_webhooks", {"dispatch_uuid": dispatch_uuid})
        return [mappers.webhook_record(row) for row in rows]

    async def list_webhooks_page(
        self, which: WebhookFilter, *, limit: int, before_id: int | None = None
    ) -> list[WebhookRecord]:
        if which.dispatch_uuid is not None:
            query = "list_webhooks_of_workflow"
        elif which.application_id is None:
            query = "list_webhooks_everywhere"
        elif which.state == "dead":
            query = "list_dead_webhooks_of_application"
        else:
            query = "list_webhooks_of_application"
        rows = await self.connector.fetch_all(
            query,
            {
                "application_id": which.application_id,
                "state": which.state,
                "dispatch_uuid": which.dispatch_uuid,
                "before_id": _AFTER_EVERY_ID if before_id is None else before_id,
                "limit": limit,
            },
        )
        return [mappers.webhook_record(row) for row in rows]

    async def find_webhook(self, event_id: str) -> WebhookRecord | None:
        row = await self.connector.fetch_one("find_webhook", {"event_id": event_id})
        return None if row is None else mappers.webhook_record(row)

    async def replay_webhook(self, webhook_id: int, *, now_ms: int) -> bool:
        changed = await self.connector.execute(
            "replay_webhook", {"id": webhook_id, "now_ms": now_ms}
        )
        return changed > 0

    async def replay_webhooks(self, which: WebhookFilter, *, now_ms: int, limit: int) -> int:
        query = {"dead": "replay_dead_webhooks", "delivered": "replay_delivered_webhooks"}
        return await self.connector.execute(
            query[which.state or "dead"],
            {
                "application_id": which.application_id,
                "dispatch_uuid": which.dispatch_uuid,
                "now_ms": now_ms,
                "limit": limit,
            },
        )

    async def count_replayable_webhooks(self, which: WebhookFilter) -> int:
        """How many webhooks `replay_webhooks` would replay in all (a progress total)."""
        query = {"dead": "count_dead_webhooks", "delivered": "count_delivered_webhooks"}
        row = await self.connector.fetch_one(
            query[which.state or "dead"],
            {"application_id": which.application_id, "dispatch_uuid": which.dispatch_uuid},
        )
        return 0 if row is None else int(row["count"])

    # -- JWTs seen -------------------------------------------------------------------------

    async def remember_token(
        self, application_id: str, jti: str, *, expires_at_ms: int, now_ms: int
    ) -> bool:
        changed = await self.connector.execute(
            "remember_token",
            {
                "application_id": application_id,
                "jti": jti,
                "expires_at_ms": expires_at_ms,
                "now_ms": now_ms,
            },
        )
        return changed > 0

    async def forget_expired_tokens(self, *, now_ms: int, limit: int) -> int:
        return await self.connector.execute(
            "forget_expired_tokens", {"now_ms": now_ms, "limit": limit}
        )

    # -- idempotency keys ------------------------------------------------------------------

    async def forget_idempotency_keys(self, *, before_ms: int, limit: int) -> int:
        return await self.connector.execute(
            "forget_idempotency_keys", {"before_ms": before_ms, "limit": limit}
        )

    # -- metrics -----------------------------------------------------------------------------

    async def queue_counts(self, now_ms: int) -> QueueCounts:
        """How much waits in each queue: counts that walk as many index entries as there are
        rows to count, so they run aside, off the event loop (see `metrics/queues.py`)."""
        row = await self.connector.fetch_one_aside("queue_counts", {"now_ms": now_ms})
        if row is None:  # an aggregate always has its row
            raise StoreError("queue_counts returned nothing")
        return QueueCounts(**{name: int(row[name]) for name in _QUEUE_COUNTS})

    # -- recovery and retention ------------------------------------------------------------

    async def release_leases(self) -> None:
        """At start: on SQLite every lease left is a dead predecessor's; on PostgreSQL only
        this process's own (none, at start: a dead process's run out on their own)."""
        await self.connector.execute("release_leases", {"lease_owner": self.connector.lease_owner})

    async def delete_expired(self, *, before_ms: int, limit: int) -> Expired:
        parameters = {"before_ms": before_ms, "limit": limit}
        webhooks, workflows = await self.connector.transaction(
            [Statement("expire_webhooks", parameters), Statement("expire_workflows", parameters)]
        )
        return Expired(webhooks=webhooks, workflows=workflows)

    async def count_expired_webhooks(self, *, before_ms: int) -> int:
        """How many webhooks `delete_expired` has to delete (a progress total)."""
        row = await self.connector.fetch_one("count_expired_webhooks", {"before_ms": before_ms})
        return 0 if row is None else int(row["count"])

    # -- waking the other processes that serve the same database ----------------------------

    async def notify(self, payloads: Iterable[str]) -> None:
        await self.connector.notify(payloads)

    async def listen(self, callback: Callable[[str], None]) -> bool:
        return await self.connector.listen(callback)

    # -- helpers ---------------------------------------------------------------------------

    def _claim(self, now_ms: int, limit: int, lease_ms: int) -> dict[str, Any]:
        return {
            "now_ms": now_ms,
            "limit": limit,
            "lease_until_ms": now_ms + lease_ms,
            "lease_owner": self.connector.lease_owner,
        }

    async def _due(self, query: str) -> int | None:
        row = await self.connector.fetch_one(query)
        due: int | None = None if row is None else row["due_at_ms"]
        return due


if TYPE_CHECKING:

    def _implements_the_protocol(store: DatabaseStore) -> Store:
        return store  # mypy proves here that DatabaseStore is a Store
