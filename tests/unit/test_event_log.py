"""The event log's lines: why each failover happened, told from what the engine decided, and
how a line is written in each format (one line, never raw control characters)."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from opendispatch import event_log
from opendispatch.engine.model import (
    MessageError,
    MessageStatus,
    StatusReported,
    TimerFired,
)
from opendispatch.logs import EventKind, EventLine, JsonFormatter, TextFormatter
from opendispatch.runtime.shell import Shell, decode_state
from opendispatch.store.records import (
    LoadedWorkflow,
    NewWorkflow,
    Transition,
    WorkflowRecord,
)

DISPATCH_UUID = "01937a2c-5b0e-7d3a-9c1e-6f2b8a4d0e51"
APPLICATION_ID = "5f0c1d2e-0000-4000-8000-000000000001"
ACCEPTED_AT_MS = 1_577_887_200_000
WORKFLOW = json.dumps(
    {
        "template": "failover",
        "workflow": [
            {
                "to": {"type": "whatsapp", "number": "447700900003"},
                "from": {"type": "whatsapp", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "code 1"}},
                "failover": {"expiry_time": 600, "condition_status": "read"},
            },
            {
                "to": {"type": "sms", "number": "447700900003"},
                "from": {"type": "sms", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "code 1"}},
            },
        ],
    }
)
EXPIRY_MS = ACCEPTED_AT_MS + 600_000


class Workflow:
    """A workflow taken through the real shell and engine, one event at a time, as the
    runtime does, minus the database."""

    def __init__(self) -> None:
        self.shell = Shell(final_status_timeout_s=86_400)
        self.transition = self.shell.accept(
            NewWorkflow(
                dispatch_uuid=DISPATCH_UUID,
                application_id=APPLICATION_ID,
                template="failover",
                request_json=WORKFLOW,
                created_at_ms=ACCEPTED_AT_MS,
                channels=("whatsapp", "sms"),
            ),
            status_url="https://hooks.example.com/status",
            final_report_url=None,
            now_ms=ACCEPTED_AT_MS,
        )
        self.message_uuids = decode_state(self.transition.state_json).message_uuids

    def apply(self, *events: StatusReported | TimerFired, now_ms: int) -> Transition:
        loaded = LoadedWorkflow(
            record=WorkflowRecord(
                dispatch_uuid=DISPATCH_UUID,
                application_id=APPLICATION_ID,
                template="failover",
                status=self.transition.status,
                request_json=WORKFLOW,
                created_at_ms=ACCEPTED_AT_MS,
                updated_at_ms=ACCEPTED_AT_MS,
            ),
            state_json=self.transition.state_json,
            api_key="a1b2c3d4e5f60718",
            status_url="https://hooks.example.com/status",
            final_report_url=None,
        )
        transition = self.shell.transition_for(*events, now_ms=now_ms)(loaded)
        assert transition is not None
        self.transition = transition
        return transition

    def status(
        self, step: int, status: MessageStatus, at_ms: int, error: MessageError | None = None
    ) -> StatusReported:
        return StatusReported(
            message_uuid=self.message_uuids[step], status=status, at_ms=at_ms, error=error
        )


def logged(caplog: pytest.LogCaptureFixture, transition: Transition) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="opendispatch.events"):
        event_log.transition_committed(transition)
    return [record.getMessage() for record in caplog.records]


FAILOVER = f"failover dispatch_uuid={DISPATCH_UUID} application_id={APPLICATION_ID} "


def test_a_step_rejected_fails_over_because_rejected(caplog: pytest.LogCaptureFixture) -> None:
    workflow = Workflow()
    refusal = MessageError(code=1300, reason="Not part of the provider network")
    at_ms = ACCEPTED_AT_MS + 5
    transition = workflow.apply(
        workflow.status(0, MessageStatus.REJECTED, at_ms, refusal), now_ms=at_ms
    )
    assert logged(caplog, transition) == [FAILOVER + "from_step=0 to_step=1 reason=rejected"]


def test_a_step_undeliverable_fails_over_because_undeliverable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workflow = Workflow()
    submitted_at_ms = ACCEPTED_AT_MS + 5
    workflow.apply(
        workflow.status(0, MessageStatus.SUBMITTED, submitted_at_ms), now_ms=submitted_at_ms
    )
    failure = MessageError(code=1330, reason="Undeliverable")
    at_ms = ACCEPTED_AT_MS + 1000
    transition = workflow.apply(
        workflow.status(0, MessageStatus.UNDELIVERABLE, at_ms, failure), now_ms=at_ms
    )
    assert logged(caplog, transition) == [FAILOVER + "from_step=0 to_step=1 reason=undeliverable"]


def test_a_step_delivered_but_not_read_in_time_fails_over_because_of_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workflow = Workflow()
    workflow.apply(
        workflow.status(0, MessageStatus.SUBMITTED, ACCEPTED_AT_MS + 5),
        workflow.status(0, MessageStatus.DELIVERED, ACCEPTED_AT_MS + 900),
        now_ms=ACCEPTED_AT_MS + 900,
    )
    transition = workflow.apply(TimerFired(), now_ms=EXPIRY_MS)
    assert logged(caplog, transition) == [FAILOVER + "from_step=0 to_step=1 reason=deadline"]


def test_a_send_never_answered_by_its_deadline_is_the_deadline_not_a_rejection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The engine records it `rejected` (error 1400) so the report has a status; the cause
    is the deadline."""
    workflow = Workflow()
    transition = workflow.apply(TimerFired(), now_ms=EXPIRY_MS)
    assert logged(caplog, transition) == [FAILOVER + "from_step=0 to_step=1 reason=deadline"]


def test_a_rejection_that_happened_after_the_deadline_is_not_why_it_failed_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workflow = Workflow()
    submitted_at_ms = ACCEPTED_AT_MS + 5
    workflow.apply(
        workflow.status(0, MessageStatus.SUBMITTED, submitted_at_ms), now_ms=submitted_at_ms
    )
    late = workflow.status(
        0, MessageStatus.REJECTED, EXPIRY_MS + 10, MessageError(code=1340, reason="late")
    )
    transition = workflow.apply(late, now_ms=EXPIRY_MS + 20)  # before the timer loop saw it
    assert logged(caplog, transition) == [FAILOVER + "from_step=0 to_step=1 reason=deadline"]


def test_the_last_step_ending_the_workflow_is_told_with_its_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workflow = Workflow()
    at_ms = ACCEPTED_AT_MS + 5
    refusal = MessageError(code=1300, reason="no")
    workflow.apply(workflow.status(0, MessageStatus.REJECTED, at_ms, refusal), now_ms=at_ms)
    transition = workflow.apply(
        workflow.status(1, MessageStatus.REJECTED, at_ms + 5, refusal), now_ms=at_ms + 5
    )
    assert logged(caplog, transition) == [
        f"workflow ended dispatch_uuid={DISPATCH_UUID} application_id={APPLICATION_ID} "
        "status=error messages=2"
    ]


def test_progress_that_decides_nothing_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    workflow = Workflow()
    transition = workflow.apply(
        workflow.status(0, MessageStatus.SUBMITTED, ACCEPTED_AT_MS + 5), now_ms=ACCEPTED_AT_MS + 5
    )
    assert logged(caplog, transition) == []


def test_nothing_is_built_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    workflow = Workflow()
    transition = workflow.apply(TimerFired(), now_ms=EXPIRY_MS)
    with caplog.at_level(logging.WARNING, logger="opendispatch.events"):
        event_log.transition_committed(transition)
        event_log.workflow_accepted(
            dispatch_uuid=DISPATCH_UUID, application_id=APPLICATION_ID, request_id="r", steps=2
        )
    assert caplog.records == []


# -- formats ----------------------------------------------------------------------------------

KIND = EventKind("webhook attempt failed", "webhook_id", "status_code", "reason", "attempt")
HOSTILE = 'HTTP 500 "no"\r\n2026-01-01 FORGED\x1b[31m\u2028é'


def record(message: object) -> logging.LogRecord:
    return logging.LogRecord("opendispatch.events", logging.DEBUG, "", 0, message, (), None)


def test_a_text_line_quotes_values_that_have_spaces_and_escapes_controls() -> None:
    line = EventLine(KIND, ("w-1", None, HOSTILE, 2))
    text = TextFormatter().format(record(line))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", text[:24])
    assert text[24:] == (
        "DEBUG opendispatch.events: webhook attempt failed webhook_id=w-1 status_code=- "
        'reason="HTTP 500 \\"no\\"\\r\\n2026-01-01 FORGED\\x1b[31m\\u2028é" attempt=2'
    )


def test_a_json_line_has_the_fields_as_keys_with_their_types_on_one_ascii_line() -> None:
    text = JsonFormatter().format(record(EventLine(KIND, ("w-1", 500, HOSTILE, 2))))
    assert text.isascii()
    assert "\n" not in text
    assert "\x1b" not in text
    entry = json.loads(text)
    assert entry.pop("time").endswith("Z")
    assert entry == {
        "level": "DEBUG",
        "logger": "opendispatch.events",
        "message": str(EventLine(KIND, ("w-1", 500, HOSTILE, 2))),
        "event": "webhook attempt failed",
        "webhook_id": "w-1",
        "status_code": 500,
        "reason": HOSTILE,
        "attempt": 2,
    }


def test_a_json_line_keeps_a_traceback_inside_its_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        failed = logging.LogRecord(
            "opendispatch", logging.ERROR, "", 0, "failed %s", ("x",), sys.exc_info()
        )
    text = JsonFormatter().format(failed)
    assert len(text.splitlines()) == 1
    entry = json.loads(text)
    assert entry["message"] == "failed x"
    assert "RuntimeError: boom\nsecond line" in entry["exception"]


def test_a_text_line_escapes_its_message_and_keeps_the_traceback_lines_below_it() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failed = logging.LogRecord(
            "opendispatch", logging.ERROR, "", 0, "failed on %s", ("/x\r\ny",), sys.exc_info()
        )
    first, *traceback = TextFormatter().format(failed).splitlines()
    assert first.endswith(" ERROR opendispatch: failed on /x\\r\\ny")
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "RuntimeError: boom"
