"""The failover engine's rules, one example each, in the order failover.py's docstring states them.

Every test drives `decide` with an explicit clock (`at(seconds)`), never a real one: a deadline
is reached by passing a later `now_ms`, as the timer loop would.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import pytest

from opendispatch.engine.failover import (
    ABANDONED,
    CANCELLED_UNSENT,
    TRANSITIONS,
    InvalidTransition,
    Move,
    Place,
    Signal,
    decide,
    signal_for,
)
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
    MessageStatus,
    SendMessage,
    StatusReported,
    StepPlan,
    TimerFired,
    WorkflowAccepted,
    WorkflowState,
    WorkflowStatus,
)

DISPATCH_UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
WHATSAPP_UUID = "11111111-0000-4000-8000-000000000001"
SMS_UUID = "22222222-0000-4000-8000-000000000002"
VIBER_UUID = "33333333-0000-4000-8000-000000000003"
UNKNOWN_UUID = "99999999-0000-4000-8000-000000000009"

# 2020-01-01T14:00:00Z, the spec's example timestamp: the workflow is accepted at `at(0)`.
EPOCH_MS = 1_577_887_200_000
FINAL_STATUS_TIMEOUT_S = 86_400
REJECTED_BY_PROVIDER = MessageError(code=1340, reason="Invalid recipient")


def at(seconds: float) -> int:
    return EPOCH_MS + int(seconds * 1000)


def whatsapp_then_sms(
    condition: Condition = Condition.READ,
    expiry_s: int = 600,
    final_status_timeout_s: int = FINAL_STATUS_TIMEOUT_S,
) -> WorkflowAccepted:
    """The spec's motivating example: try WhatsApp; if not read within 10 minutes, send an SMS."""
    return WorkflowAccepted(
        dispatch_uuid=DISPATCH_UUID,
        steps=(
            StepPlan(channel="whatsapp", condition=condition, expiry_s=expiry_s),
            StepPlan(channel="sms"),
        ),
        message_uuids=(WHATSAPP_UUID, SMS_UUID),
        final_status_timeout_s=final_status_timeout_s,
    )


def single(
    step: StepPlan, final_status_timeout_s: int = FINAL_STATUS_TIMEOUT_S
) -> WorkflowAccepted:
    return WorkflowAccepted(
        dispatch_uuid=DISPATCH_UUID,
        steps=(step,),
        message_uuids=(SMS_UUID,),
        final_status_timeout_s=final_status_timeout_s,
    )


def accept(event: WorkflowAccepted | None = None, at_s: float = 0) -> WorkflowState:
    state, _ = decide(None, event or whatsapp_then_sms(), at(at_s))
    return state


def report(
    state: WorkflowState,
    message_uuid: str,
    status: MessageStatus,
    at_s: float,
    *,
    price: str | None = None,
    error: MessageError | None = None,
) -> tuple[WorkflowState, tuple[Effect, ...]]:
    event = StatusReported(
        message_uuid=message_uuid, status=status, at_ms=at(at_s), price=price, error=error
    )
    return decide(state, event, at(at_s))


def fire(state: WorkflowState, at_s: float) -> tuple[WorkflowState, tuple[Effect, ...]]:
    return decide(state, TimerFired(), at(at_s))


def cancel(state: WorkflowState, at_s: float) -> tuple[WorkflowState, tuple[Effect, ...]]:
    return decide(state, CancelRequested(), at(at_s))


def sends(effects: Sequence[Effect]) -> list[SendMessage]:
    return [effect for effect in effects if isinstance(effect, SendMessage)]


def final_reports(effects: Sequence[Effect]) -> list[EmitFinalReport]:
    return [effect for effect in effects if isinstance(effect, EmitFinalReport)]


def emitted(effects: Sequence[Effect]) -> list[EmitStatus]:
    return [effect for effect in effects if isinstance(effect, EmitStatus)]


def failed_over_to_sms(at_s: float = 1) -> WorkflowState:
    """WhatsApp rejected at submit, so the SMS went out at `at_s`."""
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.REJECTED, at_s)
    assert state.current == 1
    return state


def completed_by_sms() -> WorkflowState:
    state = failed_over_to_sms(at_s=1)
    state, effects = report(state, SMS_UUID, MessageStatus.DELIVERED, 5, price="0.0333")
    assert final_reports(effects)
    return state


# -- accepting ----------------------------------------------------------------------------------


def test_accept_sends_the_first_message_with_its_preassigned_uuid() -> None:
    state, effects = decide(None, whatsapp_then_sms(), at(0))

    assert effects == (SendMessage(step=0, message_uuid=WHATSAPP_UUID),)
    assert state.status is WorkflowStatus.IN_PROGRESS
    assert state.current == 0
    assert state.message_uuids == (WHATSAPP_UUID, SMS_UUID)
    [message] = state.messages
    assert (message.message_uuid, message.step, message.sent_at_ms) == (WHATSAPP_UUID, 0, at(0))
    assert message.status is None  # the provider has not answered yet


def test_accept_sets_the_deadline_to_now_plus_the_first_expiry_time() -> None:
    state = accept(whatsapp_then_sms(expiry_s=600), at_s=42)

    assert state.due_at_ms == at(42 + 600)
    assert state.ended_at_ms is None


def test_accept_of_a_single_message_without_failover_uses_the_final_status_timeout() -> None:
    state = accept(single(StepPlan(channel="sms"), final_status_timeout_s=3_600))

    assert state.due_at_ms == at(3_600)


def test_accept_of_a_single_message_with_failover_uses_its_own_expiry() -> None:
    step = StepPlan(channel="sms", condition=Condition.DELIVERED, expiry_s=600)
    state = accept(single(step, final_status_timeout_s=3_600))

    assert state.due_at_ms == at(600)


# -- failing over at once -----------------------------------------------------------------------


@pytest.mark.parametrize("failure", [MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE])
def test_failure_at_submit_fails_over_at_once_without_waiting_for_expiry(
    failure: MessageStatus,
) -> None:
    state, effects = report(
        accept(), WHATSAPP_UUID, failure, 2, error=REJECTED_BY_PROVIDER, price="0"
    )

    assert effects == (
        EmitStatus(
            step=0,
            message_uuid=WHATSAPP_UUID,
            status=failure,
            at_ms=at(2),
            error=REJECTED_BY_PROVIDER,
            price="0",
        ),
        SendMessage(step=1, message_uuid=SMS_UUID),
    )
    assert state.current == 1
    assert state.is_open


@pytest.mark.parametrize("failure", [MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE])
@pytest.mark.parametrize(
    "earlier", [(MessageStatus.SUBMITTED,), (MessageStatus.SUBMITTED, MessageStatus.DELIVERED)]
)
def test_failure_after_progress_fails_over_at_once(
    earlier: tuple[MessageStatus, ...], failure: MessageStatus
) -> None:
    state = accept()  # condition `read`: `delivered` is progress, not success
    for second, status in enumerate(earlier, start=1):
        state, effects = report(state, WHATSAPP_UUID, status, second)
        assert sends(effects) == []

    state, effects = report(state, WHATSAPP_UUID, failure, 30)

    assert sends(effects) == [SendMessage(step=1, message_uuid=SMS_UUID)]
    assert state.current == 1


def test_failover_starts_the_next_deadline_at_the_time_of_the_failure() -> None:
    event = WorkflowAccepted(
        dispatch_uuid=DISPATCH_UUID,
        steps=(
            StepPlan(channel="whatsapp", condition=Condition.READ, expiry_s=600),
            StepPlan(channel="viber_service_msg", condition=Condition.DELIVERED, expiry_s=120),
            StepPlan(channel="sms"),
        ),
        message_uuids=(WHATSAPP_UUID, VIBER_UUID, SMS_UUID),
        final_status_timeout_s=3_600,
    )

    state, _ = report(accept(event), WHATSAPP_UUID, MessageStatus.REJECTED, 7)
    assert state.due_at_ms == at(7 + 120)
    state, _ = report(state, VIBER_UUID, MessageStatus.UNDELIVERABLE, 20)
    assert state.due_at_ms == at(20 + 3_600)  # the last step has no failover of its own


# -- conditions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "status", "signal"),
    [
        (Condition.DELIVERED, MessageStatus.SUBMITTED, Signal.PROGRESS),
        (Condition.DELIVERED, MessageStatus.DELIVERED, Signal.MET),
        (Condition.DELIVERED, MessageStatus.READ, Signal.MET),
        (Condition.DELIVERED, MessageStatus.REJECTED, Signal.FAILED),
        (Condition.DELIVERED, MessageStatus.UNDELIVERABLE, Signal.FAILED),
        (Condition.READ, MessageStatus.SUBMITTED, Signal.PROGRESS),
        (Condition.READ, MessageStatus.DELIVERED, Signal.PROGRESS),
        (Condition.READ, MessageStatus.READ, Signal.MET),
        (Condition.READ, MessageStatus.REJECTED, Signal.FAILED),
        (Condition.READ, MessageStatus.UNDELIVERABLE, Signal.FAILED),
        (None, MessageStatus.SUBMITTED, Signal.PROGRESS),
        (None, MessageStatus.DELIVERED, Signal.MET),  # a last message without failover
        (None, MessageStatus.READ, Signal.MET),
    ],
)
def test_signal_for_classifies_every_status_against_the_step_condition(
    condition: Condition | None, status: MessageStatus, signal: Signal
) -> None:
    plan = StepPlan(channel="whatsapp", condition=condition, expiry_s=600 if condition else None)

    assert signal_for(plan, status) is signal


def test_transition_table_has_a_move_for_every_signal_on_every_step() -> None:
    assert set(TRANSITIONS) == {(signal, place) for signal in Signal for place in Place}
    assert TRANSITIONS[(Signal.EXPIRED, Place.TIMED)] is Move.NEXT
    assert TRANSITIONS[(Signal.EXPIRED, Place.UNTIMED)] is Move.FAIL
    assert TRANSITIONS[(Signal.FAILED, Place.UNTIMED)] is Move.NEXT
    assert TRANSITIONS[(Signal.EXPIRED, Place.LAST)] is Move.FAIL


@pytest.mark.parametrize("status", [MessageStatus.DELIVERED, MessageStatus.READ])
def test_delivered_condition_is_met_by_delivered_or_read_and_completes(
    status: MessageStatus,
) -> None:
    state = accept(whatsapp_then_sms(condition=Condition.DELIVERED))

    state, effects = report(state, WHATSAPP_UUID, status, 30, price="0.01")

    assert sends(effects) == []  # the SMS is never sent
    [final] = final_reports(effects)
    assert final.status is WorkflowStatus.COMPLETED
    assert final.messages == (
        FinalMessage(message_uuid=WHATSAPP_UUID, channel="whatsapp", status=status, price="0.01"),
    )
    assert state.status is WorkflowStatus.COMPLETED


def test_read_condition_is_met_by_read() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)

    state, effects = report(state, WHATSAPP_UUID, MessageStatus.READ, 60)

    assert [report.status for report in final_reports(effects)] == [WorkflowStatus.COMPLETED]
    assert state.status is WorkflowStatus.COMPLETED


def test_delivered_on_a_read_condition_step_waits_for_read_or_expiry() -> None:
    before = accept()

    state, effects = report(before, WHATSAPP_UUID, MessageStatus.DELIVERED, 3)

    assert [type(effect) for effect in effects] == [EmitStatus]
    assert state.is_open
    assert (state.current, state.due_at_ms) == (before.current, before.due_at_ms)


def test_submitted_is_progress_and_waits() -> None:
    before = accept(whatsapp_then_sms(condition=Condition.DELIVERED))

    state, effects = report(before, WHATSAPP_UUID, MessageStatus.SUBMITTED, 1)

    assert [type(effect) for effect in effects] == [EmitStatus]
    assert (state.status, state.current, state.due_at_ms) == (
        WorkflowStatus.IN_PROGRESS,
        0,
        before.due_at_ms,
    )


# -- expiry -------------------------------------------------------------------------------------


def test_expiry_of_a_non_last_step_sends_the_next_message() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)  # never read

    state, effects = fire(state, 600)

    assert effects == (SendMessage(step=1, message_uuid=SMS_UUID),)
    assert state.current == 1
    assert state.due_at_ms == at(600 + FINAL_STATUS_TIMEOUT_S)
    assert state.messages[0].status is MessageStatus.DELIVERED  # keeps what it reached


def test_expiry_of_the_last_step_with_failover_ends_in_error() -> None:
    step = StepPlan(channel="sms", condition=Condition.READ, expiry_s=600)
    state, _ = report(accept(single(step)), SMS_UUID, MessageStatus.DELIVERED, 10, price="0.05")

    state, effects = fire(state, 600)

    assert effects == (
        EmitFinalReport(
            status=WorkflowStatus.ERROR,
            at_ms=at(600),
            messages=(
                FinalMessage(
                    message_uuid=SMS_UUID,
                    channel="sms",
                    status=MessageStatus.DELIVERED,
                    price="0.05",
                ),
            ),
        ),
    )
    assert (state.status, state.due_at_ms, state.ended_at_ms) == (
        WorkflowStatus.ERROR,
        None,
        at(600),
    )


def test_final_status_timeout_of_a_last_message_without_failover_ends_in_error() -> None:
    state = failed_over_to_sms(at_s=1)
    state, _ = report(state, SMS_UUID, MessageStatus.SUBMITTED, 2)

    state, effects = fire(state, 1 + FINAL_STATUS_TIMEOUT_S)

    [final] = final_reports(effects)
    assert final.status is WorkflowStatus.ERROR
    assert [message.status for message in final.messages] == [
        MessageStatus.REJECTED,
        MessageStatus.SUBMITTED,
    ]
    assert state.status is WorkflowStatus.ERROR


# -- the last message ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [MessageStatus.DELIVERED, MessageStatus.READ])
def test_last_message_without_failover_completes_when_delivered(status: MessageStatus) -> None:
    state = failed_over_to_sms()

    state, effects = report(state, SMS_UUID, status, 5, price="0.0333")

    assert sends(effects) == []
    [final] = final_reports(effects)
    assert final.status is WorkflowStatus.COMPLETED
    assert state.status is WorkflowStatus.COMPLETED
    assert (state.due_at_ms, state.ended_at_ms) == (None, at(5))


def test_last_message_with_its_own_read_failover_is_not_completed_by_delivered() -> None:
    step = StepPlan(channel="whatsapp", condition=Condition.READ, expiry_s=600)
    before = accept(single(step))

    state, effects = report(before, SMS_UUID, MessageStatus.DELIVERED, 10)

    assert final_reports(effects) == []
    assert state.is_open
    assert state.due_at_ms == before.due_at_ms


def test_last_message_with_its_own_read_failover_completes_on_read() -> None:
    step = StepPlan(channel="whatsapp", condition=Condition.READ, expiry_s=600)
    state, _ = report(accept(single(step)), SMS_UUID, MessageStatus.DELIVERED, 10)

    state, effects = report(state, SMS_UUID, MessageStatus.READ, 100)

    assert [final.status for final in final_reports(effects)] == [WorkflowStatus.COMPLETED]


@pytest.mark.parametrize("failure", [MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE])
def test_last_message_failing_ends_the_workflow_in_error(failure: MessageStatus) -> None:
    state = failed_over_to_sms()
    state, _ = report(state, SMS_UUID, MessageStatus.SUBMITTED, 2)

    state, effects = report(state, SMS_UUID, failure, 9, error=REJECTED_BY_PROVIDER)

    assert sends(effects) == []
    [final] = final_reports(effects)
    assert final.status is WorkflowStatus.ERROR
    assert [message.status for message in final.messages] == [MessageStatus.REJECTED, failure]
    assert (state.status, state.due_at_ms, state.ended_at_ms) == (
        WorkflowStatus.ERROR,
        None,
        at(9),
    )


# -- timers -------------------------------------------------------------------------------------


def test_timer_fired_before_the_deadline_changes_nothing() -> None:
    before = accept()

    state, effects = fire(before, 599.999)

    assert (state, effects) == (before, ())


def test_timer_fired_exactly_at_the_deadline_expires_the_step() -> None:
    state, effects = fire(accept(), 600)

    assert sends(effects) == [SendMessage(step=1, message_uuid=SMS_UUID)]
    assert state.current == 1


def test_stale_timer_for_a_deadline_moved_by_a_failover_changes_nothing() -> None:
    before = failed_over_to_sms(at_s=300)  # the WhatsApp deadline was at(600)

    state, effects = fire(before, 600)

    assert (state, effects) == (before, ())


def test_timer_fired_on_an_ended_workflow_changes_nothing() -> None:
    before = completed_by_sms()

    state, effects = fire(before, 10 * FINAL_STATUS_TIMEOUT_S)

    assert (state, effects) == (before, ())


# -- giving up on a provider that never answered ------------------------------------------------


def test_step_whose_provider_never_answered_is_recorded_rejected_with_error_1400() -> None:
    state, effects = fire(accept(), 600)

    assert effects == (
        CancelSend(message_uuid=WHATSAPP_UUID),  # sent that late, it would only confuse
        EmitStatus(
            step=0,
            message_uuid=WHATSAPP_UUID,
            status=MessageStatus.REJECTED,
            at_ms=at(600),
            error=ABANDONED,
            price=None,
        ),
        SendMessage(step=1, message_uuid=SMS_UUID),
    )
    assert ABANDONED.code == 1400
    abandoned = state.messages[0]
    assert (abandoned.status, abandoned.error) == (MessageStatus.REJECTED, ABANDONED)


def test_workflow_whose_providers_never_answer_ends_in_error_with_every_message_rejected() -> None:
    state, _ = fire(accept(), 600)

    state, effects = fire(state, 600 + FINAL_STATUS_TIMEOUT_S)

    [final] = final_reports(effects)
    assert final.status is WorkflowStatus.ERROR
    assert [(message.message_uuid, message.status) for message in final.messages] == [
        (WHATSAPP_UUID, MessageStatus.REJECTED),
        (SMS_UUID, MessageStatus.REJECTED),
    ]
    assert [status.error for status in emitted(effects)] == [ABANDONED]
    assert CancelSend(message_uuid=SMS_UUID) in effects


def test_step_that_was_submitted_is_not_given_up_at_expiry() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.SUBMITTED, 1)

    state, effects = fire(state, 600)

    assert effects == (SendMessage(step=1, message_uuid=SMS_UUID),)  # no CancelSend either
    assert state.messages[0].status is MessageStatus.SUBMITTED
    assert state.messages[0].error is None


# -- cancelling ---------------------------------------------------------------------------------


def test_cancel_of_a_submitted_step_ends_the_workflow_cancelled_and_sends_nothing_more() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.SUBMITTED, 1, price="0.0140")

    state, effects = cancel(state, 30)

    assert effects == (
        EmitFinalReport(
            status=WorkflowStatus.CANCELLED,
            at_ms=at(30),
            messages=(
                FinalMessage(
                    message_uuid=WHATSAPP_UUID,
                    channel="whatsapp",
                    status=MessageStatus.SUBMITTED,
                    price="0.0140",
                ),
            ),
        ),
    )
    assert (state.status, state.due_at_ms, state.ended_at_ms) == (
        WorkflowStatus.CANCELLED,
        None,  # the timer is cleared
        at(30),
    )
    assert not state.is_open


def test_cancel_before_the_provider_answered_cancels_the_send_and_rejects_with_1430() -> None:
    _state, effects = cancel(accept(), 2)

    assert effects[:2] == (
        CancelSend(message_uuid=WHATSAPP_UUID),
        EmitStatus(
            step=0,
            message_uuid=WHATSAPP_UUID,
            status=MessageStatus.REJECTED,
            at_ms=at(2),
            error=CANCELLED_UNSENT,
            price=None,
        ),
    )
    [final] = final_reports(effects)
    assert final.status is WorkflowStatus.CANCELLED
    assert [message.status for message in final.messages] == [MessageStatus.REJECTED]
    assert CANCELLED_UNSENT.code == 1430
    assert sends(effects) == []


def test_cancel_on_the_last_step_ends_the_workflow_cancelled() -> None:
    state, _ = report(failed_over_to_sms(at_s=1), SMS_UUID, MessageStatus.SUBMITTED, 2)

    state, effects = cancel(state, 3)

    assert [final.status for final in final_reports(effects)] == [WorkflowStatus.CANCELLED]
    assert [message.message_uuid for message in state.messages] == [WHATSAPP_UUID, SMS_UUID]


@pytest.mark.parametrize(
    "ended", [completed_by_sms, lambda: cancel(accept(), 1)[0]], ids=["completed", "cancelled"]
)
def test_cancel_of_an_ended_workflow_raises_invalid_transition_and_changes_nothing(
    ended: Callable[[], WorkflowState],
) -> None:
    state = ended()
    snapshot = copy.deepcopy(state)

    with pytest.raises(InvalidTransition, match="has ended"):
        cancel(state, 100)
    assert state == snapshot


def test_cancel_after_the_deadline_fails_over_first_then_cancels_the_unsent_next_step() -> None:
    """The timer loop had not got to the deadline yet: it came first, as for a status."""
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)

    state, effects = cancel(state, 601)  # due at(600)

    assert effects == (
        SendMessage(step=1, message_uuid=SMS_UUID),
        CancelSend(message_uuid=SMS_UUID),  # asked and cancelled at once: never sent
        EmitStatus(
            step=1,
            message_uuid=SMS_UUID,
            status=MessageStatus.REJECTED,
            at_ms=at(601),
            error=CANCELLED_UNSENT,
            price=None,
        ),
        EmitFinalReport(
            status=WorkflowStatus.CANCELLED,
            at_ms=at(601),
            messages=(
                FinalMessage(
                    message_uuid=WHATSAPP_UUID,
                    channel="whatsapp",
                    status=MessageStatus.DELIVERED,
                    price=None,
                ),
                FinalMessage(
                    message_uuid=SMS_UUID,
                    channel="sms",
                    status=MessageStatus.REJECTED,
                    price=None,
                ),
            ),
        ),
    )
    assert state.status is WorkflowStatus.CANCELLED


def test_cancel_after_the_last_deadline_finds_the_workflow_ended_in_error() -> None:
    state, _ = report(failed_over_to_sms(at_s=1), SMS_UUID, MessageStatus.SUBMITTED, 2)

    state, effects = cancel(state, 1 + FINAL_STATUS_TIMEOUT_S)

    assert [final.status for final in final_reports(effects)] == [WorkflowStatus.ERROR]
    assert state.status is WorkflowStatus.ERROR


def test_cancel_and_the_deadline_have_one_outcome_in_either_order() -> None:
    """Racing, whichever the store applies first: the same statuses, one final report."""
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)

    timer_first, timer_effects = fire(state, 600)
    timer_first, cancel_effects = cancel(timer_first, 601)
    cancel_first, cancel_first_effects = cancel(state, 601)
    cancel_first, stale = fire(cancel_first, 600)

    assert stale == ()
    assert len(final_reports(timer_effects + cancel_effects)) == 1
    assert len(final_reports(cancel_first_effects)) == 1
    for ended in (timer_first, cancel_first):
        assert ended.status is WorkflowStatus.CANCELLED
        assert [(m.message_uuid, m.status) for m in ended.messages] == [
            (WHATSAPP_UUID, MessageStatus.DELIVERED),
            (SMS_UUID, MessageStatus.REJECTED),
        ]


def test_status_of_an_in_flight_send_after_a_cancel_is_forwarded_and_counted_only() -> None:
    before, _ = cancel(accept(), 2)  # the send was already on its way to the provider

    state, effects = report(before, WHATSAPP_UUID, MessageStatus.SUBMITTED, 3, price="0.0140")
    state, more = report(state, WHATSAPP_UUID, MessageStatus.DELIVERED, 4)

    assert [(e.status, e.price) for e in emitted(effects + more)] == [
        (MessageStatus.SUBMITTED, "0.0140"),
        (MessageStatus.DELIVERED, "0.0140"),
    ]
    assert final_reports(effects + more) == []
    assert (state.status, state.ended_at_ms) == (WorkflowStatus.CANCELLED, before.ended_at_ms)
    assert state.messages[0].price == "0.0140"


# -- late statuses ------------------------------------------------------------------------------


def test_read_after_failover_is_forwarded_but_does_not_change_outcome() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)
    before, _ = fire(state, 600)  # not read in time: the SMS went out

    state, effects = report(before, WHATSAPP_UUID, MessageStatus.READ, 700, price="0.02")

    assert effects == (
        EmitStatus(
            step=0,
            message_uuid=WHATSAPP_UUID,
            status=MessageStatus.READ,
            at_ms=at(700),
            error=None,
            price="0.02",
        ),
    )
    assert (state.status, state.current, state.due_at_ms) == (
        before.status,
        before.current,
        before.due_at_ms,
    )
    assert state.messages[0].price == "0.02"  # counted all the same


def test_delivered_for_a_message_already_failed_over_is_forwarded_and_priced_only() -> None:
    before = failed_over_to_sms(at_s=1)

    state, effects = report(before, WHATSAPP_UUID, MessageStatus.DELIVERED, 50, price="0.01")

    assert [(e.message_uuid, e.status) for e in emitted(effects)] == [
        (WHATSAPP_UUID, MessageStatus.DELIVERED)
    ]
    assert len(effects) == 1  # no send, no final report
    assert (state.status, state.current, state.due_at_ms) == (
        before.status,
        before.current,
        before.due_at_ms,
    )
    assert state.messages[0].price == "0.01"


def test_a_callback_before_the_sends_answer_ends_the_workflow_with_what_was_known() -> None:
    """A provider's `delivered` can come before its answer to the send. It ends the workflow
    (the last message delivered), and the final report has no price or provider for it yet:
    they come with the answer, a late `submitted`, forwarded and counted, no second report."""
    state = failed_over_to_sms(at_s=1)

    state, effects = report(state, SMS_UUID, MessageStatus.DELIVERED, 2)

    [final] = final_reports(effects)
    assert final.status is WorkflowStatus.COMPLETED
    sms = final.messages[1]
    assert (sms.status, sms.price, sms.provider) == (MessageStatus.DELIVERED, None, None)

    answer = StatusReported(
        message_uuid=SMS_UUID, status=MessageStatus.SUBMITTED, at_ms=at(2.1),
        price="0.0333", provider="sandbox",
    )  # fmt: skip
    state, effects = decide(state, answer, at(2.1))

    assert final_reports(effects) == []
    assert [(e.message_uuid, e.status) for e in emitted(effects)] == [
        (SMS_UUID, MessageStatus.SUBMITTED)
    ]
    message = state.messages[1]
    assert (message.price, message.provider) == ("0.0333", "sandbox")
    assert state.status is WorkflowStatus.COMPLETED


@pytest.mark.parametrize(
    ("message_uuid", "status"),
    [
        (SMS_UUID, MessageStatus.READ),
        (SMS_UUID, MessageStatus.UNDELIVERABLE),  # a late failure never turns completed into error
        (WHATSAPP_UUID, MessageStatus.DELIVERED),
    ],
)
def test_status_after_the_final_report_is_forwarded_and_counted_without_a_second_report(
    message_uuid: str, status: MessageStatus
) -> None:
    before = completed_by_sms()

    state, effects = report(before, message_uuid, status, 900, price="0.04")

    assert [(e.message_uuid, e.status, e.price) for e in effects if isinstance(e, EmitStatus)] == [
        (message_uuid, status, "0.04")
    ]
    assert len(effects) == 1
    assert (state.status, state.current, state.due_at_ms, state.ended_at_ms) == (
        WorkflowStatus.COMPLETED,
        before.current,
        None,
        before.ended_at_ms,
    )
    assert state.message(message_uuid).price == "0.04"  # type: ignore[union-attr]


# -- repeats and strangers ----------------------------------------------------------------------


def test_exact_repeat_of_a_status_produces_no_effects() -> None:
    first, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)

    state, effects = report(first, WHATSAPP_UUID, MessageStatus.DELIVERED, 4)

    assert (state, effects) == (first, ())


def test_exact_repeat_of_a_failure_does_not_fail_over_twice() -> None:
    first = failed_over_to_sms(at_s=1)

    state, effects = report(first, WHATSAPP_UUID, MessageStatus.REJECTED, 2)

    assert (state, effects) == (first, ())


def test_exact_repeat_after_the_final_report_produces_no_effects() -> None:
    first = completed_by_sms()

    state, effects = report(first, SMS_UUID, MessageStatus.DELIVERED, 60)

    assert (state, effects) == (first, ())


def test_repeat_with_a_new_price_is_recorded_and_forwarded() -> None:
    # A repeat is dropped only when it brings nothing new: a provider re-sending a status to
    # correct its price is heard.
    first, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3, price="0.01")

    state, effects = report(first, WHATSAPP_UUID, MessageStatus.DELIVERED, 4, price="0.02")

    assert state.messages[0].price == "0.02"
    assert [(e.status, e.price) for e in emitted(effects)] == [(MessageStatus.DELIVERED, "0.02")]
    assert state.status is first.status
    assert state.due_at_ms == first.due_at_ms


def test_repeat_that_brings_nothing_new_is_dropped() -> None:
    first, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3, price="0.01")

    state, effects = report(first, WHATSAPP_UUID, MessageStatus.DELIVERED, 4, price="0.01")

    assert (state, effects) == (first, ())


def test_same_status_for_another_message_is_not_a_repeat() -> None:
    state = failed_over_to_sms()
    state, _ = report(state, SMS_UUID, MessageStatus.SUBMITTED, 2)

    state, effects = report(state, WHATSAPP_UUID, MessageStatus.SUBMITTED, 3)

    assert [(e.message_uuid, e.status) for e in emitted(effects)] == [
        (WHATSAPP_UUID, MessageStatus.SUBMITTED)
    ]


@pytest.mark.parametrize("message_uuid", [SMS_UUID, UNKNOWN_UUID])
def test_status_for_a_message_not_sent_yet_or_unknown_is_ignored(message_uuid: str) -> None:
    before = accept()  # the SMS's uuid is chosen, but the SMS is not sent

    for status in MessageStatus:
        state, effects = report(before, message_uuid, status, 5, price="0.5")
        assert (state, effects) == (before, ())


def test_status_for_a_later_step_is_ignored_then_heard_once_that_step_is_sent() -> None:
    state, _ = report(accept(), SMS_UUID, MessageStatus.DELIVERED, 1)  # ignored: not sent
    state = failed_over_to_sms(at_s=2)

    state, effects = report(state, SMS_UUID, MessageStatus.DELIVERED, 3)

    assert [final.status for final in final_reports(effects)] == [WorkflowStatus.COMPLETED]


# -- prices and the final report ----------------------------------------------------------------


def test_message_price_is_its_latest_reported_price() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.SUBMITTED, 1, price="0.01")
    state, effects = report(state, WHATSAPP_UUID, MessageStatus.DELIVERED, 2, price="0.015")

    assert state.messages[0].price == "0.015"
    assert [status.price for status in emitted(effects)] == ["0.015"]


def test_status_without_a_price_keeps_the_price_already_reported() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.SUBMITTED, 1, price="0.01")
    state, effects = report(state, WHATSAPP_UUID, MessageStatus.DELIVERED, 2)

    assert state.messages[0].price == "0.01"
    assert [status.price for status in emitted(effects)] == ["0.01"]


def test_final_report_lists_every_message_sent_in_order_with_channel_status_and_price() -> None:
    event = WorkflowAccepted(
        dispatch_uuid=DISPATCH_UUID,
        steps=(
            StepPlan(channel="viber_service_msg", condition=Condition.DELIVERED, expiry_s=60),
            StepPlan(channel="whatsapp", condition=Condition.READ, expiry_s=600),
            StepPlan(channel="sms"),
        ),
        message_uuids=(VIBER_UUID, WHATSAPP_UUID, SMS_UUID),
        final_status_timeout_s=3_600,
    )
    state = accept(event)
    state, _ = report(state, VIBER_UUID, MessageStatus.UNDELIVERABLE, 5, price="0.001")
    state, _ = report(state, WHATSAPP_UUID, MessageStatus.SUBMITTED, 6, price="0.01")
    state, _ = report(state, WHATSAPP_UUID, MessageStatus.DELIVERED, 7)
    state, _ = fire(state, 605)
    state, effects = report(state, SMS_UUID, MessageStatus.DELIVERED, 610, price="0.0333")

    assert final_reports(effects) == [
        EmitFinalReport(
            status=WorkflowStatus.COMPLETED,
            at_ms=at(610),
            messages=(
                FinalMessage(
                    message_uuid=VIBER_UUID,
                    channel="viber_service_msg",
                    status=MessageStatus.UNDELIVERABLE,
                    price="0.001",
                ),
                FinalMessage(
                    message_uuid=WHATSAPP_UUID,
                    channel="whatsapp",
                    status=MessageStatus.DELIVERED,
                    price="0.01",
                ),
                FinalMessage(
                    message_uuid=SMS_UUID,
                    channel="sms",
                    status=MessageStatus.DELIVERED,
                    price="0.0333",
                ),
            ),
        )
    ]


def test_final_report_shows_the_furthest_status_a_message_reached() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 2)
    state, _ = report(state, WHATSAPP_UUID, MessageStatus.SUBMITTED, 3)  # out of order
    state, effects = report(state, WHATSAPP_UUID, MessageStatus.READ, 4)

    [final] = final_reports(effects)
    assert [message.status for message in final.messages] == [MessageStatus.READ]


# -- refused events -----------------------------------------------------------------------------


def test_workflow_accepted_on_an_existing_state_raises_invalid_transition() -> None:
    state = accept()
    snapshot = copy.deepcopy(state)

    with pytest.raises(InvalidTransition, match="already accepted"):
        decide(state, whatsapp_then_sms(), at(1))
    assert state == snapshot


@pytest.mark.parametrize(
    "event",
    [
        StatusReported(message_uuid=WHATSAPP_UUID, status=MessageStatus.DELIVERED, at_ms=at(1)),
        TimerFired(),
    ],
)
def test_any_other_event_without_a_workflow_raises_invalid_transition(event: Event) -> None:
    with pytest.raises(InvalidTransition, match="does not exist"):
        decide(None, event, at(1))


def test_decide_never_mutates_its_input() -> None:
    state = accept()
    events: list[tuple[Event, float]] = [
        (
            StatusReported(message_uuid=WHATSAPP_UUID, status=MessageStatus.DELIVERED, at_ms=at(1)),
            1,
        ),
        (TimerFired(), 600),
        (StatusReported(message_uuid=SMS_UUID, status=MessageStatus.DELIVERED, at_ms=at(601)), 601),
        (StatusReported(message_uuid=WHATSAPP_UUID, status=MessageStatus.READ, at_ms=at(602)), 602),
        (TimerFired(), 10_000_000),
    ]
    for event, at_s in events:
        state_before, event_before = copy.deepcopy(state), copy.deepcopy(event)
        next_state, _ = decide(state, event, at(at_s))
        assert (state, event) == (state_before, event_before)
        state = next_state
    assert state.status is WorkflowStatus.COMPLETED


# -- the accepted event validates itself --------------------------------------------------------


def test_workflow_accepted_without_steps_raises_value_error() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        WorkflowAccepted(
            dispatch_uuid=DISPATCH_UUID, steps=(), message_uuids=(), final_status_timeout_s=60
        )


@pytest.mark.parametrize("uuids", [(WHATSAPP_UUID,), (WHATSAPP_UUID, SMS_UUID, VIBER_UUID)])
def test_workflow_accepted_with_a_uuid_count_mismatch_raises_value_error(
    uuids: tuple[str, ...],
) -> None:
    with pytest.raises(ValueError, match="one message uuid per step"):
        WorkflowAccepted(
            dispatch_uuid=DISPATCH_UUID,
            steps=(
                StepPlan(channel="whatsapp", condition=Condition.READ, expiry_s=600),
                StepPlan(channel="sms"),
            ),
            message_uuids=uuids,
            final_status_timeout_s=60,
        )


@pytest.mark.parametrize(
    "first",
    [
        StepPlan(channel="whatsapp", condition=Condition.READ),
        StepPlan(channel="whatsapp", expiry_s=600),
    ],
)
def test_workflow_accepted_with_a_condition_without_expiry_or_back_raises_value_error(
    first: StepPlan,
) -> None:
    with pytest.raises(ValueError, match="condition and expiry come together"):
        WorkflowAccepted(
            dispatch_uuid=DISPATCH_UUID,
            steps=(first, StepPlan(channel="sms")),
            message_uuids=(WHATSAPP_UUID, SMS_UUID),
            final_status_timeout_s=60,
        )


@pytest.mark.parametrize(
    "last",
    [StepPlan(channel="sms"), StepPlan(channel="sms", condition=Condition.READ, expiry_s=60)],
)
def test_workflow_accepted_allows_a_last_step_with_or_without_failover(last: StepPlan) -> None:
    event = WorkflowAccepted(
        dispatch_uuid=DISPATCH_UUID,
        steps=(StepPlan(channel="whatsapp", condition=Condition.READ, expiry_s=600), last),
        message_uuids=(WHATSAPP_UUID, SMS_UUID),
        final_status_timeout_s=60,
    )

    assert event.steps[-1] == last


# -- behaviour we believe is wrong (left failing on purpose) ------------------------------------


def test_workflow_accepted_with_duplicate_message_uuids_raises_value_error() -> None:
    with pytest.raises(ValueError, match="uuid"):
        WorkflowAccepted(
            dispatch_uuid=DISPATCH_UUID,
            steps=(
                StepPlan(channel="whatsapp", condition=Condition.READ, expiry_s=600),
                StepPlan(channel="sms"),
            ),
            message_uuids=(SMS_UUID, SMS_UUID),
            final_status_timeout_s=60,
        )


def test_read_arriving_after_the_deadline_but_before_the_timer_does_not_meet_the_step() -> None:
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)

    state, effects = report(state, WHATSAPP_UUID, MessageStatus.READ, 605)  # due at(600)

    assert sends(effects) == [SendMessage(step=1, message_uuid=SMS_UUID)]
    assert state.is_open


def test_provider_rejection_after_the_engine_gave_the_message_up_is_forwarded() -> None:
    state, _ = fire(accept(), 600)  # WhatsApp never answered: given up with 1400
    provider_error = MessageError(code=1300, reason="Not part of the provider network")

    state, effects = report(
        state, WHATSAPP_UUID, MessageStatus.REJECTED, 700, price="0.001", error=provider_error
    )

    assert [(e.status, e.error, e.price) for e in emitted(effects)] == [
        (MessageStatus.REJECTED, provider_error, "0.001")
    ]
    assert state.messages[0].price == "0.001"


def test_read_that_happened_before_the_deadline_counts_even_if_applied_after_it() -> None:
    """A busy timer loop or a slow provider callback must not turn an on-time read into a
    failover: what counts is when the status happened."""
    state, _ = report(accept(), WHATSAPP_UUID, MessageStatus.DELIVERED, 3)

    state, effects = decide(
        state,
        StatusReported(message_uuid=WHATSAPP_UUID, status=MessageStatus.READ, at_ms=at(599)),
        at(601),  # applied after the deadline at(600)
    )

    assert sends(effects) == []
    assert state.status is WorkflowStatus.COMPLETED


# -- untimed steps: the Messages API v1's failover list -------------------------------------


def v1_whatsapp_then_sms(final_status_timeout_s: int = FINAL_STATUS_TIMEOUT_S) -> WorkflowAccepted:
    """`POST /v1/messages` with a `failover` list: each message moves on when rejected only."""
    return WorkflowAccepted(
        dispatch_uuid=DISPATCH_UUID,
        steps=(StepPlan(channel="whatsapp"), StepPlan(channel="sms")),
        message_uuids=(WHATSAPP_UUID, SMS_UUID),
        final_status_timeout_s=final_status_timeout_s,
    )


@pytest.mark.parametrize("failure", [MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE])
def test_an_untimed_step_fails_over_when_its_message_fails(failure: MessageStatus) -> None:
    state = accept(v1_whatsapp_then_sms())

    state, effects = report(state, WHATSAPP_UUID, failure, 2, error=REJECTED_BY_PROVIDER)

    assert [send.message_uuid for send in sends(effects)] == [SMS_UUID]
    assert state.current == 1
    assert state.is_open


@pytest.mark.parametrize("status", [MessageStatus.DELIVERED, MessageStatus.READ])
def test_an_untimed_step_delivered_completes_without_sending_the_next(
    status: MessageStatus,
) -> None:
    state = accept(v1_whatsapp_then_sms())

    state, effects = report(state, WHATSAPP_UUID, status, 2)

    assert sends(effects) == []
    assert state.status is WorkflowStatus.COMPLETED
    (final,) = final_reports(effects)
    assert [message.message_uuid for message in final.messages] == [WHATSAPP_UUID]


def test_an_untimed_step_only_submitted_waits_without_a_failover() -> None:
    state = accept(v1_whatsapp_then_sms(final_status_timeout_s=3600))

    state, effects = report(state, WHATSAPP_UUID, MessageStatus.SUBMITTED, 1)
    state, fired = fire(state, 1800)  # an early firing changes nothing

    assert sends(effects + fired) == []
    assert state.is_open
    assert state.due_at_ms == at(3600)


def test_an_untimed_step_accepted_but_never_final_ends_in_error_at_the_timeout() -> None:
    # The message may well have arrived (most SMS networks never report delivery): sending
    # the next one could only duplicate it, so the workflow ends there, as Vonage's would.
    state = accept(v1_whatsapp_then_sms(final_status_timeout_s=3600))
    state, _ = report(state, WHATSAPP_UUID, MessageStatus.SUBMITTED, 1)

    state, effects = fire(state, 3600)

    assert sends(effects) == []
    assert state.status is WorkflowStatus.ERROR
    (final,) = final_reports(effects)
    assert [m.status for m in final.messages] == [MessageStatus.SUBMITTED]


def test_an_untimed_step_whose_provider_never_answered_moves_on_at_the_timeout() -> None:
    # Never accepted by a provider means never sent: a failure of the step, not an expiry.
    state = accept(v1_whatsapp_then_sms(final_status_timeout_s=3600))

    state, effects = fire(state, 3600)

    assert [send.message_uuid for send in sends(effects)] == [SMS_UUID]
    assert [(e.message_uuid, e.status, e.error) for e in emitted(effects)] == [
        (WHATSAPP_UUID, MessageStatus.REJECTED, ABANDONED)
    ]
    assert state.current == 1
    assert state.is_open


def test_a_timed_step_after_an_untimed_one_keeps_its_own_deadline() -> None:
    # v1 with OpenDispatch's extension on the second message: WhatsApp rejected, then SMS
    # must be delivered within 60 s or the Viber message goes.
    event = WorkflowAccepted(
        dispatch_uuid=DISPATCH_UUID,
        steps=(
            StepPlan(channel="whatsapp"),
            StepPlan(channel="sms", condition=Condition.DELIVERED, expiry_s=60),
            StepPlan(channel="viber_service_msg"),
        ),
        message_uuids=(WHATSAPP_UUID, SMS_UUID, VIBER_UUID),
        final_status_timeout_s=FINAL_STATUS_TIMEOUT_S,
    )
    state = accept(event)
    state, _ = report(state, WHATSAPP_UUID, MessageStatus.REJECTED, 2, error=REJECTED_BY_PROVIDER)
    state, _ = report(state, SMS_UUID, MessageStatus.SUBMITTED, 3)

    state, effects = fire(state, 62)

    assert [send.message_uuid for send in sends(effects)] == [VIBER_UUID]
    assert state.current == 2
    assert state.due_at_ms == at(62 + FINAL_STATUS_TIMEOUT_S)
