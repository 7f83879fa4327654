"""A workflow's story as an operator reads it: each step with its channel, provider, every
status and when, the condition it waited for and when its deadline fell, what came of it;
and every webhook with its delivery.

Built from what the store keeps (the submitted request, the engine's state, the sends, the
webhooks), by the engine's own rules: a step's deadline starts when its message is sent and
lasts its `failover.expiry_time` (a last message without one: the final-status timeout);
`delivered` is met by `delivered` or `read`, `read` only by `read`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from opendispatch.api.validation import condition_warnings
from opendispatch.engine.failover import Signal, signal_for
from opendispatch.engine.model import (
    Condition,
    MessageState,
    StatusRecord,
    StepPlan,
    WorkflowState,
)
from opendispatch.runtime.shell import decode_state
from opendispatch.store.records import LoadedWorkflow, SendRecord, WebhookRecord
from opendispatch.webhooks.destinations import redact_url
from opendispatch.webhooks.payloads import total_price

__all__ = [
    "Outcome",
    "StepView",
    "TimelineView",
    "WebhookLine",
    "timeline",
]

_STEP_INDEX = re.compile(r"^workflow\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of a step: `event` (at `at_ms`, when known), then `consequence`."""

    event: str
    at_ms: int | None = None
    consequence: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepView:
    number: int  # from 1, as people count
    channel: str
    recipient: str
    condition: str  # what the step waits for: `delivered` or `read`
    timeout_s: int  # how long from its send
    final_status_timeout: bool  # a last message without `failover`: the server's timeout
    sent_at_ms: int | None  # None: the workflow never got here
    deadline_ms: int | None
    outcome: Outcome
    outcome_kind: str  # met | failed_over | ended | waiting | not_sent (the page's colours)
    statuses: tuple[StatusRecord, ...]
    price: str | None
    error: str | None
    provider: str | None
    send: SendRecord | None
    warning: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookLine:
    record: WebhookRecord
    about: str  # "step 1 (whatsapp): delivered", "final report: completed"
    url: str  # without credentials


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineView:
    dispatch_uuid: str
    application_id: str
    status: str
    running: bool
    created_at_ms: int
    updated_at_ms: int
    ended_at_ms: int | None
    next_deadline_ms: int | None
    usage: str
    steps: tuple[StepView, ...]
    webhooks: tuple[WebhookLine, ...]


def _request_steps(request_json: str) -> list[dict[str, Any]]:
    try:
        workflow = msgspec.json.decode(request_json).get("workflow")
    except (msgspec.DecodeError, AttributeError):
        return []
    return (
        [step for step in workflow if isinstance(step, dict)] if isinstance(workflow, list) else []
    )


def _recipient(step: dict[str, Any]) -> str:
    to = step.get("to")
    if not isinstance(to, dict):
        return ""
    found = to.get("number", to.get("id", ""))
    return found if isinstance(found, str) else ""


def _first(history: Sequence[StatusRecord], plan: StepPlan, wanted: Signal) -> StatusRecord | None:
    """The first status that meant `wanted` for this step, by the engine's own reading."""
    return next((record for record in history if signal_for(plan, record.status) is wanted), None)


def _outcome(
    state: WorkflowState, message: MessageState, plan: StepPlan, deadline_ms: int
) -> tuple[Outcome, str]:
    condition = str(plan.condition or Condition.DELIVERED)
    following = next((m for m in state.messages if m.step == message.step + 1), None)
    failure = _first(message.history, plan, Signal.FAILED)
    met = _first(message.history, plan, Signal.MET)
    if met is not None and met.at_ms >= deadline_ms:
        met = None  # a status that happened after the deadline does not meet it
    if following is not None:
        moved = f"failed over to step {following.step + 1}"
        if failure is not None and failure.at_ms <= following.sent_at_ms:
            return Outcome(str(failure.status), failure.at_ms, moved), "failed_over"
        return Outcome(f"{condition} not reached by the deadline", None, moved), "failed_over"
    status = str(state.status)
    if state.is_open:
        if state.current == message.step:
            return Outcome(f"waiting for {condition} until the deadline"), "waiting"
        return Outcome("waiting"), "waiting"
    if status == "completed" and met is not None:
        return Outcome(str(met.status), met.at_ms, "the workflow completed"), "met"
    if status == "error":
        if failure is not None:
            return Outcome(
                str(failure.status), failure.at_ms, "the workflow ended in error"
            ), "ended"
        return Outcome(
            f"{condition} not reached by the deadline", None, "the workflow ended in error"
        ), "ended"
    if status == "cancelled":
        return Outcome("cancelled", state.ended_at_ms, "no further step is sent"), "ended"
    return Outcome(f"the workflow ended: {status}", state.ended_at_ms), "ended"


def timeline(
    loaded: LoadedWorkflow, sends: Sequence[SendRecord], webhooks: Sequence[WebhookRecord]
) -> TimelineView:
    record = loaded.record
    state = None if loaded.state_json is None else decode_state(loaded.state_json)
    requested = _request_steps(record.request_json)
    # The API's own words for a condition that can never be met (the 202 says the same).
    never_met = {
        int(found[1]): warning.reason
        for warning in condition_warnings(requested)
        if (found := _STEP_INDEX.match(warning.name))
    }
    by_step = {} if state is None else {m.step: m for m in state.messages}
    send_of = {send.message_uuid: send for send in sends}
    steps = []
    for index, step in enumerate(requested):
        channel = str((step.get("to") or {}).get("type", ""))
        plan = state.steps[index] if state is not None and index < len(state.steps) else None
        condition = str(plan.condition if plan and plan.condition else "delivered")
        expiry = plan.expiry_s if plan is not None else None
        final_timeout = expiry is None
        timeout_s = expiry if expiry is not None else (state.final_status_timeout_s if state else 0)
        message = by_step.get(index)
        deadline = None if message is None else message.sent_at_ms + timeout_s * 1000
        if state is None or plan is None or message is None or deadline is None:
            waiting = state is not None and state.is_open
            outcome = Outcome("not sent yet" if waiting else "not sent: the workflow ended first")
            kind = "not_sent"
        else:
            outcome, kind = _outcome(state, message, plan, deadline)
        steps.append(
            StepView(
                number=index + 1,
                channel=channel,
                recipient=_recipient(step),
                condition=condition,
                timeout_s=timeout_s,
                final_status_timeout=final_timeout,
                sent_at_ms=None if message is None else message.sent_at_ms,
                deadline_ms=deadline,
                outcome=outcome,
                outcome_kind=kind,
                statuses=() if message is None else message.history,
                price=None if message is None else message.price,
                error=None
                if message is None or message.error is None
                else f"{message.error.code}: {message.error.reason}",
                provider=None
                if message is None
                else message.provider
                or (
                    send_of[message.message_uuid].provider
                    if message.message_uuid in send_of
                    else None
                ),
                send=None if message is None else send_of.get(message.message_uuid),
                warning=never_met.get(index),
            )
        )
    step_of = {} if state is None else {m.message_uuid: m.step for m in state.messages}
    lines = []
    for webhook in webhooks:
        if webhook.kind == "final_report":
            about = f"final report: {webhook.status}"
        else:
            number = step_of.get(webhook.message_uuid or "")
            where = (
                f"step {number + 1} ({requested[number].get('to', {}).get('type', '')})"
                if (number is not None and number < len(requested))
                else "message"
            )
            about = f"{where}: {webhook.status}"
        lines.append(WebhookLine(record=webhook, about=about, url=redact_url(webhook.url)))
    prices = () if state is None else (m.price for m in state.messages)
    return TimelineView(
        dispatch_uuid=record.dispatch_uuid,
        application_id=record.application_id,
        status=str(record.status),
        running=state is not None and state.is_open,
        created_at_ms=record.created_at_ms,
        updated_at_ms=record.updated_at_ms,
        ended_at_ms=None if state is None else state.ended_at_ms,
        next_deadline_ms=None if state is None else state.due_at_ms,
        usage=f"{total_price(prices)} EUR",
        steps=tuple(steps),
        webhooks=tuple(lines),
    )
