"""The engine's vocabulary: workflow state, the events it reacts to, the effects it asks for.

All of it is plain, frozen data. The state is what the shell stores on the workflow row and
loads back for the next event; events come from the API, the providers and the timer loop;
effects go back to the shell, which performs them.

The types are frozen, keyword-only `msgspec.Struct`s rather than frozen dataclasses: the same
contract (immutable, slotted, keyword-only, compared by value), built in C. The engine runs
three or four times per workflow and rebuilds its state each time; measured, a frozen
dataclass `replace` costs 1.7 us and a Struct's 0.07 us, and the state encodes and decodes to
JSON without a conversion layer. msgspec does no I/O, so the engine stays pure.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = [
    "CancelRequested",
    "CancelSend",
    "Condition",
    "Effect",
    "EmitFinalReport",
    "EmitStatus",
    "Event",
    "FinalMessage",
    "MessageError",
    "MessageState",
    "MessageStatus",
    "SendMessage",
    "StatusRecord",
    "StatusReported",
    "StepPlan",
    "TimerFired",
    "WorkflowAccepted",
    "WorkflowState",
    "WorkflowStatus",
]


class WorkflowStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ERROR = "error"
    # Stopped by the application or an operator (`POST .../cancel`): not in the Dispatch
    # spec, whose final report knows only `completed` and `error`; an extension, documented.
    CANCELLED = "cancelled"


class MessageStatus(StrEnum):
    """The statuses of the Messages API, as the spec's webhooks carry them."""

    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    READ = "read"
    REJECTED = "rejected"
    UNDELIVERABLE = "undeliverable"


class Condition(StrEnum):
    """What a message must reach before its expiry for the workflow to stop there."""

    DELIVERED = "delivered"
    READ = "read"


class MessageError(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    reason: str


class StepPlan(msgspec.Struct, frozen=True, kw_only=True):
    """One message of the workflow as the engine needs it: its channel and its `failover`.

    Without a condition (the last message of a Dispatch workflow, any message of a Messages
    API v1 failover list), the step waits for a final status: only a rejection moves on."""

    channel: str
    condition: Condition | None = None  # from `failover.condition_status`
    expiry_s: int | None = None  # from `failover.expiry_time`


class StatusRecord(msgspec.Struct, frozen=True, kw_only=True):
    status: MessageStatus
    at_ms: int


class MessageState(msgspec.Struct, frozen=True, kw_only=True):
    """A message that was sent (asked of a provider): its statuses so far and its cost."""

    message_uuid: str
    step: int
    sent_at_ms: int
    history: tuple[StatusRecord, ...] = ()
    price: str | None = None
    error: MessageError | None = None
    provider: str | None = None  # the one that answered its send: "sandbox" or an account

    @property
    def status(self) -> MessageStatus | None:
        """The furthest status reached; None while the provider has not answered yet."""
        if not self.history:
            return None
        return max((record.status for record in self.history), key=_RANK.__getitem__)


# How far along a message is: a failure is final, `read` implies `delivered`.
_RANK = {
    MessageStatus.SUBMITTED: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.UNDELIVERABLE: 4,
    MessageStatus.REJECTED: 5,
}


class WorkflowState(msgspec.Struct, frozen=True, kw_only=True):
    dispatch_uuid: str
    status: WorkflowStatus
    steps: tuple[StepPlan, ...]
    # One id per step, chosen at accept time: a step's message keeps its id across retries.
    message_uuids: tuple[str, ...]
    # How long the last message may stay without a final status when it has no `failover`.
    final_status_timeout_s: int
    current: int = 0
    messages: tuple[MessageState, ...] = ()
    due_at_ms: int | None = None  # the one timer of this workflow, stored as an indexed column
    ended_at_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status is WorkflowStatus.IN_PROGRESS

    def message(self, message_uuid: str) -> MessageState | None:
        for message in self.messages:
            if message.message_uuid == message_uuid:
                return message
        return None


# -- events -----------------------------------------------------------------------------------


class WorkflowAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The API stored a valid workflow; ids and policy come in so the engine stays pure."""

    dispatch_uuid: str
    steps: tuple[StepPlan, ...]
    message_uuids: tuple[str, ...]
    final_status_timeout_s: int

    def __post_init__(self) -> None:
        if not self.steps or len(self.steps) != len(self.message_uuids):
            raise ValueError("a workflow needs one message uuid per step, and at least one step")
        if len(set(self.message_uuids)) != len(self.message_uuids):
            raise ValueError("every step needs its own message uuid")
        for step in self.steps:
            if (step.condition is None) != (step.expiry_s is None):
                raise ValueError("a step's failover condition and expiry come together")
        if any(step.expiry_s is not None and step.expiry_s < 1 for step in self.steps):
            raise ValueError("an expiry must be at least one second")
        if self.final_status_timeout_s < 1:
            raise ValueError("final_status_timeout_s must be at least one second")


class StatusReported(msgspec.Struct, frozen=True, kw_only=True):
    """A provider answered a send, or reported a status later (or the sandbox injected one)."""

    message_uuid: str
    status: MessageStatus
    at_ms: int
    error: MessageError | None = None
    price: str | None = None
    provider: str | None = None  # set by a send's answer: who carried (or refused) it

    def __post_init__(self) -> None:
        if not isinstance(self.status, MessageStatus):
            raise ValueError(f"status must be a MessageStatus, not {self.status!r}")


class TimerFired(msgspec.Struct, frozen=True, kw_only=True):
    """The scheduler found `due_at_ms` passed. Stale firings are ignored."""


class CancelRequested(msgspec.Struct, frozen=True, kw_only=True):
    """The application (or an operator) asked to stop the workflow where it stands."""


Event = WorkflowAccepted | StatusReported | TimerFired | CancelRequested


# -- effects ----------------------------------------------------------------------------------


class SendMessage(msgspec.Struct, frozen=True, kw_only=True):
    step: int
    message_uuid: str


class CancelSend(msgspec.Struct, frozen=True, kw_only=True):
    """Stop trying to send a message the workflow gave up on (it would arrive too late, or
    the workflow was cancelled); a send already on its way to the provider goes on."""

    message_uuid: str


class EmitStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Forward one message status to the application's status URL."""

    step: int
    message_uuid: str
    status: MessageStatus
    at_ms: int
    error: MessageError | None
    price: str | None


class FinalMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_uuid: str
    channel: str
    status: MessageStatus | None
    price: str | None
    provider: str | None = None


class EmitFinalReport(msgspec.Struct, frozen=True, kw_only=True):
    """The one final report of the workflow, with every message sent, in order."""

    status: WorkflowStatus
    at_ms: int
    messages: tuple[FinalMessage, ...]


Effect = SendMessage | CancelSend | EmitStatus | EmitFinalReport
