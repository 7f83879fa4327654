"""Properties of the failover engine over random workflows and random orders of events.

Hypothesis builds a workflow of 1-5 steps (random channels, conditions, expiries, with or
without a failover on the last step) and a list of abstract actions: a status for any of the
workflow's message uuids (sent or not yet sent) or for a stranger's, an exact repeat of the
previous status, a timer firing at a random later time, or a timer firing exactly at the
current deadline. `run` turns the actions into a trace of `(now_ms, event)` with a clock that
never goes back, applying each event with `decide` and keeping every decision, so each
property is a plain check over that trace. Some rules need to know what the engine knew just
before an event (was this message the current step? was this an exact repeat?): those are
computed here from the state before the event, independently of the engine's own helpers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opendispatch.engine.failover import ABANDONED, InvalidTransition, decide
from opendispatch.engine.model import (
    CancelRequested,
    CancelSend,
    Condition,
    Effect,
    EmitFinalReport,
    EmitStatus,
    Event,
    MessageStatus,
    SendMessage,
    StatusReported,
    StepPlan,
    TimerFired,
    WorkflowAccepted,
    WorkflowState,
    WorkflowStatus,
)

# Enough examples to meet the rare orders (a late status after a failover after a repeat) in
# every run, few enough that the whole file stays around a few seconds. No deadline: a slow CI
# machine is not a failure of the engine.
PROPERTIES = settings(max_examples=300, deadline=None, print_blob=True)

CHANNELS = ("sms", "whatsapp", "viber_service_msg", "messenger", "mms")
EPOCH_MS = 1_577_887_200_000
STRANGER_UUID = "ffffffff-ffff-4fff-bfff-ffffffffffff"
FAILURES = frozenset({MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE})


# -- strategies ---------------------------------------------------------------------------------


@st.composite
def workflows(draw: st.DrawFn) -> WorkflowAccepted:
    count = draw(st.integers(min_value=1, max_value=5))
    steps = []
    for index in range(count):
        is_last = index == count - 1
        channel = draw(st.sampled_from(CHANNELS))
        # Untimed steps: the last of a Dispatch workflow, any of a Messages API v1 list.
        if draw(st.booleans()) if is_last else draw(st.integers(0, 3)) == 0:
            steps.append(StepPlan(channel=channel))
        else:
            steps.append(
                StepPlan(
                    channel=channel,
                    condition=draw(st.sampled_from(Condition)),
                    expiry_s=draw(st.integers(min_value=15, max_value=86_400)),
                )
            )
    return WorkflowAccepted(
        dispatch_uuid=draw(st.uuids()).hex,
        steps=tuple(steps),
        message_uuids=tuple(f"{index:08d}-0000-4000-8000-{count:012d}" for index in range(count)),
        final_status_timeout_s=draw(st.integers(min_value=15, max_value=172_800)),
    )


@dataclass(frozen=True)
class Report:
    """A status for message `target`: an index into the workflow's uuids (sent or not yet sent),
    past their end a stranger's uuid, or None for whichever message is current at the time."""

    target: int | None
    status: MessageStatus
    price: str | None
    after_ms: int


@dataclass(frozen=True)
class Repeat:
    """The previous StatusReported again, exactly."""


@dataclass(frozen=True)
class Fire:
    """The timer loop wakes `after_ms` later, whatever the deadline (often early or stale)."""

    after_ms: int


@dataclass(frozen=True)
class FireWhenDue:
    """The timer loop wakes exactly at the deadline (or now, if there is none)."""


@dataclass(frozen=True)
class Cancel:
    """The application cancels the workflow `after_ms` later (refused once it has ended)."""

    after_ms: int


Action = Report | Repeat | Fire | FireWhenDue | Cancel

# Small steps mostly, days sometimes: both "a status a second later" and "long after expiry".
delays = st.one_of(
    st.integers(min_value=0, max_value=5_000), st.integers(min_value=0, max_value=200_000_000)
)
prices = st.one_of(st.none(), st.sampled_from(["0", "0.0333", "0.05", "0.1"]))
reports = st.builds(
    Report,
    target=st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
    status=st.sampled_from(MessageStatus),
    price=prices,
    after_ms=delays,
)
# Statuses weigh three times a timer: otherwise most workflows end given up before they
# hear anything, and `completed` becomes rare.
actions = st.one_of(
    reports,
    reports,
    reports,
    st.just(Repeat()),
    st.builds(Fire, after_ms=delays),
    st.just(FireWhenDue()),
    st.builds(Cancel, after_ms=delays),
)
histories = st.tuples(workflows(), st.lists(actions, min_size=3, max_size=30))


# -- running a history --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    now_ms: int
    event: Event
    before: WorkflowState | None
    after: WorkflowState
    effects: tuple[Effect, ...]


def run(accepted: WorkflowAccepted, planned: list[Action]) -> list[Decision]:
    """Apply the workflow's acceptance then every action, with a clock that only moves on."""
    now_ms = EPOCH_MS
    state, effects = decide(None, accepted, now_ms)
    trace = [Decision(now_ms, accepted, None, state, effects)]
    previous: StatusReported | None = None
    for action in planned:
        event: Event
        if isinstance(action, Report):
            now_ms += action.after_ms
            event = StatusReported(
                message_uuid=target_uuid(accepted, state, action.target),
                status=action.status,
                at_ms=now_ms,
                price=action.price,
            )
            previous = event
        elif isinstance(action, Repeat):
            if previous is None:
                continue
            event = previous
        elif isinstance(action, Fire):
            now_ms += action.after_ms
            event = TimerFired()
        elif isinstance(action, Cancel):
            now_ms += action.after_ms
            event = CancelRequested()
            if not state.is_open:  # refused, and nothing changes: not part of the trace
                with pytest.raises(InvalidTransition):
                    decide(state, event, now_ms)
                continue
        else:
            now_ms = max(now_ms, state.due_at_ms or now_ms)
            event = TimerFired()
        before = state
        state, effects = decide(before, event, now_ms)
        trace.append(Decision(now_ms, event, before, state, effects))
    return trace


def target_uuid(accepted: WorkflowAccepted, state: WorkflowState, target: int | None) -> str:
    if target is None:
        return accepted.message_uuids[state.current]
    if target < len(accepted.message_uuids):
        return accepted.message_uuids[target]
    return STRANGER_UUID


def replay(trace: list[Decision]) -> list[tuple[WorkflowState, tuple[Effect, ...]]]:
    state: WorkflowState | None = None
    decisions = []
    for decision in trace:
        state, effects = decide(state, decision.event, decision.now_ms)
        decisions.append((state, effects))
    return decisions


def all_effects(trace: list[Decision]) -> list[Effect]:
    return [effect for decision in trace for effect in decision.effects]


def final_reports(trace: list[Decision]) -> list[tuple[Decision, EmitFinalReport]]:
    return [
        (decision, effect)
        for decision in trace
        for effect in decision.effects
        if isinstance(effect, EmitFinalReport)
    ]


def meets(plan: StepPlan, status: MessageStatus) -> bool:
    """The condition rule, restated: `delivered` by delivered or read, `read` only by read."""
    condition = plan.condition or Condition.DELIVERED
    if condition is Condition.READ:
        return status is MessageStatus.READ
    return status in (MessageStatus.DELIVERED, MessageStatus.READ)


def is_current_message(state: WorkflowState, message_uuid: str) -> bool:
    message = state.message(message_uuid)
    return state.is_open and message is not None and message.step == state.current


# -- properties ---------------------------------------------------------------------------------


@PROPERTIES
@given(histories)
def test_at_most_one_final_report_and_an_ended_workflow_never_reopens(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    trace = run(*history)

    assert len(final_reports(trace)) <= 1
    ended_at = next((i for i, d in enumerate(trace) if not d.after.is_open), None)
    if ended_at is None:
        return
    ended = trace[ended_at].after
    for decision in trace[ended_at + 1 :]:
        assert decision.after.status is ended.status
        assert decision.after.current == ended.current
        assert decision.after.ended_at_ms == ended.ended_at_ms
        assert decision.after.due_at_ms is None
        assert all(isinstance(effect, EmitStatus) for effect in decision.effects)


@PROPERTIES
@given(histories)
def test_steps_are_sent_in_order_each_exactly_once_and_never_more_than_planned(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    accepted, _ = history
    trace = run(*history)

    sent = [effect for effect in all_effects(trace) if isinstance(effect, SendMessage)]

    assert [send.step for send in sent] == list(range(len(sent)))
    assert len(sent) <= len(accepted.steps)
    assert [send.message_uuid for send in sent] == list(accepted.message_uuids[: len(sent)])
    assert [message.message_uuid for message in trace[-1].after.messages] == [
        send.message_uuid for send in sent
    ]


@PROPERTIES
@given(histories)
def test_completed_means_the_current_message_met_its_steps_condition(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    accepted, _ = history
    for decision, report in final_reports(run(*history)):
        if report.status is not WorkflowStatus.COMPLETED:
            continue
        event, before = decision.event, decision.before
        assert isinstance(event, StatusReported)
        assert before is not None
        assert is_current_message(before, event.message_uuid)
        assert meets(accepted.steps[before.current], event.status)


@PROPERTIES
@given(histories)
def test_error_means_the_last_step_failed_or_expired_or_an_untimed_step_expired(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    accepted, _ = history
    last = len(accepted.steps) - 1
    for decision, report in final_reports(run(*history)):
        if report.status is not WorkflowStatus.ERROR:
            continue
        before = decision.before
        assert before is not None
        if before.current != last:
            # An untimed step (v1's) whose message was accepted and never became final by
            # its deadline: the workflow ends there rather than risk a duplicate.
            assert accepted.steps[before.current].condition is None
            assert before.due_at_ms is not None
            assert decision.now_ms >= before.due_at_ms
            assert before.messages[-1].status is not None
            assert report.messages[-1].status not in FAILURES
            continue
        if isinstance(decision.event, StatusReported):
            assert is_current_message(before, decision.event.message_uuid)
            deadline_passed = (
                before.due_at_ms is not None
                and decision.now_ms >= before.due_at_ms
                and decision.event.at_ms >= before.due_at_ms
            )
            # Either the current message failed, or it reported after its deadline (the step
            # expired first).
            assert decision.event.status in FAILURES or deadline_passed
        else:
            # The timer, or a cancel applied after the deadline (which came first).
            assert isinstance(decision.event, TimerFired | CancelRequested)
            assert before.due_at_ms is not None
            assert decision.now_ms >= before.due_at_ms


@PROPERTIES
@given(histories)
def test_a_cancel_ends_a_running_workflow_with_one_final_report_and_no_send_left(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    for decision in run(*history):
        if not isinstance(decision.event, CancelRequested):
            continue
        before, after = decision.before, decision.after
        assert before is not None
        assert before.is_open
        [report] = [e for e in decision.effects if isinstance(e, EmitFinalReport)]
        assert report.status is after.status
        assert not after.is_open
        assert after.due_at_ms is None
        deadline_passed = before.due_at_ms is not None and decision.now_ms >= before.due_at_ms
        if after.status is not WorkflowStatus.CANCELLED:
            # Only a deadline that came first can end it otherwise: the last step's, in error.
            assert deadline_passed
            assert after.status is WorkflowStatus.ERROR
        # Whatever it asked to send (a failover at the deadline) it cancelled at once.
        asked = {e.message_uuid for e in decision.effects if isinstance(e, SendMessage)}
        cancelled = {e.message_uuid for e in decision.effects if isinstance(e, CancelSend)}
        assert asked <= cancelled


@PROPERTIES
@given(histories)
def test_deadline_is_set_exactly_while_the_workflow_is_open(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    for decision in run(*history):
        state = decision.after
        assert (state.due_at_ms is None) is (not state.is_open)
        assert (state.ended_at_ms is None) is state.is_open
        if state.due_at_ms is not None:
            assert state.due_at_ms > state.messages[-1].sent_at_ms


@PROPERTIES
@given(histories)
def test_every_new_status_of_a_sent_message_is_forwarded_exactly_once(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    for decision in run(*history):
        event, before = decision.event, decision.before
        if not isinstance(event, StatusReported) or before is None:
            continue
        message = before.message(event.message_uuid)
        forwarded = [
            effect
            for effect in decision.effects
            if isinstance(effect, EmitStatus) and effect.error != ABANDONED
        ]
        unsent_or_stranger = message is None
        repeat = (
            message is not None
            and any(r.status is event.status for r in message.history)
            and (event.error is None or event.error == message.error)
            and (event.price is None or event.price == message.price)
        )
        if unsent_or_stranger or repeat:  # ignored altogether
            assert (decision.after, decision.effects) == (before, ())
        else:
            assert message is not None
            assert [(e.message_uuid, e.status, e.at_ms) for e in forwarded] == [
                (event.message_uuid, event.status, event.at_ms)
            ]
            counted = decision.after.message(event.message_uuid)
            assert counted is not None
            assert counted.price == (event.price if event.price is not None else message.price)
            assert forwarded[0].price == counted.price


@PROPERTIES
@given(histories)
def test_late_statuses_never_change_the_outcome(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    for decision in run(*history):
        event, before = decision.event, decision.before
        if not isinstance(event, StatusReported) or before is None:
            continue
        if before.message(event.message_uuid) is None:
            continue
        if is_current_message(before, event.message_uuid):
            continue
        after = decision.after
        assert (after.status, after.current, after.due_at_ms, after.ended_at_ms) == (
            before.status,
            before.current,
            before.due_at_ms,
            before.ended_at_ms,
        )
        assert all(isinstance(effect, EmitStatus) for effect in decision.effects)


@PROPERTIES
@given(histories)
def test_final_report_lists_every_message_sent_in_order_each_with_a_status(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    accepted, _ = history
    for decision, report in final_reports(run(*history)):
        assert report.at_ms == decision.now_ms
        assert [(m.message_uuid, m.channel) for m in report.messages] == [
            (m.message_uuid, accepted.steps[m.step].channel) for m in decision.after.messages
        ]
        assert all(message.status is not None for message in report.messages)
        if decision.effects[-1] is report:
            # Nothing was applied after the report in this decision (a status arriving after
            # the deadline expires the step first, then is recorded as late), so the report
            # is the final state exactly.
            assert [(m.status, m.price) for m in report.messages] == [
                (m.status, m.price) for m in decision.after.messages
            ]


@PROPERTIES
@given(histories)
def test_replaying_the_same_events_gives_the_same_states_and_effects(
    history: tuple[WorkflowAccepted, list[Action]],
) -> None:
    trace = run(*history)
    snapshot = copy.deepcopy(trace)

    assert replay(trace) == [(decision.after, decision.effects) for decision in trace]
    assert trace == snapshot  # nothing the engine was given changed under it


@PROPERTIES
@given(workflows())
def test_firing_the_timer_at_each_deadline_ends_every_workflow_in_error(
    accepted: WorkflowAccepted,
) -> None:
    state, _ = decide(None, accepted, EPOCH_MS)
    firings = 0
    report: EmitFinalReport | None = None
    while state.is_open:
        assert firings < len(accepted.steps), "a workflow stayed open past its last deadline"
        assert state.due_at_ms is not None
        state, effects = decide(state, TimerFired(), state.due_at_ms)
        firings += 1
        report = next((e for e in effects if isinstance(e, EmitFinalReport)), report)

    assert firings == len(accepted.steps)
    assert report is not None
    assert report.status is WorkflowStatus.ERROR
    assert [message.message_uuid for message in report.messages] == list(accepted.message_uuids)
    assert all(message.status is MessageStatus.REJECTED for message in report.messages)
    assert all(message.error == ABANDONED for message in state.messages)
