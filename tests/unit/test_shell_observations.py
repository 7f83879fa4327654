"""What the shell tells the metrics about a transition: when a failover was triggered (kept as
the next step's send's `created_at_ms`), the statuses it applied, how long the workflow took.

Pure: the shell runs on records built here, at chosen times."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

from opendispatch.engine.model import MessageStatus, TimerFired, WorkflowStatus
from opendispatch.runtime.shell import Shell, decode_state
from opendispatch.store.records import (
    InboxEvent,
    LoadedWorkflow,
    NewWorkflow,
    Transition,
    WorkflowRecord,
)
from tests.support import step

ACCEPTED_AT = 1_000
READ_60 = {"expiry_time": 60, "condition_status": "read"}


def accepted(*workflow: dict[str, object]) -> tuple[Shell, LoadedWorkflow, Transition]:
    counter = itertools.count()
    shell = Shell(final_status_timeout_s=86_400, new_id=lambda: f"id-{next(counter)}")
    request_json = json.dumps({"template": "failover", "workflow": list(workflow)})
    new = NewWorkflow(
        dispatch_uuid="w-1",
        application_id="app",
        template="failover",
        request_json=request_json,
        created_at_ms=ACCEPTED_AT,
        channels=tuple(message["to"]["type"] for message in workflow),
    )
    first = shell.accept(new, status_url="http://r/s", final_report_url=None, now_ms=ACCEPTED_AT)
    loaded = LoadedWorkflow(
        record=WorkflowRecord(
            dispatch_uuid="w-1",
            application_id="app",
            template="failover",
            status=WorkflowStatus.IN_PROGRESS,
            request_json=request_json,
            created_at_ms=ACCEPTED_AT,
            updated_at_ms=ACCEPTED_AT,
        ),
        state_json=first.state_json,
        api_key="k",
        status_url="http://r/s",
        final_report_url=None,
    )
    return shell, loaded, first


def first_message(loaded: LoadedWorkflow) -> str:
    assert loaded.state_json is not None
    return decode_state(loaded.state_json).message_uuids[0]


def test_a_failover_on_a_callback_is_timed_from_its_arrival_not_its_application():
    shell, loaded, first = accepted(step("whatsapp", "447700900001", READ_60), step("sms", "1"))
    assert first.sends[0].created_at_ms is None  # the first step: the transition's own time
    rejected = InboxEvent(
        id=7,
        message_uuid=first_message(loaded),
        status=MessageStatus.REJECTED,
        due_at_ms=4_200,  # when it arrived
        occurred_at_ms=4_000,  # when the provider says it happened
    )
    transition = shell.transition_for(now_ms=5_000)(replace(loaded, inbox=(rejected,)))
    assert transition is not None
    (sms,) = transition.sends
    assert (sms.step, sms.created_at_ms) == (1, 4_200)
    assert transition.applied_statuses == (("whatsapp", MessageStatus.REJECTED),)
    assert transition.ended_after_ms is None


def test_a_failover_on_a_deadline_is_timed_from_the_deadline_however_late_it_is_acted_on():
    shell, loaded, _ = accepted(step("whatsapp", "447700900003", READ_60), step("sms", "1"))
    deadline = ACCEPTED_AT + 60_000
    transition = shell.transition_for(TimerFired(), now_ms=deadline + 3_000)(loaded)
    assert transition is not None
    (sms,) = transition.sends
    assert (sms.step, sms.created_at_ms) == (1, deadline)


def test_the_transition_that_ends_a_workflow_says_how_long_it_took():
    shell, loaded, first = accepted(step("sms", "447700900009"))
    assert first.applied_statuses == ()
    delivered = InboxEvent(
        id=1, message_uuid=first_message(loaded), status=MessageStatus.DELIVERED, due_at_ms=2_500
    )
    transition = shell.transition_for(now_ms=3_000)(replace(loaded, inbox=(delivered,)))
    assert transition is not None
    assert transition.status is WorkflowStatus.COMPLETED
    assert transition.ended_after_ms == 3_000 - ACCEPTED_AT
    assert transition.applied_statuses == (("sms", MessageStatus.DELIVERED),)
