"""What happened to workflows and webhooks, as log lines an operator can grep.

Every line is one event: a fixed name, then `key=value` fields in a fixed order, so
`grep 'dispatch_uuid=0193...'` gives a workflow's whole story and `grep 'failover '` every
failover. With `--log-format json`, the same fields are keys of one JSON object per line.

    workflow accepted dispatch_uuid=... application_id=... request_id=... steps=2
    step sent dispatch_uuid=... application_id=... message_uuid=... step=0 channel=whatsapp
        provider=sandbox outcome=rejected error=1300 reason="Rejected by the sandbox"
    failover dispatch_uuid=... application_id=... from_step=0 to_step=1 reason=rejected
    workflow ended dispatch_uuid=... application_id=... status=completed messages=2
    workflow cancelled dispatch_uuid=... application_id=... by=application request_id=...
    webhook attempt failed webhook_id=... kind=message_status dispatch_uuid=...
        application_id=... url=http://receiver.example/status attempt=1 status_code=500
        reason="HTTP 500" retry_in_ms=1013                                  (DEBUG)
    webhook dead ... attempts=7 reason="..."                               (WARNING)

INFO for what happens once or twice per workflow; DEBUG for what happens per attempt (a
delivery, a failed attempt to be retried); WARNING where something was given up.

The request id is on the accepted line only: it is the request's, and the `dispatch_uuid`
joins it to everything after. Carrying it further would mean storing it with the workflow
for the log's sake alone.

These lines are on the hot path (several per workflow, at thousands of workflows a second):
each function returns after one level check when its level is off, and a line's text is made
only when a handler writes it (`logs.EventLine`). Never a secret: the fields are ids,
channels, statuses, and webhook URLs without credentials or query (`loggable_url`).
"""

from __future__ import annotations

import logging
from typing import Final

from opendispatch.engine.failover import ABANDONED
from opendispatch.engine.model import (
    EmitFinalReport,
    EmitStatus,
    MessageError,
    MessageStatus,
    SendMessage,
)
from opendispatch.logs import EventKind, EventLine
from opendispatch.store.records import SendJob, Transition, WebhookJob
from opendispatch.webhooks.destinations import loggable_url

__all__ = [
    "enabled",
    "send_attempt_failed",
    "send_deferred",
    "send_given_up",
    "send_outcome_unknown",
    "step_sent",
    "transition_committed",
    "webhook_attempt_failed",
    "webhook_dead",
    "webhook_delivered",
    "webhook_endpoint_failing",
    "webhook_endpoint_recovered",
    "workflow_accepted",
    "workflow_cancelled",
]

log = logging.getLogger("opendispatch.events")

DEBUG: Final = logging.DEBUG
INFO: Final = logging.INFO
WARNING: Final = logging.WARNING

_SEND = ("dispatch_uuid", "application_id", "message_uuid", "step", "channel", "provider")
_WEBHOOK = ("webhook_id", "kind", "dispatch_uuid", "application_id", "url")

_ACCEPTED: Final = EventKind(
    "workflow accepted", "dispatch_uuid", "application_id", "request_id", "steps"
)
_STEP_SENT: Final = EventKind("step sent", *_SEND, "outcome", "error", "reason")
_SEND_ATTEMPT_FAILED: Final = EventKind(
    "send attempt failed", *_SEND, "attempt", "reason", "retry_in_ms"
)
_SEND_DEFERRED: Final = EventKind("send deferred", *_SEND, "retry_in_ms")
_SEND_GIVEN_UP: Final = EventKind("send given up", *_SEND, "attempts", "reason")
_SEND_UNKNOWN: Final = EventKind("send outcome unknown", *_SEND, "reason")
_FAILOVER: Final = EventKind(
    "failover", "dispatch_uuid", "application_id", "from_step", "to_step", "reason"
)
_ENDED: Final = EventKind("workflow ended", "dispatch_uuid", "application_id", "status", "messages")
_CANCELLED: Final = EventKind(
    "workflow cancelled", "dispatch_uuid", "application_id", "by", "request_id"
)
_WEBHOOK_DELIVERED: Final = EventKind(
    "webhook delivered", *_WEBHOOK, "attempt", "status_code", "elapsed_ms"
)
_WEBHOOK_FAILED: Final = EventKind(
    "webhook attempt failed", *_WEBHOOK, "attempt", "status_code", "reason", "retry_in_ms"
)
_WEBHOOK_DEAD: Final = EventKind("webhook dead", *_WEBHOOK, "attempts", "reason")
_ENDPOINT_FAILING: Final = EventKind("webhook endpoint failing", "application_id", "url", "reason")
_ENDPOINT_RECOVERED: Final = EventKind(
    "webhook endpoint recovered", "application_id", "url", "woken"
)

_FAILURES: Final = frozenset({MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE})


def enabled(level: int = INFO) -> bool:
    """Whether lines of `level` are written: check before computing an argument that costs."""
    return log.isEnabledFor(level)


def _emit(level: int, kind: EventKind, *values: object) -> None:
    log.log(level, EventLine(kind, values))


def _send_fields(job: SendJob) -> tuple[str, str, str, int, str]:
    return job.dispatch_uuid, job.application_id, job.message_uuid, job.step, job.channel


# -- workflows ---------------------------------------------------------------------------------


def workflow_accepted(
    *, dispatch_uuid: str, application_id: str, request_id: str, steps: int
) -> None:
    if log.isEnabledFor(INFO):
        _emit(INFO, _ACCEPTED, dispatch_uuid, application_id, request_id, steps)


def workflow_cancelled(
    *, dispatch_uuid: str, application_id: str, by: str, request_id: str
) -> None:
    """Who cancelled a running workflow (`by`: `application` for the API, or the operator),
    once the cancel is committed: after its `workflow ended ... status=cancelled` line."""
    if log.isEnabledFor(INFO):
        _emit(INFO, _CANCELLED, dispatch_uuid, application_id, by, request_id)


def step_sent(job: SendJob, *, provider: str, error: MessageError | None) -> None:
    """A provider answered a step's send: `submitted`, or `rejected` with `error`."""
    if log.isEnabledFor(INFO):
        if error is None:
            outcome, code, reason = "submitted", None, None
        else:
            outcome, code, reason = "rejected", error.code, error.reason
        _emit(INFO, _STEP_SENT, *_send_fields(job), provider or None, outcome, code, reason)


def send_attempt_failed(
    job: SendJob,
    *,
    provider: str,
    attempt: int,
    reason: str,
    retry_in_ms: int,
) -> None:
    """The route's providers were unavailable; the send is tried again later."""
    if log.isEnabledFor(DEBUG):
        values = (*_send_fields(job), provider or None)
        _emit(DEBUG, _SEND_ATTEMPT_FAILED, *values, attempt, reason, retry_in_ms)


def send_deferred(
    job: SendJob,
    *,
    provider: str,
    retry_in_ms: int,
) -> None:
    """No provider of the route could be tried now (all pausing); not an attempt."""
    if log.isEnabledFor(DEBUG):
        values = (*_send_fields(job), provider or None)
        _emit(DEBUG, _SEND_DEFERRED, *values, retry_in_ms)


def send_given_up(
    job: SendJob,
    *,
    provider: str,
    attempts: int,
    reason: str,
) -> None:
    if log.isEnabledFor(WARNING):
        values = (*_send_fields(job), provider or None)
        _emit(WARNING, _SEND_GIVEN_UP, *values, attempts, reason)


def send_outcome_unknown(
    job: SendJob,
    *,
    provider: str,
    reason: str,
) -> None:
    """No answer came: not sent again; its callbacks or its step's deadline settle it."""
    if log.isEnabledFor(WARNING):
        values = (*_send_fields(job), provider or None)
        _emit(WARNING, _SEND_UNKNOWN, *values, reason)


def transition_committed(transition: Transition) -> None:
    """The failovers and the end a committed transition brought, read from the engine's
    effects in the order it decided them: a step's failure status (`rejected`,
    `undeliverable`) emitted before the next step's send is why it failed over; without one,
    its deadline passed (a message never accepted by its deadline is given up as `rejected`
    with error 1400: that too is the deadline)."""
    if not transition.effects or not log.isEnabledFor(INFO):
        return
    failed: dict[int, str] = {}
    for effect in transition.effects:
        if isinstance(effect, EmitStatus):
            if effect.status in _FAILURES and effect.error != ABANDONED:
                failed[effect.step] = effect.status.value
            else:
                failed.pop(effect.step, None)
        elif isinstance(effect, SendMessage):
            if effect.step > 0:
                reason = failed.get(effect.step - 1, "deadline")
                _emit(
                    INFO,
                    _FAILOVER,
                    transition.dispatch_uuid,
                    transition.application_id,
                    effect.step - 1,
                    effect.step,
                    reason,
                )
        elif isinstance(effect, EmitFinalReport):
            _emit(
                INFO,
                _ENDED,
                transition.dispatch_uuid,
                transition.application_id,
                effect.status.value,
                len(effect.messages),
            )


# -- webhooks ----------------------------------------------------------------------------------


def _webhook_fields(job: WebhookJob) -> tuple[str, str, str, str, str]:
    return job.event_id, job.kind, job.dispatch_uuid, job.application_id, loggable_url(job.url)


def webhook_delivered(job: WebhookJob, *, status_code: int | None, elapsed_ms: float) -> None:
    if log.isEnabledFor(DEBUG):
        values = (job.attempts, status_code, round(elapsed_ms))
        _emit(DEBUG, _WEBHOOK_DELIVERED, *_webhook_fields(job), *values)


def webhook_attempt_failed(
    job: WebhookJob, *, status_code: int | None, reason: str | None, retry_in_ms: int
) -> None:
    """One failed attempt, to be retried: per attempt, so DEBUG (a webhook given up is
    `webhook_dead`, a receiver that keeps failing is `webhook_endpoint_failing`)."""
    if log.isEnabledFor(DEBUG):
        values = (job.attempts, status_code, reason, retry_in_ms)
        _emit(DEBUG, _WEBHOOK_FAILED, *_webhook_fields(job), *values)


def webhook_dead(job: WebhookJob, *, attempts: int, reason: str | None) -> None:
    if log.isEnabledFor(WARNING):
        _emit(WARNING, _WEBHOOK_DEAD, *_webhook_fields(job), attempts, reason)


def webhook_endpoint_failing(*, application_id: str, url: str, reason: str | None) -> None:
    if log.isEnabledFor(INFO):
        _emit(INFO, _ENDPOINT_FAILING, application_id, loggable_url(url), reason)


def webhook_endpoint_recovered(*, application_id: str, url: str, woken: int) -> None:
    if log.isEnabledFor(INFO):
        _emit(INFO, _ENDPOINT_RECOVERED, application_id, loggable_url(url), woken)
