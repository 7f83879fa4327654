"""The SQLite write strategy: one event, one operation in the group commit's transaction.

`apply` finds the workflow (by id, or by one of its messages), loads it with the provider
statuses of its messages waiting in the inbox, runs the transition function, and writes the
new state with every effect and the caller's side writes, all in the transaction the group
commit shares among concurrent callers: one process serves the file, and the group commit
runs operations one after another, so nothing else can change the workflow in between (no
version check needed).

A new workflow with an `Idempotency-Key` claims the key in its operation, before writing
anything else: of two requests with one key, even in one batch, the second finds the first's
row and writes nothing.
"""

from __future__ import annotations

import json

from opendispatch.errors import ApplicationDeleted, StoreError
from opendispatch.store.mappers import earlier_request, inbox_event, loaded_workflow
from opendispatch.store.protocol import TransitionFunction
from opendispatch.store.records import (
    IDEMPOTENCY_WINDOW_MS,
    NO_SIDE_WRITES,
    EarlierRequest,
    InboxEvent,
    NewWorkflow,
    SideWrites,
    Transition,
)
from opendispatch.store.sqlite.connector import SqliteConnector, SqliteSession
from opendispatch.store.transition_rows import TransitionRows

__all__ = ["QUERIES", "SqliteTransitions"]

QUERIES = ("opendispatch.store.sqlite", "transitions.sql")


class SqliteTransitions:
    def __init__(self, connector: SqliteConnector) -> None:
        self._connector = connector

    async def stop(self) -> None:
        """Nothing of its own on its way: the connector drains the group commit."""

    async def create_workflow(
        self, workflow: NewWorkflow, transition: Transition
    ) -> EarlierRequest | None:
        """Refused (`ApplicationDeleted`) if its application was deleted since its request
        was authenticated: checked in the writing transaction, which nothing can come
        between on SQLite's one writer."""
        rows = TransitionRows()
        rows.add_new(workflow, transition)
        application = {"application_id": workflow.application_id}
        key = workflow.idempotency_key
        claim = None
        if key is not None:
            claim = {
                "application_id": workflow.application_id,
                "idempotency_key": key.key,
                "request_hash": key.request_hash,
                "dispatch_uuid": workflow.dispatch_uuid,
                "created_at_ms": workflow.created_at_ms,
                "window_ms": IDEMPOTENCY_WINDOW_MS,
            }

        def operation(session: SqliteSession) -> EarlierRequest | None:
            if session.fetch_one("application_gone", application) is not None:
                raise ApplicationDeleted(
                    f"application {workflow.application_id} was deleted: workflow not created"
                )
            if claim is not None:
                # The one writer runs the batch's operations in order: a request with the
                # same key earlier in this very transaction has written its row already.
                row = session.fetch_one("claim_idempotency_keys", claim)
                if row is None:
                    raise StoreError("an idempotency key was neither stored nor found")
                if row["dispatch_uuid"] != workflow.dispatch_uuid:
                    return earlier_request(row)
            _write(session, rows)
            return None

        return await self._connector.write(operation)

    async def apply(
        self,
        *,
        transition: TransitionFunction,
        dispatch_uuid: str | None = None,
        message_uuid: str | None = None,
        side: SideWrites = NO_SIDE_WRITES,
    ) -> Transition | None:
        key = {"dispatch_uuid": dispatch_uuid, "message_uuid": message_uuid}

        def operation(session: SqliteSession) -> Transition | None:
            result = None
            row = session.fetch_one("load_event_workflow", key)
            if row is not None:
                inbox: tuple[InboxEvent, ...] = ()
                if row["inbox"] != "[]":
                    inbox = tuple(map(inbox_event, json.loads(row["inbox"])))
                result = transition(loaded_workflow(row, inbox))
            rows = TransitionRows()
            if row is not None and result is not None:
                rows.add(
                    dispatch_uuid=row["dispatch_uuid"],
                    application_id=row["application_id"],
                    version=None,
                    transition=result,
                    side=side,
                )
            else:
                rows.add_side(side, gate=None)
            _write(session, rows)
            return result

        return await self._connector.write(operation)


def _write(session: SqliteSession, rows: TransitionRows) -> None:
    session.execute_many("insert_workflow", rows.new_workflows)
    session.execute_many("update_workflow", rows.workflows)
    session.execute_many("insert_send", rows.sends)
    session.execute_many("cancel_send", rows.cancels)
    session.execute_many("insert_webhook", rows.webhooks)
    session.execute_many("complete_send", rows.completed)
    session.execute_many("delete_inbox", rows.consumed)
