"""The one place that turns a transition into rows: the workflow's new state, its effects
(sends, cancels, webhooks, inbox rows consumed) and its side writes, each a list of dicts
keyed by the named parameters of the write queries.

SQLite writes them a statement per row (executemany); PostgreSQL binds each column of each
list as an array and writes a whole batch of transitions in one statement. Either way the
columns come from here, so the two write strategies cannot disagree on what a transition is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opendispatch.store.mappers import channels_column
from opendispatch.store.records import NO_SIDE_WRITES, NewWorkflow, SideWrites, Transition

__all__ = ["COLUMNS", "TransitionRows"]

RowDict = dict[str, Any]

# Each list's columns: the keys of its rows, and (as `<list>_<column>`) the array parameters
# of the PostgreSQL batch statements.
COLUMNS: dict[str, tuple[str, ...]] = {
    "workflows": (
        "dispatch_uuid", "version", "state_json", "status", "due_at_ms", "updated_at_ms",
    ),
    "new_workflows": (
        "dispatch_uuid", "application_id", "template", "status", "request_json",
        "created_at_ms", "updated_at_ms", "state_json", "due_at_ms", "channels",
    ),
    "sends": (
        "dispatch_uuid", "message_uuid", "application_id", "step", "channel", "provider",
        "payload_json", "next_attempt_at_ms", "created_at_ms",
    ),
    "cancels": ("dispatch_uuid", "message_uuid"),
    "webhooks": (
        "dispatch_uuid", "application_id", "event_id", "kind", "message_uuid", "status", "url",
        "payload", "next_attempt_at_ms", "created_at_ms", "position",
    ),
    "completed": (
        "gate", "message_uuid", "send_state", "provider", "provider_message_id", "error",
    ),
    "consumed": ("gate", "id"),
}  # fmt: skip


@dataclass(slots=True)
class TransitionRows:
    """Rows of any number of transitions. `gate`: the workflow whose transition must be
    written for the row to be (None: written whatever happens to the transition)."""

    workflows: list[RowDict] = field(default_factory=list)
    new_workflows: list[RowDict] = field(default_factory=list)
    sends: list[RowDict] = field(default_factory=list)
    cancels: list[RowDict] = field(default_factory=list)
    webhooks: list[RowDict] = field(default_factory=list)
    completed: list[RowDict] = field(default_factory=list)
    consumed: list[RowDict] = field(default_factory=list)

    def as_columns(self) -> dict[str, list[Any]]:
        """Every list as one array per column, named `<list>_<column>`."""
        columns: dict[str, list[Any]] = {}
        for table, keys in COLUMNS.items():
            rows: list[RowDict] = getattr(self, table)
            for key in keys:
                columns[f"{table}_{key}"] = [row[key] for row in rows]
        return columns

    @property
    def empty(self) -> bool:
        return not (
            self.workflows
            or self.new_workflows
            or self.sends
            or self.cancels
            or self.webhooks
            or self.completed
            or self.consumed
        )

    def add_new(self, workflow: NewWorkflow, transition: Transition) -> None:
        """A new workflow with its first transition."""
        self.new_workflows.append(
            {
                "dispatch_uuid": workflow.dispatch_uuid,
                "application_id": workflow.application_id,
                "template": workflow.template,
                "status": transition.status,
                "request_json": workflow.request_json,
                "created_at_ms": workflow.created_at_ms,
                "updated_at_ms": transition.updated_at_ms,
                "state_json": transition.state_json,
                "due_at_ms": transition.due_at_ms,
                "channels": channels_column(workflow.channels),
            }
        )
        self._effects(workflow.dispatch_uuid, workflow.application_id, transition)

    def add(
        self,
        *,
        dispatch_uuid: str,
        application_id: str,
        version: int | None,
        transition: Transition,
        side: SideWrites = NO_SIDE_WRITES,
    ) -> None:
        """A transition of an existing workflow (`version`: the one it was read at, where the
        write is version-checked), with its side writes gated on it."""
        self.workflows.append(
            {
                "dispatch_uuid": dispatch_uuid,
                "version": version,
                "state_json": transition.state_json,
                "status": transition.status,
                "due_at_ms": transition.due_at_ms,
                "updated_at_ms": transition.updated_at_ms,
            }
        )
        self._effects(dispatch_uuid, application_id, transition)
        self.add_side(side, gate=dispatch_uuid)

    def add_side(self, side: SideWrites, *, gate: str | None) -> None:
        done = side.complete_send
        if done is not None:
            self.completed.append(
                {
                    "gate": gate,
                    "message_uuid": done.message_uuid,
                    "send_state": done.send_state,
                    "provider": done.provider,
                    "provider_message_id": done.provider_message_id,
                    "error": done.error,
                }
            )
        if side.inbox_done is not None:
            self.consumed.append({"gate": gate, "id": side.inbox_done})

    def _effects(self, dispatch_uuid: str, application_id: str, transition: Transition) -> None:
        at_ms = transition.updated_at_ms
        for send in transition.sends:
            self.sends.append(
                {
                    "dispatch_uuid": dispatch_uuid,
                    "message_uuid": send.message_uuid,
                    "application_id": application_id,
                    "step": send.step,
                    "channel": send.channel,
                    "provider": send.provider,
                    "payload_json": send.payload_json,
                    "next_attempt_at_ms": send.next_attempt_at_ms,
                    "created_at_ms": at_ms if send.created_at_ms is None else send.created_at_ms,
                }
            )
        for message_uuid in transition.cancel_sends:
            self.cancels.append({"dispatch_uuid": dispatch_uuid, "message_uuid": message_uuid})
        for position, webhook in enumerate(transition.webhooks):
            self.webhooks.append(
                {
                    "dispatch_uuid": dispatch_uuid,
                    "application_id": application_id,
                    "event_id": webhook.event_id,
                    "kind": webhook.kind,
                    "message_uuid": webhook.message_uuid,
                    "status": webhook.status,
                    "url": webhook.url,
                    "payload": webhook.payload,
                    "next_attempt_at_ms": webhook.next_attempt_at_ms,
                    "created_at_ms": at_ms,
                    "position": position,
                }
            )
        for inbox_id in transition.consumed_inbox:
            self.consumed.append({"gate": dispatch_uuid, "id": inbox_id})
