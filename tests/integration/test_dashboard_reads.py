"""The dashboard's reads across applications, on both databases: workflows stored by the real
write path (each database's own), filtered by every filter and their combinations, pages
followed newest first; a filtered walk that stops at its budget and goes on from there; the
terms index kept by triggers through retention; dead and failing webhooks; the overview's
counts. Time is driven (the sandbox and the webhook retries run on a manual clock)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.operators import OperatorAuth, secret_hash
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from opendispatch.store.browse import Browse, WorkflowFilter
from opendispatch.store.factory import create_store
from opendispatch.store.named_queries import load_queries, parameter_names
from opendispatch.store.operators import OperatorStore
from tests.databases import TestDatabase
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

SILENT = "447700900004"  # the sandbox submits it, then says nothing: runs until its deadline
DELIVERED = "447700900009"  # delivered and read
REJECTED = "447700900001"  # rejected at once


@dataclass
class Env:
    app: DispatchApp
    client: httpx.AsyncClient
    clock: ManualClock
    receiver: WebhookReceiver
    shop: AppCredentials
    other: AppCredentials
    database: TestDatabase

    @property
    def browse(self) -> Browse:
        return Browse(self.app.store.connector)

    async def workflow(self, steps: list[dict[str, Any]], by: AppCredentials | None = None) -> str:
        response = await self.client.post(
            "/v0.1/dispatch",
            json={"template": "failover", "workflow": steps},
            headers=(by or self.shop).basic(),
        )
        assert response.status_code == 202, response.text
        await self.clock.advance(1)  # each workflow its own millisecond: a known order
        await self.app.runtime.settled()
        return str(response.json()["dispatch_uuid"])

    async def listed(self, which: WorkflowFilter, *, limit: int = 50) -> list[str]:
        """Every workflow `which` matches, newest first, page after page."""
        found: list[str] = []
        before = None
        while True:
            page = await self.browse.workflows(which, limit=limit, before=before)
            found += [record.dispatch_uuid for record in page.workflows]
            if page.next_before is None:
                return found
            before = page.next_before


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver(status=200) as receiver:
        app = DispatchApp(
            Settings(
                database=database.url,
                allow_private_webhooks=True,
                webhook_retry_period_s=3,
                sandbox_delivered_after_ms=0,
                sandbox_read_after_ms=0,
            ),
            clock=clock,
        )
        await app.startup()
        shop = await provision_application(
            app.store, name="shop", status_url=f"{receiver.url}/shop"
        )
        other = await provision_application(
            app.store, name="other", status_url=f"{receiver.url}/other"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Env(
                app,
                client,
                clock,
                receiver,
                AppCredentials.from_provisioned(shop),
                AppCredentials.from_provisioned(other),
                database,
            )
        await app.shutdown()


READ_IN_600 = {"expiry_time": 600, "condition_status": "read"}


async def test_every_filter_lists_its_workflows_across_applications_newest_first(
    env: Env,
) -> None:
    completed = await env.workflow(
        [step("whatsapp", DELIVERED, READ_IN_600), step("sms", DELIVERED)]
    )
    running = await env.workflow([step("whatsapp", SILENT, READ_IN_600), step("sms", SILENT)])
    error = await env.workflow([step("sms", REJECTED)], by=env.other)
    # A messenger step is addressed by id, the SMS after it by number: both find it.
    messenger = await env.workflow(
        [
            {
                "to": {"type": "messenger", "id": "psid-74"},
                "from": {"type": "messenger", "id": "page-1"},
                "message": {"content": {"type": "text", "text": "hi"}},
                "failover": {"expiry_time": 600, "condition_status": "read"},
            },
            step("sms", "447700900777"),
        ],
        by=env.other,
    )
    assert await env.listed(WorkflowFilter()) == [messenger, error, running, completed]
    assert await env.listed(WorkflowFilter(application_id=env.shop.application_id)) == [
        running,
        completed,
    ]
    assert await env.listed(WorkflowFilter(status="completed")) == [completed]
    assert await env.listed(WorkflowFilter(status="in_progress")) == [messenger, running]
    assert await env.listed(WorkflowFilter(status="error")) == [error]
    assert await env.listed(WorkflowFilter(channel="whatsapp")) == [running, completed]
    assert await env.listed(WorkflowFilter(channel="messenger")) == [messenger]
    assert await env.listed(WorkflowFilter(recipient=SILENT)) == [running]
    assert await env.listed(WorkflowFilter(recipient="psid-74")) == [messenger]
    assert await env.listed(WorkflowFilter(recipient="447700900777")) == [messenger]
    assert await env.listed(WorkflowFilter(recipient="447700900000")) == []  # a sender
    # Combined: each filter narrows the others.
    assert await env.listed(
        WorkflowFilter(channel="sms", status="in_progress", application_id=env.shop.application_id)
    ) == [running]
    assert await env.listed(WorkflowFilter(recipient=SILENT, status="completed")) == []
    assert await env.listed(
        WorkflowFilter(channel="sms", application_id=env.other.application_id)
    ) == [messenger, error]
    # A time range: from inclusive, until exclusive, by creation time.
    rows = await env.database.rows(
        "SELECT dispatch_uuid, created_at_ms FROM workflows ORDER BY dispatch_uuid"
    )
    at = {uuid: ms for uuid, ms in rows}
    assert await env.listed(
        WorkflowFilter(created_from_ms=at[running], created_until_ms=at[messenger])
    ) == [error, running]
    assert await env.listed(WorkflowFilter(created_from_ms=at[messenger] + 1)) == []


async def test_pages_follow_each_other_without_gaps_or_repeats(env: Env) -> None:
    made = [await env.workflow([step("sms", DELIVERED)]) for _ in range(7)]
    assert await env.listed(WorkflowFilter(), limit=3) == made[::-1]
    assert await env.listed(WorkflowFilter(channel="sms"), limit=2) == made[::-1]
    page = await env.browse.workflows(WorkflowFilter(), limit=7)
    assert page.next_before is None  # exactly one page: no empty page after it


async def test_a_filtered_walk_stops_at_its_budget_and_the_next_page_searches_on(
    env: Env,
) -> None:
    wanted = await env.workflow([step("sms", SILENT)], by=env.other)
    for _ in range(5):
        await env.workflow([step("sms", DELIVERED)])
    browse = Browse(env.app.store.connector, walk_budget=3)
    # Down the sms channel's terms, checking the application on each: 3 rows, no match yet.
    which = WorkflowFilter(channel="sms", application_id=env.other.application_id)
    first = await browse.workflows(which, limit=10)
    assert first.workflows == []
    assert first.searched_only_to is not None
    assert first.next_before == first.searched_only_to
    second = await browse.workflows(which, limit=10, before=first.next_before)
    assert [r.dispatch_uuid for r in second.workflows] == [wanted]
    assert second.next_before is None


async def test_retention_takes_a_workflows_terms_with_it(env: Env) -> None:
    await env.workflow([step("whatsapp", DELIVERED, READ_IN_600), step("sms", DELIVERED)])
    # channel:whatsapp, channel:sms and to:<number> (one number for both steps)
    assert await env.database.scalar("SELECT count(*) FROM workflow_terms") == 3
    await env.clock.advance(10_000)
    await env.app.runtime.settled()  # every webhook delivered
    expired = await env.app.store.delete_expired(before_ms=env.clock.now_ms(), limit=100)
    assert (expired.webhooks, expired.workflows) == (4, 1)  # submitted, delivered, read, final
    assert await env.database.scalar("SELECT count(*) FROM workflow_terms") == 0
    assert await env.listed(WorkflowFilter(recipient=DELIVERED)) == []


async def test_dead_and_failing_webhooks_are_listed_across_applications(env: Env) -> None:
    env.receiver.respond_with(503)
    shop_workflow = await env.workflow([step("sms", REJECTED)])
    other_workflow = await env.workflow([step("sms", REJECTED)], by=env.other)
    failing = await env.browse.failing_webhooks(application_id=None, limit=50)
    assert {w.dispatch_uuid for w in failing} == {shop_workflow, other_workflow}
    assert all(w.last_status_code == 503 for w in failing)
    assert await env.browse.dead_webhooks(application_id=None, limit=50) == []
    for _ in range(8):  # past the 3 s retry period
        await env.clock.advance(1_000)
        await env.app.runtime.settled()
    dead = await env.browse.dead_webhooks(application_id=None, limit=50)
    assert len(dead) == 4  # a status and a final report each
    assert [w.id for w in dead] == sorted((w.id for w in dead), reverse=True)
    of_other = await env.browse.dead_webhooks(application_id=env.other.application_id, limit=50)
    assert {w.dispatch_uuid for w in of_other} == {other_workflow}
    older = await env.browse.dead_webhooks(application_id=None, limit=50, before_id=dead[1].id)
    assert older == dead[2:]
    assert await env.browse.failing_webhooks(application_id=None, limit=50) == []


async def test_the_overview_counts_outcomes_failovers_and_queues(env: Env) -> None:
    start = env.clock.now_ms()
    await env.workflow([step("whatsapp", REJECTED, READ_IN_600), step("sms", DELIVERED)])
    await env.workflow([step("whatsapp", SILENT, READ_IN_600), step("sms", SILENT)])
    await env.workflow([step("sms", REJECTED)], by=env.other)
    stopped = await env.workflow([step("sms", SILENT)])
    assert await env.app.runtime.cancel(env.shop.application_id, stopped) == "cancelled"
    await env.clock.advance(60_000)
    await env.workflow([step("sms", DELIVERED)])
    end = env.clock.now_ms() + 1
    periods = await env.browse.outcomes([start, start + 30_000, end])
    assert [(p.accepted, p.completed, p.error, p.cancelled, p.in_progress) for p in periods] == [
        (4, 1, 1, 1, 1),
        (1, 1, 0, 0, 0),
    ]
    assert await env.listed(WorkflowFilter(status="cancelled")) == [stopped]
    rates = {
        c.channel: (c.sent, c.failed_over)
        for c in await env.browse.failover_by_channel(since_ms=start)
    }
    assert rates == {"whatsapp": (2, 1), "sms": (4, 0)}
    queues = await env.browse.queues()
    assert queues.timers == 1  # the silent one waits for its deadline
    assert queues.webhooks_dead == 0


async def test_an_operator_signs_in_with_the_token_and_deleting_them_ends_their_sessions(
    env: Env,
) -> None:
    operators = OperatorStore(env.app.store.connector)
    auth = OperatorAuth(operators)
    now = env.clock.now_ms()
    assert await operators.create("alice", token_hash=secret_hash("right"), now_ms=now)
    assert not await operators.create("alice", token_hash=secret_hash("again"), now_ms=now)
    assert await auth.login("alice", "wrong", now_ms=now) is None
    assert await auth.login("bob", "right", now_ms=now) is None
    session = await auth.login("alice", "right", now_ms=now)
    assert session is not None
    assert (await auth.session(session.session_id, now_ms=now)) == session
    stored = await env.database.scalar("SELECT id_hash FROM operator_sessions")
    assert stored == secret_hash(session.session_id) != session.session_id
    assert [(o.name, o.sessions) for o in await operators.list(now_ms=now)] == [("alice", 1)]
    assert await operators.delete("alice")
    assert await auth.session(session.session_id, now_ms=now) is None
    assert await env.database.scalar("SELECT count(*) FROM operator_sessions") == 0


async def test_a_session_ends_when_it_expires(env: Env) -> None:
    operators = OperatorStore(env.app.store.connector)
    auth = OperatorAuth(operators)
    now = env.clock.now_ms()
    await operators.create("alice", token_hash=secret_hash("right"), now_ms=now)
    session = await auth.login("alice", "right", now_ms=now)
    assert session is not None
    twelve_hours = 12 * 3_600_000
    assert await auth.session(session.session_id, now_ms=now + twelve_hours - 1) is not None
    assert await auth.session(session.session_id, now_ms=now + twelve_hours) is None


async def test_sqlite_walks_each_list_down_its_index_with_no_sort(tmp_path: Path) -> None:
    """A page costs its rows, not the table's: each list query follows the index of its
    filter in id order (no temporary sort of the matches), and the counts of what is waiting
    read partial indexes, never every webhook."""
    store = create_store(f"sqlite:///{tmp_path / 'plans.db'}")
    await store.open()
    await store.close()
    queries = load_queries("opendispatch.store.sql", "sqlite.sql")
    expected = {
        "dashboard_workflows": "sqlite_autoindex_workflows_1",
        "dashboard_workflows_of_application": "workflows_by_application",
        "dashboard_workflows_of_status": "workflows_not_completed",
        "dashboard_workflows_of_term": "PRIMARY KEY",
        "dashboard_dead_webhooks": "webhooks_dead_everywhere",
        "dashboard_failing_webhooks": "webhooks_failing",
    }
    with sqlite3.connect(tmp_path / "plans.db") as connection:

        def plan(name: str) -> list[str]:
            parameters = dict.fromkeys(parameter_names(queries[name]), "x")
            rows = connection.execute(f"EXPLAIN QUERY PLAN {queries[name]}", parameters)
            return [row[3] for row in rows]

        for name, index in expected.items():
            steps = plan(name)
            assert index in steps[0], (name, steps)
            assert not any("TEMP B-TREE" in step for step in steps), (name, steps)
            walk = f"{name}_walk"
            if walk in queries:
                assert any(index in step for step in plan(walk)), (walk, plan(walk))
        scans = [step for step in plan("dashboard_queues") if step.startswith("SCAN ")]
        scans.remove("SCAN CONSTANT ROW")
        assert all("USING" in step and "INDEX" in step for step in scans), scans
        assert not any("webhooks_by_workflow" in step for step in scans), scans
