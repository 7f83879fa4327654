"""The shell around the engine: one event in, one `Transition` (rows to write) out.

`Shell.accept` builds a new workflow's first transition; `Shell.transition_for(event)` builds
the function `Store.apply` runs inside its transaction on the loaded workflow, and
`Shell.cancel` the one of a cancel, which also tells what came of it (`CancelOutcome`). They
run the pure engine (`engine.failover.decide`) and then make its effects concrete: a
`SendMessage` becomes a send row carrying the step's message as submitted, an `EmitStatus` or
`EmitFinalReport` becomes a webhook row with its exact JSON body and a stable event id.
No failover rule is decided here: only how the engine's decisions are written down.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

from opendispatch import templates
from opendispatch.engine.failover import InvalidTransition, decide
from opendispatch.engine.model import (
    CancelRequested,
    CancelSend,
    Condition,
    Effect,
    EmitFinalReport,
    EmitStatus,
    Event,
    MessageError,
    MessageStatus,
    SendMessage,
    StatusReported,
    StepPlan,
    WorkflowAccepted,
    WorkflowState,
    WorkflowStatus,
)
from opendispatch.ids import uuid7
from opendispatch.store.protocol import TransitionFunction
from opendispatch.store.records import (
    InboxEvent,
    LoadedWorkflow,
    NewSend,
    NewWebhook,
    NewWorkflow,
    Transition,
)
from opendispatch.webhooks import payloads

__all__ = ["CancelOutcome", "Cancellation", "Shell", "decode_state", "steps_from_request"]

_encode = msgspec.json.Encoder().encode
_decode_request = msgspec.json.Decoder().decode
decode_state = msgspec.json.Decoder(WorkflowState).decode


def steps_from_request(workflow: Sequence[dict[str, Any]]) -> tuple[StepPlan, ...]:
    """What the engine needs of each submitted message: its channel and its `failover`."""
    steps = []
    for message in workflow:
        failover = message.get("failover") or {}
        condition = failover.get("condition_status")
        steps.append(
            StepPlan(
                channel=message["to"]["type"],
                condition=None if condition is None else Condition(condition),
                expiry_s=failover.get("expiry_time"),
            )
        )
    return tuple(steps)


class CancelOutcome(StrEnum):
    """What a cancel did (`Runtime.cancel`); the API answers 200, 409 and 404 for them."""

    CANCELLED = "cancelled"  # it was running and is now cancelled; its final report is due
    ENDED = "ended"  # it had already ended (completed, error or cancelled): nothing changed
    NOT_FOUND = "not_found"  # no such workflow, or another application's


@dataclass(slots=True)
class Cancellation:
    """A cancel's transition function for `Store.apply`, and what it did once applied (the
    store may run the function again after losing a race: the last run is the one written)."""

    transition: TransitionFunction
    outcome: CancelOutcome = CancelOutcome.NOT_FOUND


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    """What rendering effects needs to know about the workflow besides its state."""

    dispatch_uuid: str
    application_id: str
    template: str
    submitted: list[dict[str, Any]]
    status_url: str
    final_report_url: str
    created_at_ms: int


class Shell:
    def __init__(
        self,
        *,
        final_status_timeout_s: int,
        new_id: Callable[[], str] = uuid7,
    ) -> None:
        self._final_status_timeout_s = final_status_timeout_s
        self._new_id = new_id
        # Submitted messages never change: each event of a workflow needs its addresses, so
        # the decoded request is kept for the workflows seen most recently (the ones in
        # flight); small, so memory does not grow with the number of pending workflows.
        self._submitted: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def _submitted_messages(self, dispatch_uuid: str, request_json: str) -> list[dict[str, Any]]:
        submitted = self._submitted.get(dispatch_uuid)
        if submitted is None:
            submitted = _decode_request(request_json)["workflow"]
            self._submitted[dispatch_uuid] = submitted
            if len(self._submitted) > 1024:
                self._submitted.popitem(last=False)
        return submitted

    def accept(
        self,
        workflow: NewWorkflow,
        *,
        status_url: str,
        final_report_url: str | None,
        now_ms: int,
    ) -> Transition:
        """The first transition of a workflow just validated: its state and first send."""
        submitted = self._submitted_messages(workflow.dispatch_uuid, workflow.request_json)
        event = WorkflowAccepted(
            dispatch_uuid=workflow.dispatch_uuid,
            steps=steps_from_request(submitted),
            message_uuids=tuple(self._new_id() for _ in submitted),
            final_status_timeout_s=self._final_status_timeout_s,
        )
        state, effects = decide(None, event, now_ms)
        context = _Context(
            dispatch_uuid=workflow.dispatch_uuid,
            application_id=workflow.application_id,
            template=workflow.template,
            submitted=submitted,
            status_url=status_url,
            final_report_url=final_report_url or status_url,
            created_at_ms=workflow.created_at_ms,
        )
        return self._transition(context, state, effects, now_ms)

    def transition_for(self, *events: Event, now_ms: int) -> TransitionFunction:
        """The function `Store.apply` runs on the workflow inside its transaction: first the
        provider statuses of its messages that have arrived in the inbox, in the order they
        happened, then `events`, in order; their effects are written together.

        Why the inbox first: the outcome must follow when things happened, not which worker
        woke first. After downtime a step's deadline and the statuses that came in before it
        are all overdue at once; the timer's event applies those statuses (a `read` in time
        completes the workflow) before it looks at the deadline."""

        def transition(loaded: LoadedWorkflow) -> Transition | None:
            if loaded.state_json is None:
                return None  # not started yet: the runtime starts it first
            return self._written(loaded, _Decided.after_inbox(loaded, events, now_ms), now_ms)

        return transition

    def cancel(self, application_id: str, *, now_ms: int) -> Cancellation:
        """A cancel of one of `application_id`'s workflows, as `transition_for` applies an
        event: the provider statuses that have arrived first (a `read` that came in before
        the cancel completes the workflow, and the cancel then finds it ended)."""

        def transition(loaded: LoadedWorkflow) -> Transition | None:
            if loaded.record.application_id != application_id or loaded.state_json is None:
                cancellation.outcome = CancelOutcome.NOT_FOUND
                return None
            decided = _Decided.after_inbox(loaded, (), now_ms)
            try:
                state, effects = decide(decided.state, CancelRequested(), now_ms)
            except InvalidTransition:  # it has ended: the cancel changes nothing
                cancellation.outcome = CancelOutcome.ENDED
            else:
                # The engine may find the workflow ended by a deadline that came first.
                cancelled = any(
                    isinstance(effect, EmitFinalReport)
                    and effect.status is WorkflowStatus.CANCELLED
                    for effect in effects
                )
                cancellation.outcome = CancelOutcome.CANCELLED if cancelled else CancelOutcome.ENDED
                decided.state, decided.effects = state, decided.effects + effects
            return self._written(loaded, decided, now_ms)

        cancellation = Cancellation(transition)
        return cancellation

    def _written(self, loaded: LoadedWorkflow, decided: _Decided, now_ms: int) -> Transition | None:
        """The rows of what was decided; None if nothing changed."""
        if decided.unchanged:
            return None
        record = loaded.record
        context = _Context(
            dispatch_uuid=record.dispatch_uuid,
            application_id=record.application_id,
            template=record.template,
            submitted=self._submitted_messages(record.dispatch_uuid, record.request_json),
            status_url=loaded.status_url,
            final_report_url=loaded.final_report_url or loaded.status_url,
            created_at_ms=record.created_at_ms,
        )
        return self._transition(
            context, decided.state, decided.effects, now_ms, decided.consumed, decided.called_at
        )

    def start_unstarted(self, now_ms: int) -> TransitionFunction:
        """For workflows stored before the engine existed: accept them now."""

        def transition(loaded: LoadedWorkflow) -> Transition | None:
            if loaded.state_json is not None:
                return None
            record = loaded.record
            workflow = NewWorkflow(
                dispatch_uuid=record.dispatch_uuid,
                application_id=record.application_id,
                template=record.template,
                request_json=record.request_json,
                created_at_ms=record.created_at_ms,
                # Its row exists (migration 0010 filled in its channels): only its first
                # transition is written.
                channels=(),
            )
            return self.accept(
                workflow,
                status_url=loaded.status_url,
                final_report_url=loaded.final_report_url,
                now_ms=now_ms,
            )

        return transition

    # -- effects to rows -------------------------------------------------------------------

    def _transition(
        self,
        context: _Context,
        state: WorkflowState,
        effects: tuple[Effect, ...],
        now_ms: int,
        consumed_inbox: tuple[int, ...] = (),
        called_at: Mapping[int, int] | None = None,
    ) -> Transition:
        """`called_at`: when the failover to a step was triggered, by step (see `_Decided`)."""
        sends: list[NewSend] = []
        cancels = [effect.message_uuid for effect in effects if isinstance(effect, CancelSend)]
        webhooks: list[NewWebhook] = []
        statuses: list[tuple[str, MessageStatus]] = []
        ended_after_ms = None
        for effect in effects:
            if isinstance(effect, SendMessage):
                if effect.message_uuid in cancels:
                    # Asked and cancelled in one decision (a cancel just after a deadline's
                    # failover): never written, so no worker can claim it in between.
                    cancels.remove(effect.message_uuid)
                else:
                    created_at = None if called_at is None else called_at.get(effect.step)
                    sends.append(self._send(context, effect, now_ms, created_at))
            elif isinstance(effect, EmitStatus):
                webhooks.append(self._status_webhook(context, effect, now_ms))
                statuses.append((context.submitted[effect.step]["to"]["type"], effect.status))
            elif isinstance(effect, EmitFinalReport):
                if context.template != templates.MESSAGES_V1:  # v1 has no final report
                    webhooks.append(self._final_report(context, effect, now_ms))
                ended_after_ms = effect.at_ms - context.created_at_ms
        return Transition(
            state_json=_encode(state).decode(),
            status=state.status,
            due_at_ms=state.due_at_ms,
            updated_at_ms=now_ms,
            sends=tuple(sends),
            cancel_sends=tuple(cancels),
            webhooks=tuple(webhooks),
            consumed_inbox=consumed_inbox,
            dispatch_uuid=context.dispatch_uuid,
            application_id=context.application_id,
            effects=effects,
            applied_statuses=tuple(statuses),
            ended_after_ms=ended_after_ms,
        )

    def _send(
        self, context: _Context, effect: SendMessage, now_ms: int, created_at_ms: int | None
    ) -> NewSend:
        submitted = context.submitted[effect.step]
        channel = submitted["to"]["type"]
        payload = {
            "to": submitted["to"],
            "from": submitted["from"],
            "message": submitted["message"],
        }
        return NewSend(
            message_uuid=effect.message_uuid,
            dispatch_uuid=context.dispatch_uuid,
            step=effect.step,
            channel=channel,
            provider="",  # chosen when it is sent (see `SendWorker`)
            payload_json=_encode(payload).decode(),
            next_attempt_at_ms=now_ms,
            created_at_ms=created_at_ms,
        )

    def _status_webhook(self, context: _Context, effect: EmitStatus, now_ms: int) -> NewWebhook:
        submitted = context.submitted[effect.step]
        event_id = self._new_id()
        url = context.status_url
        v1 = submitted.get("messages_v1") if context.template == templates.MESSAGES_V1 else None
        if v1 is not None:
            url = v1.get("webhook_url") or url
        if v1 is not None and v1.get("webhook_version") != "v0.1":
            body = payloads.render_v1_message_status(
                payloads.V1MessageStatusPayload(
                    message_uuid=effect.message_uuid,
                    to=_address(submitted["to"]),
                    from_=_address(submitted["from"]),
                    timestamp_ms=effect.at_ms,
                    status=effect.status.value,
                    error=effect.error,
                    error_instance=event_id,
                    price=effect.price,
                    channel=v1["channel"],
                    client_ref=v1.get("client_ref"),
                    workflow_id=context.dispatch_uuid if len(context.submitted) > 1 else None,
                )
            )
        else:
            body = self._dispatch_status(context, effect, submitted)
        return NewWebhook(
            event_id=event_id,
            dispatch_uuid=context.dispatch_uuid,
            application_id=context.application_id,
            kind="message_status",
            message_uuid=effect.message_uuid,
            status=effect.status,
            url=url,
            payload=body.decode(),
            next_attempt_at_ms=now_ms,
        )

    @staticmethod
    def _dispatch_status(
        context: _Context, effect: EmitStatus, submitted: Mapping[str, Any]
    ) -> bytes:
        """The status in the Dispatch API's shape (the Messages API's v0.1, with the link to
        its workflow)."""
        return payloads.render_message_status(
            payloads.MessageStatusPayload(
                message_uuid=effect.message_uuid,
                to=submitted["to"],
                from_=submitted["from"],
                timestamp_ms=effect.at_ms,
                status=effect.status.value,
                error=effect.error,
                price=effect.price,
                dispatch_uuid=context.dispatch_uuid,
            )
        )

    def _final_report(self, context: _Context, effect: EmitFinalReport, now_ms: int) -> NewWebhook:
        messages = tuple(
            payloads.FinalReportMessage(
                message_uuid=message.message_uuid,
                channel=message.channel,
                # The engine gives every message of an ended workflow a status.
                status=(message.status.value if message.status else "submitted"),
                price=message.price,
                provider=message.provider,
            )
            for message in effect.messages
        )
        body = payloads.render_final_report(
            payloads.FinalReportPayload(
                dispatch_uuid=context.dispatch_uuid,
                template=context.template,
                status=effect.status.value,
                timestamp_ms=effect.at_ms,
                price=payloads.total_price(message.price for message in effect.messages),
                messages=messages,
            )
        )
        return NewWebhook(
            event_id=self._new_id(),
            dispatch_uuid=context.dispatch_uuid,
            application_id=context.application_id,
            kind="final_report",
            message_uuid=None,
            status=effect.status,
            url=context.final_report_url,
            payload=body.decode(),
            next_attempt_at_ms=now_ms,
        )


@dataclass(slots=True)
class _Decided:
    """A workflow's state before and after the events of one transaction, their effects, the
    inbox rows they consumed, and when each failover among them was triggered (by the step
    failed over to: for the metrics, see `NewSend.created_at_ms`)."""

    before: WorkflowState
    state: WorkflowState
    effects: tuple[Effect, ...]
    consumed: tuple[int, ...]
    called_at: dict[int, int] = field(default_factory=dict)

    @classmethod
    def after_inbox(cls, loaded: LoadedWorkflow, events: Sequence[Event], now_ms: int) -> _Decided:
        """The provider statuses of the workflow that have arrived, in the order they
        happened, then `events`, in order."""
        assert loaded.state_json is not None
        arrived = [status for status in loaded.inbox if status.due_at_ms <= now_ms]
        state = before = decode_state(loaded.state_json)
        effects: tuple[Effect, ...] = ()
        called_at: dict[int, int] = {}
        for event, arrived_at_ms in (
            *((_reported(status), status.due_at_ms) for status in arrived),
            *((event, now_ms) for event in events),
        ):
            due, current = state.due_at_ms, state.current
            state, more = decide(state, event, now_ms)
            effects += more
            if state.current != current:
                # A step fails over at the earlier of its deadline and the arrival of what
                # failed it, which may be a little before this transaction.
                called_at[state.current] = arrived_at_ms if due is None else min(due, arrived_at_ms)
        return cls(before, state, effects, tuple(status.id for status in arrived), called_at)

    @property
    def unchanged(self) -> bool:
        return not self.effects and self.state == self.before and not self.consumed


def _address(address: Mapping[str, Any]) -> str:
    """A Dispatch address object as v1 writes it: the number or id alone."""
    return str(address.get("number") or address.get("id") or "")


def _reported(status: InboxEvent) -> StatusReported:
    """A provider status from the inbox as the engine's event: it happened when it happened."""
    error = None
    if status.error_code is not None:
        error = MessageError(code=status.error_code, reason=status.error_reason or "")
    return StatusReported(
        message_uuid=status.message_uuid,
        status=status.status,
        at_ms=status.occurred_at_ms if status.occurred_at_ms is not None else status.due_at_ms,
        error=error,
        price=status.price,
    )
