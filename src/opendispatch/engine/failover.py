"""The failover template: every rule of it lives in this file.

`decide(state, event, now_ms) -> (state, effects)` is a pure function, in the manner of h11:
no clock, no database, no network, no randomness. Ids and the time come in as arguments, and
what should happen in the world goes out as effects (`SendMessage`, `CancelSend`,
`EmitStatus`, `EmitFinalReport`); the workflow's one timer is `state.due_at_ms`, which the
shell stores in an indexed column. The shell applies one event in one transaction, so a crash
leaves either the old state with its effects pending or the new one.

How a workflow moves, in words (the table `TRANSITIONS` says the same):

- Accepting a workflow sends its first message. Each step's message has its own
  `message_uuid`, chosen at accept time.
- A step starts when its message is sent, and gets a deadline: its `failover.expiry_time`, or,
  for a message without `failover` (the last of a Dispatch workflow, any message of a Messages
  API v1 failover list), `final_status_timeout_s`.
- A status of the current message is classified as a *signal*: `rejected` and `undeliverable`
  FAIL at once; a status that satisfies the step's condition is MET (`delivered` is met by
  `delivered` or `read`, `read` only by `read`; a message without `failover` has the
  condition `delivered`); anything else is PROGRESS. The deadline passing is EXPIRED.
- MET completes the workflow. FAILED moves to the next message; on the last message, it ends
  the workflow in `error`. EXPIRED does the same on a step with a condition (a *timed* step);
  on a step without one it ends the workflow in `error` wherever it stands: such a step fails
  over on a rejection only (Messages API v1's rule), and a message that was accepted but never
  reported a final status within the final-status timeout may well have arrived, so sending
  the next one could only duplicate it. PROGRESS waits. (`TRANSITIONS` is keyed by the
  step's `Place`.)
- A step whose provider never answered by its deadline is given up: its send is cancelled
  (`CancelSend`: a message sent that late would only confuse) and its message is recorded
  `rejected` with error 1400, so every message in the final report has a status. That is a
  failure of the step (FAILED), not an expiry: a message no provider accepted was not sent, so
  an untimed step moves on to the next message.
- A status of the current message that happened at or after the step's deadline, applied
  before the timer loop got to it, does not meet the step: the step expires first, and the
  status is late.
  (The outcome depends on when things happened, not on how busy the timer loop was.)
- Every status is forwarded (`EmitStatus`) and counted in the usage, including late ones: a
  status of a message the workflow already moved past, or one after the final report. Those
  never change the outcome. A repeat that brings nothing new (same message, same status, no
  new error or price) is dropped; a provider's own `rejected` after the engine gave the
  message up is new: its error and price are recorded and forwarded.
- A cancel (`CancelRequested`, an extension: the spec has no cancel) is CANCELLED for the
  current step, on any step: the workflow ends `cancelled`, its deadline is cleared and no
  further message is sent. A current message whose provider has not answered yet is given
  up as at a deadline, with error 1430: its send is cancelled if it has not gone out, and it
  is recorded `rejected`. A send already on its way to a provider cannot be recalled: if the
  provider accepts it, its statuses come late, forwarded and counted like any late status.
  A cancel applied at or after the step's deadline, before the timer loop got to it, comes
  after the deadline, as a status would: the step expires first (on the last step that ends
  the workflow in `error`, and the cancel finds nothing left to cancel). So a cancel racing
  a deadline has the same outcome whichever is applied first. Cancelling a workflow that has
  ended (cancelled included) is refused: `InvalidTransition`, and nothing changes.
- Exactly one `EmitFinalReport` per workflow, when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from msgspec.structs import replace

from opendispatch.engine.model import (
    CancelRequested,
    CancelSend,
    Condition,
    Effect,
    EmitFinalReport,
    EmitStatus,
    Event,
    FinalMessage,
    MessageError,
    MessageState,
    MessageStatus,
    SendMessage,
    StatusRecord,
    StatusReported,
    StepPlan,
    TimerFired,
    WorkflowAccepted,
    WorkflowState,
    WorkflowStatus,
)
from opendispatch.errors import OpenDispatchError

__all__ = [
    "ABANDONED",
    "CANCELLED_UNSENT",
    "TRANSITIONS",
    "InvalidTransition",
    "Move",
    "Place",
    "Signal",
    "decide",
    "place_of",
    "signal_for",
]


class InvalidTransition(OpenDispatchError):
    """The engine refuses an event that makes no sense for the state (and changes nothing)."""


Decision = tuple[WorkflowState, tuple[Effect, ...]]

# Recorded as the `rejected` error of a message whose provider never answered its send before
# the step's deadline (for instance, a provider down for longer than `expiry_time`).
ABANDONED: Final = MessageError(
    code=1400, reason="The provider did not accept the message before the step's deadline."
)
# The same for a message whose provider had not answered when the workflow was cancelled.
CANCELLED_UNSENT: Final = MessageError(
    code=1430, reason="The workflow was cancelled before the provider accepted the message."
)


class Signal(StrEnum):
    """What an event means for the current step."""

    PROGRESS = "progress"  # the message moved on, without deciding anything
    MET = "met"  # it reached the step's condition
    FAILED = "failed"  # rejected or undeliverable
    EXPIRED = "expired"  # the step's deadline passed first
    CANCELLED = "cancelled"  # the workflow was cancelled while on this step


class Move(StrEnum):
    WAIT = "wait"
    COMPLETE = "complete"  # the workflow ends `completed`
    NEXT = "next"  # send the next message
    FAIL = "fail"  # the workflow ends `error`
    CANCEL = "cancel"  # the workflow ends `cancelled`


class Place(StrEnum):
    """Where the current step stands: with the signal, all that a move depends on."""

    TIMED = "timed"  # not the last, with a condition: its deadline fails it over
    UNTIMED = "untimed"  # not the last, without a condition: only a rejection fails it over
    LAST = "last"


# (signal, place of the current step) -> move. Only open workflows consult it: once a
# workflow has ended, events are forwarded and counted, nothing more.
TRANSITIONS: Final[dict[tuple[Signal, Place], Move]] = {
    **{(Signal.PROGRESS, place): Move.WAIT for place in Place},
    **{(Signal.MET, place): Move.COMPLETE for place in Place},
    (Signal.FAILED, Place.TIMED): Move.NEXT,
    (Signal.FAILED, Place.UNTIMED): Move.NEXT,
    (Signal.FAILED, Place.LAST): Move.FAIL,
    (Signal.EXPIRED, Place.TIMED): Move.NEXT,
    (Signal.EXPIRED, Place.UNTIMED): Move.FAIL,
    (Signal.EXPIRED, Place.LAST): Move.FAIL,
    **{(Signal.CANCELLED, place): Move.CANCEL for place in Place},
}

_FAILURES: Final = frozenset({MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE})
_ENDINGS: Final = {
    Move.COMPLETE: WorkflowStatus.COMPLETED,
    Move.FAIL: WorkflowStatus.ERROR,
    Move.CANCEL: WorkflowStatus.CANCELLED,
}


def decide(state: WorkflowState | None, event: Event, now_ms: int) -> Decision:
    """The next state of the workflow and what to do about it; the input is never changed."""
    if isinstance(event, WorkflowAccepted):
        if state is not None:
            raise InvalidTransition(f"workflow {state.dispatch_uuid} was already accepted")
        return _accept(event, now_ms)
    if state is None:
        raise InvalidTransition(f"{type(event).__name__} for a workflow that does not exist")
    if isinstance(event, StatusReported):
        return _status(state, event, now_ms)
    if isinstance(event, TimerFired):
        return _timer(state, now_ms)
    if isinstance(event, CancelRequested):
        return _cancel(state, now_ms)
    raise InvalidTransition(f"unknown event {event!r}")


def place_of(steps: Sequence[StepPlan], index: int) -> Place:
    """Where step `index` stands in `steps` (see `TRANSITIONS`): for whoever explains a
    workflow's rules (the CLI, the dashboard) without restating them."""
    if index == len(steps) - 1:
        return Place.LAST
    return Place.UNTIMED if steps[index].condition is None else Place.TIMED


def signal_for(plan: StepPlan, status: MessageStatus) -> Signal:
    if status in _FAILURES:
        return Signal.FAILED
    condition = plan.condition or Condition.DELIVERED
    if status is MessageStatus.READ or (
        status is MessageStatus.DELIVERED and condition is Condition.DELIVERED
    ):
        return Signal.MET
    return Signal.PROGRESS


# -- events -----------------------------------------------------------------------------------


def _accept(event: WorkflowAccepted, now_ms: int) -> Decision:
    state = WorkflowState(
        dispatch_uuid=event.dispatch_uuid,
        status=WorkflowStatus.IN_PROGRESS,
        steps=event.steps,
        message_uuids=event.message_uuids,
        final_status_timeout_s=event.final_status_timeout_s,
    )
    return _start_step(state, 0, now_ms, ())


def _status(state: WorkflowState, event: StatusReported, now_ms: int) -> Decision:
    message = state.message(event.message_uuid)
    if message is None:
        return state, ()  # not a message this workflow sent (yet): nothing to forward
    if _is_repeat(message, event):
        if event.provider is not None and message.provider is None:
            # The send's answer after a callback already reported its status: only who
            # carried the message is new.
            return _with_message(state, replace(message, provider=event.provider)), ()
        return state, ()  # a provider repeating itself
    expired: tuple[Effect, ...] = ()
    due = state.due_at_ms
    on_current = state.is_open and message.step == state.current
    if on_current and due is not None and now_ms >= due and event.at_ms >= due:
        state, expired = _timer(state, now_ms)  # the deadline came first
        message = state.message(event.message_uuid) or message
    message = _record(message, event.status, event.at_ms, event.error, event.price)
    if event.provider is not None:
        message = replace(message, provider=event.provider)
    state = _with_message(state, message)
    error = event.error if event.status in _FAILURES else None
    effects: tuple[Effect, ...] = (*expired, _emit(message, event.status, event.at_ms, error))
    if not state.is_open or message.step != state.current:
        return state, effects  # late: forwarded and counted, never changes the outcome
    signal = signal_for(state.steps[message.step], event.status)
    return _move(state, signal, now_ms, effects)


def _is_repeat(message: MessageState, event: StatusReported) -> bool:
    return (
        any(record.status is event.status for record in message.history)
        and (event.error is None or event.error == message.error)
        and (event.price is None or event.price == message.price)
    )


def _timer(state: WorkflowState, now_ms: int) -> Decision:
    if not state.is_open or state.due_at_ms is None or now_ms < state.due_at_ms:
        return state, ()  # a stale or early firing: the deadline moved or was never reached
    state, effects = _give_up_unanswered(state, now_ms, ABANDONED)
    # A message given up unanswered was never sent: a failure of the step, not an expiry.
    return _move(state, Signal.FAILED if effects else Signal.EXPIRED, now_ms, effects)


def _cancel(state: WorkflowState, now_ms: int) -> Decision:
    if not state.is_open:
        raise InvalidTransition(f"workflow {state.dispatch_uuid} has ended ({state.status})")
    expired: tuple[Effect, ...] = ()
    if state.due_at_ms is not None and now_ms >= state.due_at_ms:
        state, expired = _timer(state, now_ms)  # the deadline came first
        if not state.is_open:
            return state, expired  # it ended the workflow: nothing is left to cancel
    state, given_up = _give_up_unanswered(state, now_ms, CANCELLED_UNSENT)
    return _move(state, Signal.CANCELLED, now_ms, (*expired, *given_up))


def _give_up_unanswered(
    state: WorkflowState, now_ms: int, error: MessageError
) -> tuple[WorkflowState, tuple[Effect, ...]]:
    """The current message, if its provider never answered: its send cancelled (if it has
    not gone out yet) and the message recorded `rejected` with `error`, so that every message
    of a final report has a status."""
    current = state.messages[-1]
    if current.status is not None:
        return state, ()
    given_up = _record(current, MessageStatus.REJECTED, now_ms, error, None)
    return _with_message(state, given_up), (
        CancelSend(message_uuid=given_up.message_uuid),
        _emit(given_up, MessageStatus.REJECTED, now_ms, error),
    )


# -- moves ------------------------------------------------------------------------------------


def _move(
    state: WorkflowState, signal: Signal, now_ms: int, effects: tuple[Effect, ...]
) -> Decision:
    move = TRANSITIONS[(signal, _place(state))]
    if move is Move.WAIT:
        return state, effects
    if move is Move.NEXT:
        return _start_step(state, state.current + 1, now_ms, effects)
    status = _ENDINGS[move]
    ended = replace(state, status=status, due_at_ms=None, ended_at_ms=now_ms)
    report = EmitFinalReport(
        status=status,
        at_ms=now_ms,
        messages=tuple(
            FinalMessage(
                message_uuid=message.message_uuid,
                channel=ended.steps[message.step].channel,
                status=message.status,
                price=message.price,
                provider=message.provider,
            )
            for message in ended.messages
        ),
    )
    return ended, (*effects, report)


def _start_step(
    state: WorkflowState, step: int, now_ms: int, effects: tuple[Effect, ...]
) -> Decision:
    plan = state.steps[step]
    timeout_s = plan.expiry_s if plan.expiry_s is not None else state.final_status_timeout_s
    message_uuid = state.message_uuids[step]
    started = replace(
        state,
        current=step,
        messages=(
            *state.messages,
            MessageState(message_uuid=message_uuid, step=step, sent_at_ms=now_ms),
        ),
        due_at_ms=now_ms + timeout_s * 1000,
    )
    return started, (*effects, SendMessage(step=step, message_uuid=message_uuid))


# -- helpers ----------------------------------------------------------------------------------


def _place(state: WorkflowState) -> Place:
    return place_of(state.steps, state.current)


def _record(
    message: MessageState,
    status: MessageStatus,
    at_ms: int,
    error: MessageError | None,
    price: str | None,
) -> MessageState:
    return replace(
        message,
        history=(*message.history, StatusRecord(status=status, at_ms=at_ms)),
        price=price if price is not None else message.price,
        error=error if error is not None else message.error,
    )


def _with_message(state: WorkflowState, message: MessageState) -> WorkflowState:
    messages = tuple(
        message if existing.message_uuid == message.message_uuid else existing
        for existing in state.messages
    )
    return replace(state, messages=messages)


def _emit(
    message: MessageState, status: MessageStatus, at_ms: int, error: MessageError | None
) -> EmitStatus:
    return EmitStatus(
        step=message.step,
        message_uuid=message.message_uuid,
        status=status,
        at_ms=at_ms,
        error=error,
        price=message.price,
    )
