"""Engine events applied on PostgreSQL: in batches, each exactly once, serialised per workflow.

`apply` queues its event; the events queued together (see `coalesce`) are applied with two
statements whatever their number: `read_workflows` reads every workflow they concern, Python
decides each transition, and `write_transitions` writes them all with their effects. That
write is optimistic: a transition is written only if its workflow is still at the version it
was read at and no other statement is writing it right now. An event whose workflow another
process got to first goes into the next batch, where it is read and decided again on the state
the winner left; after `_OPTIMISTIC_TRIES` lost races it takes the row lock in a transaction
of its own, and cannot lose again. Nothing is locked while Python decides.

Two events of one workflow never share a batch: the later one waits for the next, so it sees
what the earlier one wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opendispatch.errors import StoreError
from opendispatch.store.postgres.coalesce import AGAIN, Coalescer
from opendispatch.store.postgres.driver import PostgresAccess, Row
from opendispatch.store.protocol import TransitionFunction
from opendispatch.store.records import (
    NO_SIDE_WRITES,
    LoadedWorkflow,
    NewWorkflow,
    SideWrites,
    Transition,
    WorkflowRecord,
)

__all__ = ["PostgresTransitions", "loaded_workflow", "workflow_record"]


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


class PostgresTransitions(PostgresAccess):
    """`apply` and `create_workflow` of `PostgresStore`, each sending concurrent calls
    together."""

    def _init_transitions(self) -> None:
        self._events: Coalescer[_Event, Transition | None] = Coalescer(
            self._apply_batch, in_flight=2
        )
        self._creations: Coalescer[_NewWorkflow, None] = Coalescer(self._create_batch, in_flight=2)

    async def _stop_transitions(self) -> None:
        await self._events.wait_idle()
        await self._creations.wait_idle()

    # -- new workflows ---------------------------------------------------------------------

    async def create_workflow(self, workflow: NewWorkflow, transition: Transition) -> None:
        await self._creations.submit(_NewWorkflow(workflow, transition))

    async def _create_batch(self, batch: list[_NewWorkflow]) -> list[Exception | None]:
        try:
            await self._create(batch)
        except StoreError:
            if len(batch) == 1:
                raise
            # Nothing of the batch was written (one statement): one refused workflow (its
            # application deleted meanwhile, say) must not fail the others' requests.
            return [await self._create_alone(item) for item in batch]
        return [None] * len(batch)

    async def _create_alone(self, item: _NewWorkflow) -> Exception | None:
        try:
            await self._create([item])
        except StoreError as exc:
            return exc
        return None

    async def _create(self, items: list[_NewWorkflow]) -> None:
        rows = _CreationColumns()
        for item in items:
            rows.add(item.workflow, item.transition)
        await self._execute("create_workflows", *rows.arguments())

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
                found.update(
                    ((by_message, row["key"]), row) for row in await self._fetch(query, keys)
                )
        writes = _TransitionColumns()
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
                result = None if row is None else event.transition(loaded_workflow(row))
            except Exception as exc:  # the event's own failure, not the batch's
                results[i] = exc
                continue
            writes.add_event(row, result, event.side)
            if row is None or result is None:
                results[i] = None
            else:
                written.append((i, row["dispatch_uuid"], result))
        if writes.empty:
            return
        changed = {row[0] for row in await self._fetch("write_transitions", *writes.arguments())}
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
        queries = self._queries
        async with self._transaction("apply") as connection:
            lock = queries["lock_workflow_of_message" if event.by_message else "lock_workflow"]
            row = await connection.fetchrow(lock, event.key)
            result = None if row is None else event.transition(loaded_workflow(row))
            writes = _TransitionColumns()
            writes.add_event(row, result, event.side)
            if not writes.empty:
                changed = await connection.fetch(queries["write_transitions"], *writes.arguments())
                if result is not None and not changed:
                    raise StoreError("a locked workflow's transition was not written")
            return result


class _TransitionColumns:
    """The parameters of `write_transitions`: one list per column of each of its arrays."""

    def __init__(self) -> None:
        self.workflows: list[list[Any]] = [[] for _ in range(6)]
        self.sends: list[list[Any]] = [[] for _ in range(7)]
        self.cancels: list[list[Any]] = [[] for _ in range(2)]
        self.webhooks: list[list[Any]] = [[] for _ in range(8)]
        self.completed: list[list[Any]] = [[] for _ in range(5)]
        self.consumed: list[list[Any]] = [[] for _ in range(2)]
        self.scheduled: list[list[Any]] = [[] for _ in range(7)]
        self.empty = True

    def add_event(self, row: Row | None, result: Transition | None, side: SideWrites) -> None:
        """An event's writes: its transition gated on its workflow's version, or, if it
        found no workflow or changed nothing, only its bookkeeping, unconditionally."""
        if row is None or result is None:
            self.add_side(side, gate=None)
        else:
            self.add(row, result, side)

    def add(self, row: Row, result: Transition, side: SideWrites) -> None:
        self.empty = False
        dispatch_uuid = row["dispatch_uuid"]
        _append(
            self.workflows,
            (dispatch_uuid, row["version"], result.state_json, result.status, result.due_at_ms,
             result.updated_at_ms),
        )  # fmt: skip
        for send in result.sends:
            _append(
                self.sends,
                (dispatch_uuid, send.message_uuid, send.step, send.channel, send.provider,
                 send.payload_json, send.next_attempt_at_ms),
            )  # fmt: skip
        for message_uuid in result.cancel_sends:
            _append(self.cancels, (dispatch_uuid, message_uuid))
        for webhook in result.webhooks:
            _append(
                self.webhooks,
                (dispatch_uuid, webhook.event_id, webhook.kind, webhook.message_uuid,
                 webhook.status, webhook.url, webhook.payload, webhook.next_attempt_at_ms),
            )  # fmt: skip
        self.add_side(side, gate=dispatch_uuid)

    def add_side(self, side: SideWrites, *, gate: str | None) -> None:
        """`gate`: written only if this workflow's transition is; None: unconditionally."""
        if side == NO_SIDE_WRITES:
            return
        self.empty = False
        done = side.complete_send
        if done is not None:
            _append(
                self.completed,
                (gate, done.message_uuid, done.send_state, done.provider_message_id, done.error),
            )
        if side.inbox_done is not None:
            _append(self.consumed, (gate, side.inbox_done))
        for event in side.schedule:
            _append(
                self.scheduled,
                (gate, event.message_uuid, event.status, event.error_code, event.error_reason,
                 event.price, event.due_at_ms),
            )  # fmt: skip

    def arguments(self) -> list[list[Any]]:
        return [
            *self.workflows,
            *self.sends,
            *self.cancels,
            *self.webhooks,
            *self.completed,
            *self.consumed,
            *self.scheduled,
        ]


class _CreationColumns:
    """The parameters of `create_workflows`."""

    def __init__(self) -> None:
        self.workflows: list[list[Any]] = [[] for _ in range(9)]
        self.sends: list[list[Any]] = [[] for _ in range(8)]
        self.webhooks: list[list[Any]] = [[] for _ in range(10)]

    def add(self, workflow: NewWorkflow, transition: Transition) -> None:
        dispatch_uuid = workflow.dispatch_uuid
        _append(
            self.workflows,
            (dispatch_uuid, workflow.application_id, workflow.template, transition.status,
             workflow.request_json, workflow.created_at_ms, transition.updated_at_ms,
             transition.state_json, transition.due_at_ms),
        )  # fmt: skip
        for send in transition.sends:
            _append(
                self.sends,
                (dispatch_uuid, send.message_uuid, send.step, send.channel, send.provider,
                 send.payload_json, send.next_attempt_at_ms, transition.updated_at_ms),
            )  # fmt: skip
        for webhook in transition.webhooks:
            _append(
                self.webhooks,
                (dispatch_uuid, workflow.application_id, webhook.event_id, webhook.kind,
                 webhook.message_uuid, webhook.status, webhook.url, webhook.payload,
                 webhook.next_attempt_at_ms, transition.updated_at_ms),
            )  # fmt: skip

    def arguments(self) -> list[list[Any]]:
        return [*self.workflows, *self.sends, *self.webhooks]


def _append(columns: list[list[Any]], row: tuple[Any, ...]) -> None:
    for column, value in zip(columns, row, strict=True):
        column.append(value)


def workflow_record(row: Row) -> WorkflowRecord:
    return WorkflowRecord(
        dispatch_uuid=row["dispatch_uuid"],
        application_id=row["application_id"],
        template=row["template"],
        status=row["status"],
        request_json=row["request_json"],
        created_at_ms=row["created_at_ms"],
        updated_at_ms=row["updated_at_ms"],
    )


def loaded_workflow(row: Row) -> LoadedWorkflow:
    return LoadedWorkflow(
        record=workflow_record(row),
        state_json=row["state_json"],
        api_key=row["api_key"],
        status_url=row["status_url"],
        final_report_url=row["final_report_url"],
    )
