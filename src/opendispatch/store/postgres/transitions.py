"""The PostgreSQL write strategy: engine events applied in batches, each exactly once,
serialised per workflow.

`apply` queues its event; the events queued together (see `coalesce`) are applied with two
statements whatever their number: `read_workflows` reads every workflow they concern (with
the provider statuses waiting in the inbox for it), Python decides each transition, and
`write_transitions` writes them all with their effects. That write is optimistic: a
transition is written only if its workflow is still at the version it was read at and no
other statement is writing it right now. An event whose workflow another process got to
first goes into the next batch, where it is read and decided again on the state the winner
left; after `_OPTIMISTIC_TRIES` lost races it takes the row lock in a transaction of its own,
and cannot lose again. Nothing is locked while Python decides.

Two events of one workflow never share a batch: the later one waits for the next, so it sees
what the earlier one wrote. New workflows are created in batches the same way. A batch with
`Idempotency-Key`s claims them first, in the transaction that writes its workflows, and
writes only the workflows whose keys it claimed (see `claim_idempotency_keys`); a key that
appears twice in one batch waits for the next, where it finds the first one's row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opendispatch.errors import ApplicationDeleted, StoreError
from opendispatch.store.coalesce import AGAIN, Again, Coalescer
from opendispatch.store.connector import Row
from opendispatch.store.mappers import earlier_request, inbox_event, loaded_workflow
from opendispatch.store.postgres.connector import PostgresConnector
from opendispatch.store.protocol import TransitionFunction
from opendispatch.store.records import (
    IDEMPOTENCY_WINDOW_MS,
    NO_SIDE_WRITES,
    EarlierRequest,
    IdempotencyKey,
    InboxEvent,
    LoadedWorkflow,
    NewWorkflow,
    SideWrites,
    Transition,
)
from opendispatch.store.transition_rows import TransitionRows

__all__ = ["QUERIES", "PostgresTransitions"]

QUERIES = ("opendispatch.store.postgres", "transitions.sql")

# Conflicts are rare (two processes applying events to one workflow in the same
# milliseconds); each retry reads the state the winner wrote, and after this many lost races
# the event takes the row lock instead.
_OPTIMISTIC_TRIES = 3


@dataclass(slots=True)
class _Event:
    transition: TransitionFunction
    key: str  # the workflow's id, or (by_message) one of its messages' ids
    by_message: bool
    side: SideWrites
    lost_races: int = 0


@dataclass(slots=True)
class _NewWorkflow:
    workflow: NewWorkflow
    transition: Transition


# A new workflow's outcome: None when stored, the earlier request when its key was used
# already, AGAIN when it must wait for the next batch.
_Created = EarlierRequest | None | Again


class PostgresTransitions:
    """`apply` and `create_workflow`, each sending concurrent calls together."""

    def __init__(self, connector: PostgresConnector) -> None:
        self._connector = connector
        self._events: Coalescer[_Event, Transition | None] = Coalescer(
            self._apply_batch, in_flight=2
        )
        self._creations: Coalescer[_NewWorkflow, EarlierRequest | None] = Coalescer(
            self._create_batch, in_flight=2
        )

    async def stop(self) -> None:
        """Let the batches on their way finish."""
        await self._events.wait_idle()
        await self._creations.wait_idle()

    # -- new workflows ---------------------------------------------------------------------

    async def create_workflow(
        self, workflow: NewWorkflow, transition: Transition
    ) -> EarlierRequest | None:
        return await self._creations.submit(_NewWorkflow(workflow, transition))

    async def _create_batch(self, batch: list[_NewWorkflow]) -> Sequence[_Created | Exception]:
        try:
            return await self._create(batch)
        except StoreError:
            if len(batch) == 1:
                raise
            # Nothing of the batch was written (one transaction): one refused workflow must
            # not fail the others' requests.
            return [await self._create_alone(item) for item in batch]

    async def _create_alone(self, item: _NewWorkflow) -> _Created | Exception:
        try:
            (result,) = await self._create([item])
        except StoreError as exc:
            return exc
        return result

    async def _create(self, items: list[_NewWorkflow]) -> Sequence[_Created | Exception]:
        """Write them; None for each created, `ApplicationDeleted` for those whose
        application was deleted meanwhile."""
        if all(item.workflow.idempotency_key is None for item in items):  # the usual case
            rows = TransitionRows()
            for item in items:
                rows.add_new(item.workflow, item.transition)
            written = await self._connector.execute_returning("create_workflows", rows.as_columns())
            created = {row["dispatch_uuid"] for row in written}
            return [
                None if item.workflow.dispatch_uuid in created else _application_gone(item)
                for item in items
            ]
        return await self._create_keyed(items)

    async def _create_keyed(self, items: list[_NewWorkflow]) -> list[_Created | Exception]:
        """Claim the batch's keys, then write the workflows whose keys it claimed (and those
        without a key), in one transaction: a workflow is never stored without its key, nor
        a key without its workflow."""
        results: list[_Created | Exception] = [None] * len(items)
        claims: dict[tuple[str, str], tuple[int, IdempotencyKey]] = {}
        for i, item in enumerate(items):
            key = item.workflow.idempotency_key
            if key is not None:
                if (item.workflow.application_id, key.key) in claims:
                    results[i] = AGAIN  # after the first one's commit: it finds its row
                else:
                    claims[(item.workflow.application_id, key.key)] = (i, key)
        claim = {
            "application_id": [application_id for application_id, _ in claims],
            "idempotency_key": [key for _, key in claims],
            "request_hash": [key.request_hash for _, key in claims.values()],
            "dispatch_uuid": [items[i].workflow.dispatch_uuid for i, _ in claims.values()],
            "created_at_ms": [items[i].workflow.created_at_ms for i, _ in claims.values()],
            "window_ms": IDEMPOTENCY_WINDOW_MS,
        }
        gone: set[int] = set()
        try:
            async with self._connector.session("create_workflows") as session:
                found = await session.fetch_all("claim_idempotency_keys", claim)
                for row in found:
                    i, _ = claims.pop((row["application_id"], row["idempotency_key"]))
                    if row["dispatch_uuid"] != items[i].workflow.dispatch_uuid:
                        results[i] = earlier_request(row)
                if claims:
                    raise StoreError("idempotency keys were neither stored nor found")
                rows = TransitionRows()
                for item, result in zip(items, results, strict=True):
                    if result is None:
                        rows.add_new(item.workflow, item.transition)
                if rows.empty:
                    return results
                written = await session.fetch_all("create_workflows", rows.as_columns())
                created = {row["dispatch_uuid"] for row in written}
                gone = {
                    i
                    for i, item in enumerate(items)
                    if results[i] is None and item.workflow.dispatch_uuid not in created
                }
                if gone:  # undo their keys' claims with the rest; the others try again
                    raise _Undo
        except _Undo:
            return [_application_gone(items[i]) if i in gone else AGAIN for i in range(len(items))]
        return results

    # -- events ----------------------------------------------------------------------------

    async def apply(
        self,
        *,
        transition: TransitionFunction,
        dispatch_uuid: str | None = None,
        message_uuid: str | None = None,
        side: SideWrites = NO_SIDE_WRITES,
    ) -> Transition | None:
        """Read the workflow (by id, or by one of its messages), transition it, and write the
        transition with its effects and `side`, exactly once (see the module's docstring)."""
        if dispatch_uuid is not None:
            event = _Event(transition, dispatch_uuid, False, side)
        elif message_uuid is not None:
            event = _Event(transition, message_uuid, True, side)
        else:
            raise ValueError("apply needs a dispatch_uuid or a message_uuid")
        return await self._events.submit(event)

    async def _apply_batch(self, batch: list[_Event]) -> list[Any]:
        results: list[Any] = [AGAIN] * len(batch)
        optimistic = []
        for i, event in enumerate(batch):
            if event.lost_races < _OPTIMISTIC_TRIES:
                optimistic.append(i)
            else:
                results[i] = await self._settle_locked(event)
        try:
            await self._apply_optimistic(batch, optimistic, results)
        except StoreError:
            if len(optimistic) == 1:
                raise
            # Nothing of the batch was written (one statement); find which event fails, if
            # one does, by applying each on its own.
            for i in optimistic:
                results[i] = await self._settle_locked(batch[i])
        return results

    async def _apply_optimistic(
        self, batch: list[_Event], indexes: list[int], results: list[Any]
    ) -> None:
        if not indexes:
            return
        found: dict[tuple[bool, str], Row] = {}
        for by_message, query in ((False, "read_workflows"), (True, "read_workflows_of_messages")):
            keys = [batch[i].key for i in indexes if batch[i].by_message is by_message]
            if keys:
                rows = await self._connector.fetch_all(query, {"keys": keys})
                found.update(((by_message, row["key"]), row) for row in rows)
        writes = TransitionRows()
        taken: set[str] = set()
        written: list[tuple[int, str, Transition]] = []
        for i in indexes:
            event = batch[i]
            row = found.get((event.by_message, event.key))
            if row is not None:
                if row["dispatch_uuid"] in taken:
                    continue  # an earlier event of this workflow is in this batch: AGAIN
                taken.add(row["dispatch_uuid"])
            try:
                result = None if row is None else event.transition(_loaded(row))
            except Exception as exc:  # the event's own failure, not the batch's
                results[i] = exc
                continue
            _add_event(writes, row, result, event.side)
            if row is None or result is None:
                results[i] = None
            else:
                written.append((i, row["dispatch_uuid"], result))
        if writes.empty:
            return
        changed = {
            row["dispatch_uuid"]
            for row in await self._connector.execute_returning(
                "write_transitions", writes.as_columns()
            )
        }
        for i, dispatch_uuid, result in written:
            if dispatch_uuid in changed:
                results[i] = result
            else:
                batch[i].lost_races += 1  # AGAIN: decided anew on what the winner wrote

    async def _settle_locked(self, event: _Event) -> Transition | Exception | None:
        try:
            return await self._apply_locked(event)
        except Exception as exc:
            return exc

    async def _apply_locked(self, event: _Event) -> Transition | None:
        """One event that kept losing races: hold its workflow's row while deciding."""
        async with self._connector.session("apply") as session:
            lock = "lock_workflow_of_message" if event.by_message else "lock_workflow"
            row = await session.fetch_one(lock, {"key": event.key})
            result = None if row is None else event.transition(_loaded(row))
            writes = TransitionRows()
            _add_event(writes, row, result, event.side)
            if not writes.empty:
                changed = await session.fetch_all("write_transitions", writes.as_columns())
                if result is not None and not changed:
                    raise StoreError("a locked workflow's transition was not written")
            return result


class _Undo(Exception):
    """Rolls a batch's transaction back (its keys' claims with it)."""


def _application_gone(item: _NewWorkflow) -> ApplicationDeleted:
    return ApplicationDeleted(
        f"application {item.workflow.application_id} was deleted: workflow not created"
    )


def _add_event(
    writes: TransitionRows, row: Row | None, result: Transition | None, side: SideWrites
) -> None:
    """An event's writes: its transition gated on its workflow's version, or, if it found no
    workflow or changed nothing, only its bookkeeping, unconditionally."""
    if row is None or result is None:
        writes.add_side(side, gate=None)
    else:
        writes.add(
            dispatch_uuid=row["dispatch_uuid"],
            application_id=row["application_id"],
            version=row["version"],
            transition=result,
            side=side,
        )


def _loaded(row: Row) -> LoadedWorkflow:
    inbox: tuple[InboxEvent, ...] = ()
    if row["inbox"] is not None:
        inbox = tuple(inbox_event(item) for item in json.loads(row["inbox"]))
    return loaded_workflow(row, inbox)
