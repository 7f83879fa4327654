"""Two processes racing events for one workflow leave one consistent outcome (PostgreSQL).

Each "process" is its own store (its own connection pool) and runtime on the same schema. For
every workflow, one reports a `read` that happened just before the step's deadline while the
other fires the deadline itself, at the same instant. Whichever the database lets through
first decides; the other is then applied to the state the first left. Never both: no workflow
completes *and* sends its SMS, and none gets two final reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.engine.model import MessageStatus, TimerFired
from opendispatch.ids import uuid7
from opendispatch.runtime.assembly import build_runtime
from opendispatch.runtime.clock import ManualClock
from opendispatch.runtime.service import Runtime
from opendispatch.runtime.shell import decode_state
from opendispatch.store.factory import create_store
from opendispatch.store.records import NewWorkflow
from tests.databases import TestDatabase, new_database

pytestmark = pytest.mark.anyio

WORKFLOW = (
    '{"template":"failover","workflow":[{"to":{"type":"whatsapp","number":"447700900003"},'
    '"from":{"type":"whatsapp","number":"447700900000"},"message":{"content":{"type":"text",'
    '"text":"hi"}},"failover":{"expiry_time":60,"condition_status":"read"}},{"to":{"type":'
    '"sms","number":"447700900006"},"from":{"type":"sms","number":"447700900000"},"message":'
    '{"content":{"type":"text","text":"hi"}}}]}'
)


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[TestDatabase]:
    async for database in new_database("postgres", tmp_path):
        yield database


async def two_runtimes(database: TestDatabase, clock: ManualClock) -> tuple[Runtime, Runtime]:
    runtimes = []
    for _ in range(2):
        store = create_store(database.url)
        await store.open()
        runtimes.append(
            build_runtime(
                Settings(database=database.url, allow_private_webhooks=True),
                store=store,
                clock=clock,
            )
        )
    return runtimes[0], runtimes[1]


async def test_a_late_read_racing_the_expiry_leaves_one_consistent_outcome(
    postgres: TestDatabase,
):
    clock = ManualClock(start_ms=int(time.time() * 1000))
    first, second = await two_runtimes(postgres, clock)
    app = await provision_application(first.store, name="race", status_url="http://x.test/s")
    credentials = await first.store.find_credentials(app.application.application_id)
    assert credentials is not None
    workflows = []
    for _ in range(40):
        dispatch_uuid = uuid7()
        await first.accept(
            NewWorkflow(
                dispatch_uuid=dispatch_uuid,
                application_id=app.application.application_id,
                template="failover",
                request_json=WORKFLOW,
                created_at_ms=clock.now_ms(),
                channels=("whatsapp", "sms"),
            ),
            credentials,
        )
        loaded = await first.store.load_workflow(dispatch_uuid)
        assert loaded is not None
        assert loaded.state_json is not None
        message_uuid = decode_state(loaded.state_json).message_uuids[0]
        for status in (MessageStatus.SUBMITTED, MessageStatus.DELIVERED):
            await first.report_status(message_uuid, status)
        workflows.append((dispatch_uuid, message_uuid))

    await clock.advance(60_000)  # every deadline is now
    due = clock.now_ms()
    fire = second.shell.transition_for(TimerFired(), now_ms=due)
    await asyncio.gather(
        *(
            race
            for dispatch_uuid, message_uuid in workflows
            for race in (
                first.report_status(message_uuid, MessageStatus.READ, at_ms=due - 1),
                second.store.apply(dispatch_uuid=dispatch_uuid, transition=fire),
            )
        )
    )

    outcomes = {"completed": 0, "failed over": 0}
    for dispatch_uuid, _ in workflows:
        rows = await postgres.rows(
            "SELECT w.status, (SELECT count(*) FROM messages m WHERE m.dispatch_uuid ="
            " w.dispatch_uuid AND m.step = 1), (SELECT count(*) FROM webhooks h WHERE"
            f" h.dispatch_uuid = w.dispatch_uuid AND h.kind = 'final_report') FROM workflows w"
            f" WHERE w.dispatch_uuid = '{dispatch_uuid}'"
        )
        status, sms_sends, final_reports = rows[0]
        if status == "completed":
            # The read won: the workflow ended there; the expiry found nothing to do.
            assert (sms_sends, final_reports) == (0, 1)
            outcomes["completed"] += 1
        else:
            # The expiry won: the SMS is on its way; the read was late and changed nothing.
            assert (status, sms_sends, final_reports) == ("in_progress", 1, 0)
            outcomes["failed over"] += 1
    assert sum(outcomes.values()) == 40
    for runtime in (first, second):
        await runtime.close()
        await runtime.store.close()
