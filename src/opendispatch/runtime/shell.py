"""The shell around the engine: one event in, one `Transition` (rows to write) out.

`Shell.accept` builds a new workflow's first transition; `Shell.transition_for(event)` builds
the function `Store.apply` runs inside its transaction on the loaded workflow. Both run the
pure engine (`engine.failover.decide`) and then make its effects concrete: a `SendMessage`
becomes a send row carrying the step's message as submitted, an `EmitStatus` or
`EmitFinalReport` becomes a webhook row with its exact JSON body and a stable event id.
No failover rule is decided here: only how the engine's decisions are written down.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from opendispatch.engine.failover import decide
from opendispatch.engine.model import (
    CancelSend,
    Condition,
    Effect,
    EmitFinalReport,
    EmitStatus,
    Event,
    MessageError,
    SendMessage,
    StatusReported,
    StepPlan,
    WorkflowAccepted,
    WorkflowState,
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

__all__ = ["Shell", "decode_state", "steps_from_request"]

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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    """What rendering effects needs to know about the workflow besides its state."""

    dispatch_uuid: str
    application_id: str
    template: str
    submitted: list[dict[str, Any]]
    status_url: str
    final_report_url: str


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
            arrived = [status for status in loaded.inbox if status.due_at_ms <= now_ms]
            state = new_state = decode_state(loaded.state_json)
            effects: tuple[Effect, ...] = ()
            for event in (*map(_reported, arrived), *events):
                new_state, more = decide(new_state, event, now_ms)
                effects += more
            consumed = tuple(status.id for status in arrived)
            if not effects and new_state == state and not consumed:
                return None
            record = loaded.record
            context = _Context(
                dispatch_uuid=record.dispatch_uuid,
                application_id=record.application_id,
                template=record.template,
                submitted=self._submitted_messages(record.dispatch_uuid, record.request_json),
                status_url=loaded.status_url,
                final_report_url=loaded.final_report_url or loaded.status_url,
            )
            return self._transition(context, new_state, effects, now_ms, consumed)

        return transition

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
    ) -> Transition:
        sends: list[NewSend] = []
        cancels: list[str] = []
        webhooks: list[NewWebhook] = []
        for effect in effects:
            if isinstance(effect, SendMessage):
                sends.append(self._send(context, effect, now_ms))
            elif isinstance(effect, CancelSend):
                cancels.append(effect.message_uuid)
            elif isinstance(effect, EmitStatus):
                webhooks.append(self._status_webhook(context, effect, now_ms))
            elif isinstance(effect, EmitFinalReport):
                webhooks.append(self._final_report(context, effect, now_ms))
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
        )

    def _send(self, context: _Context, effect: SendMessage, now_ms: int) -> NewSend:
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
        )

    def _status_webhook(self, context: _Context, effect: EmitStatus, now_ms: int) -> NewWebhook:
        submitted = context.submitted[effect.step]
        body = payloads.render_message_status(
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
        return NewWebhook(
            event_id=self._new_id(),
            dispatch_uuid=context.dispatch_uuid,
            application_id=context.application_id,
            kind="message_status",
            message_uuid=effect.message_uuid,
            status=effect.status,
            url=context.status_url,
            payload=body.decode(),
            next_attempt_at_ms=now_ms,
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
