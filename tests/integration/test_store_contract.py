"""One suite, every store: the storage protocol's behaviour on SQLite and on PostgreSQL.

Each test runs once per backend (`[sqlite]`, `[postgres]`); the PostgreSQL case is skipped,
with the reason, when no server is configured (see tests/postgres.py). Transitions are built
by hand with a small JSON state: this is the store's contract, not the engine's. Time is
always the caller's `now_ms`, driven by the tests. The tests at the end are PostgreSQL's
own: several store objects stand for several processes sharing one database.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from opendispatch.engine.model import WorkflowStatus
from opendispatch.errors import MigrationError, StoreError
from opendispatch.ids import uuid7
from opendispatch.providers.sandbox import SandboxLog
from opendispatch.store.database import DatabaseStore
from opendispatch.store.migrations import load_migrations
from opendispatch.store.postgres import PostgresConnector, postgres_store
from opendispatch.store.protocol import Store
from opendispatch.store.records import (
    Application,
    ApplicationCredentials,
    LoadedWorkflow,
    NewInboxEvent,
    NewSend,
    NewWebhook,
    NewWorkflow,
    SendCompletion,
    SideWrites,
    Transition,
    WebhookAttempt,
    WebhookJob,
    WorkflowFilter,
)
from opendispatch.store.sqlite import sqlite_store
from tests.postgres import fresh_schema, skip_unless_postgres

pytestmark = pytest.mark.anyio

PostgresStore = DatabaseStore  # a store over the PostgreSQL connector, one per "process"

NOW = 1_700_000_000_000
LEASE = 30_000


# -- backends ---------------------------------------------------------------------------------


@dataclass
class Backend:
    """Makes store objects on one fresh database; each stands for one process."""

    name: str
    make: Callable[[], Store]
    run_sql: Callable[[str], Awaitable[list[tuple[Any, ...]]]]
    opened: list[Store] = field(default_factory=list)

    async def open_store(self) -> Store:
        store = self.make()
        self.opened.append(store)
        await store.open()
        return store

    async def schema_versions(self) -> list[int]:
        rows = await self.run_sql("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in rows]

    @property
    def known_versions(self) -> list[int]:
        return [migration.version for migration in load_migrations(self.name)]


def _sqlite_backend(path: Path) -> Backend:
    async def run_sql(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as connection:
            return connection.execute(sql).fetchall()

    return Backend("sqlite", lambda: sqlite_store(path), run_sql)


def _postgres_backend(dsn: str, schema: str) -> Backend:
    async def run_sql(sql: str) -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return Backend("postgres", lambda: postgres_store(dsn, schema=schema), run_sql)


@asynccontextmanager
async def _opened(backend: Backend) -> AsyncIterator[Backend]:
    try:
        yield backend
    finally:
        for store in backend.opened:
            await store.close()


@asynccontextmanager
async def _postgres() -> AsyncIterator[Backend]:
    dsn = skip_unless_postgres()
    async with fresh_schema(dsn) as schema, _opened(_postgres_backend(dsn, schema)) as made:
        yield made


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        async with _opened(_sqlite_backend(tmp_path / "store.db")) as made:
            yield made
    else:
        async with _postgres() as made:
            yield made


async def _with_applications(backend: Backend) -> Store:
    opened = await backend.open_store()
    await opened.create_application(credentials("app-1", "key-1"))
    await opened.create_application(credentials("app-2", "key-2"))
    return opened


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await _with_applications(backend)


@pytest.fixture
async def two_processes() -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two PostgreSQL stores on one database, as two `opendispatch serve` processes."""
    async with _postgres() as made:
        first = await _with_applications(made)
        second = await made.open_store()
        assert first.dialect == second.dialect == "postgres"
        assert isinstance(first, DatabaseStore)
        assert isinstance(second, DatabaseStore)
        yield first, second


# -- records built by hand -------------------------------------------------------------------


def credentials(application_id: str, api_key: str) -> ApplicationCredentials:
    return ApplicationCredentials(
        application=Application(
            application_id=application_id,
            name=f"name of {application_id}",
            api_key=api_key,
            status_url=f"http://127.0.0.1:9/{application_id}/status",
            final_report_url=f"http://127.0.0.1:9/{application_id}/final",
            created_at_ms=1,
        ),
        api_secret_hash="hmac-sha256$00$00",
        signature_secret=f"secret of {application_id}",
        public_key_pem="PEM",
    )


def new_send(dispatch_uuid: str, *, step: int = 0, at: int = NOW) -> NewSend:
    return NewSend(
        message_uuid=str(uuid.uuid4()),
        dispatch_uuid=dispatch_uuid,
        step=step,
        channel="sms",
        provider="sandbox",
        payload_json=json.dumps({"step": step}),
        next_attempt_at_ms=at,
    )


def new_webhook(
    dispatch_uuid: str, kind: str = "message_status", *, app: str = "app-1", at: int = NOW
) -> NewWebhook:
    return NewWebhook(
        event_id=str(uuid.uuid4()),
        dispatch_uuid=dispatch_uuid,
        application_id=app,
        kind=kind,
        message_uuid=None if kind == "final_report" else str(uuid.uuid4()),
        status="completed" if kind == "final_report" else "delivered",
        url=f"http://127.0.0.1:9/{app}/{kind}",
        payload=json.dumps({"kind": kind}),
        next_attempt_at_ms=at,
    )


def transition(count: int = 0, *, status: str = "in_progress", **effects: Any) -> Transition:
    return Transition(
        state_json=json.dumps({"count": count}),
        status=status,
        due_at_ms=effects.pop("due_at_ms", None),
        updated_at_ms=effects.pop("updated_at_ms", NOW),
        **effects,
    )


def counted(loaded: LoadedWorkflow) -> int:
    assert loaded.state_json is not None
    count: int = json.loads(loaded.state_json)["count"]
    return count


async def count_of(store: Store, dispatch_uuid: str) -> int:
    loaded = await store.load_workflow(dispatch_uuid)
    assert loaded is not None
    return counted(loaded)


def increment(loaded: LoadedWorkflow) -> Transition:
    return transition(counted(loaded) + 1, updated_at_ms=NOW + counted(loaded) + 1)


def recording_increment(seen: list[int]) -> Callable[[LoadedWorkflow], Transition]:
    """`increment`, noting in `seen` each count it was decided on."""

    def counting(loaded: LoadedWorkflow) -> Transition:
        seen.append(counted(loaded))
        return increment(loaded)

    return counting


@dataclass(frozen=True)
class Created:
    dispatch_uuid: str
    sends: tuple[NewSend, ...]
    webhooks: tuple[NewWebhook, ...]


async def create(
    store: Store,
    *,
    app: str = "app-1",
    created_at_ms: int = NOW,
    sends: int = 0,
    webhooks: tuple[str, ...] = (),
    due_at_ms: int | None = None,
    status: str = "in_progress",
    channels: tuple[str, ...] = ("sms",),
) -> Created:
    """A workflow whose first transition has `sends` sends (steps 0..n-1, due at NOW) and a
    webhook of each kind in `webhooks`, in that order."""
    dispatch_uuid = uuid7(created_at_ms)
    made = Created(
        dispatch_uuid,
        tuple(new_send(dispatch_uuid, step=step) for step in range(sends)),
        tuple(new_webhook(dispatch_uuid, kind, app=app) for kind in webhooks),
    )
    workflow = NewWorkflow(
        dispatch_uuid=dispatch_uuid,
        application_id=app,
        template="failover",
        request_json='[{"to": "447700900001"}]',
        created_at_ms=created_at_ms,
        channels=channels,
    )
    first = transition(
        status=status,
        due_at_ms=due_at_ms,
        updated_at_ms=created_at_ms,
        sends=made.sends,
        webhooks=made.webhooks,
    )
    await store.create_workflow(workflow, first)
    return made


def attempt(webhook_id: int, dispatch_uuid: str, state: str, **fields: Any) -> WebhookAttempt:
    return WebhookAttempt(
        id=webhook_id,
        dispatch_uuid=dispatch_uuid,
        state=state,
        next_attempt_at_ms=fields.get("next_attempt_at_ms"),
        status_code=fields.get("status_code", 200 if state == "delivered" else 500),
        error=fields.get("error"),
        at_ms=fields.get("at_ms", NOW + 5),
    )


async def claim_sends(store: Store, now_ms: int = NOW, limit: int = 100) -> list[str]:
    jobs = await store.claim_due_sends(now_ms=now_ms, limit=limit, lease_ms=LEASE)
    return sorted(job.message_uuid for job in jobs)


async def claim_webhooks(
    store: Store, now_ms: int = NOW, exclude: frozenset[str] = frozenset()
) -> list[WebhookJob]:
    return await store.claim_due_webhooks(
        now_ms=now_ms, limit=100, lease_ms=LEASE, exclude_applications=exclude
    )


async def states(store: Store, dispatch_uuid: str) -> list[str]:
    return [webhook.state for webhook in await store.list_webhooks(dispatch_uuid)]


# -- migrations -------------------------------------------------------------------------------


async def test_opening_again_applies_no_migration_twice(backend: Backend):
    first = await backend.open_store()
    await first.close()
    await backend.open_store()
    assert await backend.schema_versions() == backend.known_versions


async def test_stores_opening_at_once_migrate_exactly_once(backend: Backend):
    stores = [backend.make() for _ in range(4)]
    backend.opened.extend(stores)
    await asyncio.gather(*(store.open() for store in stores))
    assert await backend.schema_versions() == backend.known_versions
    await stores[0].create_application(credentials("app-1", "key-1"))
    assert [app.application_id for app in await stores[3].list_applications()] == ["app-1"]


async def test_a_database_newer_than_the_code_is_refused(backend: Backend):
    await backend.open_store()
    await backend.run_sql(
        "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (999, 'future', 0)"
    )
    with pytest.raises(MigrationError, match="newer"):
        await backend.open_store()


# -- applications -----------------------------------------------------------------------------


async def test_applications_are_listed_and_found_by_api_key_and_by_id(store: Store):
    listed = await store.list_applications()
    assert listed == [
        credentials("app-1", "key-1").application,
        credentials("app-2", "key-2").application,
    ]
    assert await store.find_credentials_by_api_key("key-2") == credentials("app-2", "key-2")
    assert await store.find_credentials("app-1") == credentials("app-1", "key-1")
    assert await store.find_credentials_by_api_key("nope") is None
    assert await store.find_credentials("nope") is None


async def test_a_duplicate_api_key_is_refused_and_changes_nothing(store: Store):
    with pytest.raises(StoreError) as refused:
        await store.create_application(credentials("app-9", "key-1"))
    assert not refused.value.retryable
    assert await store.find_credentials("app-9") is None


# -- workflows --------------------------------------------------------------------------------


async def test_a_workflow_is_found_only_by_its_own_application(store: Store):
    dispatch_uuid = (await create(store)).dispatch_uuid
    found = await store.get_workflow("app-1", dispatch_uuid)
    assert found is not None
    assert (found.application_id, found.status, found.created_at_ms) == (
        "app-1",
        "in_progress",
        NOW,
    )
    assert found.request_json == '[{"to": "447700900001"}]'
    assert await store.get_workflow("app-2", dispatch_uuid) is None
    loaded = await store.load_workflow(dispatch_uuid)
    assert loaded is not None
    assert (loaded.record, counted(loaded), loaded.api_key) == (found, 0, "key-1")
    assert loaded.final_report_url == "http://127.0.0.1:9/app-1/final"
    assert await store.load_workflow(str(uuid.uuid4())) is None


async def test_workflows_are_listed_newest_first_per_application_a_page_at_a_time(store: Store):
    mine = [(await create(store, created_at_ms=NOW + i)).dispatch_uuid for i in range(5)]
    await create(store, app="app-2", created_at_ms=NOW + 9)
    page = await store.list_workflows("app-1", limit=3)
    assert [w.dispatch_uuid for w in page] == mine[::-1][:3]
    rest = await store.list_workflows("app-1", limit=3, before=page[-1].dispatch_uuid)
    assert [w.dispatch_uuid for w in rest] == mine[1::-1]
    assert await store.list_workflows("app-1", limit=3, before=mine[0]) == []


async def test_workflows_are_listed_by_status_channel_and_creation_time(store: Store):
    specs = [
        (0, "error", ("sms",)),
        (1000, "completed", ("sms",)),
        (2000, "in_progress", ("whatsapp", "sms")),
        (3000, "error", ("mms",)),
        (4000, "completed", ("whatsapp", "sms")),
    ]
    error_0, done_1, running_2, error_3, done_4 = [
        (
            await create(store, created_at_ms=NOW + at, status=status, channels=channels)
        ).dispatch_uuid
        for at, status, channels in specs
    ]
    await create(store, app="app-2", created_at_ms=NOW + 5000, status="error")

    async def listed(limit: int = 10, before: str | None = None, **where: Any) -> list[str]:
        page = await store.list_workflows(
            "app-1", limit=limit, before=before, where=WorkflowFilter(**where)
        )
        return [workflow.dispatch_uuid for workflow in page]

    error, completed, running = (WorkflowStatus(s) for s in ("error", "completed", "in_progress"))
    assert await listed(statuses=frozenset({error})) == [error_3, error_0]
    # Several statuses: one walk each, merged newest first, cut at the limit and the cursor.
    assert await listed(statuses=frozenset({error, running})) == [error_3, running_2, error_0]
    assert await listed(limit=2, statuses=frozenset({error, completed})) == [done_4, error_3]
    assert await listed(before=error_3, statuses=frozenset({error, completed})) == [
        done_1,
        error_0,
    ]
    assert await listed(statuses=frozenset({error, completed, running})) == await listed()
    # A step on the channel, reached or not; `sms` is not `mms`.
    assert await listed(channel="whatsapp") == [done_4, running_2]
    assert await listed(channel="mms") == [error_3]
    assert await listed(channel="sms", statuses=frozenset({completed})) == [done_4, done_1]
    assert await listed(channel="messenger") == []
    # created_after is inclusive, created_before exclusive: ranges side by side never overlap.
    assert await listed(created_after_ms=NOW + 1000, created_before_ms=NOW + 3000) == [
        running_2,
        done_1,
    ]
    assert await listed(created_after_ms=NOW + 3000) == [done_4, error_3]
    assert await listed(created_before_ms=NOW + 1) == [error_0]
    assert await listed(created_after_ms=NOW + 1, statuses=frozenset({error}), before=error_3) == []


async def test_workflows_stored_before_the_channels_column_are_found_by_channel(
    backend: Backend,
):
    """A workflow stored before migration 0010 (its `channels` NULL) is found by the channels
    of its submitted JSON, one holding `\\u0000` too (which PostgreSQL cannot read as text)."""
    request = {
        "template": "failover",
        "workflow": [
            {"to": {"type": channel, "number": "447700900001"}, "message": {"text": "a\u0000"}}
            for channel in ("whatsapp", "sms", "whatsapp")
        ],
    }
    store = await _with_applications(backend)
    old = uuid7(NOW)
    await backend.run_sql(
        "INSERT INTO workflows (dispatch_uuid, application_id, template, status, request_json,"
        f" created_at_ms, updated_at_ms) VALUES ('{old}', 'app-1', 'failover', 'completed',"
        f" '{json.dumps(request)}', {NOW}, {NOW})",
    )
    new = (await create(store, created_at_ms=NOW + 1, channels=("mms",))).dispatch_uuid

    async def listed(channel: str, **where: Any) -> list[str]:
        page = await store.list_workflows(
            "app-1", limit=5, where=WorkflowFilter(channel=channel, **where)
        )
        return [workflow.dispatch_uuid for workflow in page]

    assert await listed("whatsapp") == [old]
    assert await listed("sms") == [old]
    assert await listed("sms", statuses=frozenset({WorkflowStatus.COMPLETED})) == [old]
    assert await listed("mms") == [new]
    assert await listed("messenger") == []


# -- apply ------------------------------------------------------------------------------------


async def test_apply_by_dispatch_uuid_writes_state_sends_webhooks_and_timer(store: Store):
    dispatch_uuid = (await create(store)).dispatch_uuid
    send = new_send(dispatch_uuid, step=1, at=NOW + 100)
    webhook = new_webhook(dispatch_uuid)
    seen: list[LoadedWorkflow] = []

    def step(loaded: LoadedWorkflow) -> Transition:
        seen.append(loaded)
        return transition(
            7,
            status="completed",
            due_at_ms=NOW + 60,
            updated_at_ms=NOW + 1,
            sends=(send,),
            webhooks=(webhook,),
        )

    result = await store.apply(dispatch_uuid=dispatch_uuid, transition=step)
    assert result is not None
    assert result.status == "completed"
    assert [counted(loaded) for loaded in seen] == [0]
    assert seen[0].status_url == "http://127.0.0.1:9/app-1/status"
    found = await store.get_workflow("app-1", dispatch_uuid)
    assert found is not None
    assert (found.status, found.updated_at_ms) == ("completed", NOW + 1)
    assert await count_of(store, dispatch_uuid) == 7
    assert await store.next_timer_due_ms() == NOW + 60
    assert await store.next_send_due_ms() == NOW + 100
    jobs = await store.claim_due_sends(now_ms=NOW + 100, limit=10, lease_ms=LEASE)
    assert [(j.message_uuid, j.dispatch_uuid, j.step, j.channel, j.provider) for j in jobs] == [
        (send.message_uuid, dispatch_uuid, 1, "sms", "sandbox")
    ]
    assert [(j.payload_json, j.attempts, j.created_at_ms) for j in jobs] == [
        (send.payload_json, 1, NOW + 1)
    ]
    [record] = await store.list_webhooks(dispatch_uuid)
    assert (record.event_id, record.kind, record.message_uuid, record.status) == (
        webhook.event_id,
        "message_status",
        webhook.message_uuid,
        "delivered",
    )
    assert (record.state, record.attempts, record.next_attempt_at_ms) == ("pending", 0, NOW)
    assert (record.url, record.created_at_ms, record.delivered_at_ms) == (
        webhook.url,
        NOW + 1,
        None,
    )
    assert (record.last_status_code, record.last_error) == (None, None)


async def test_apply_by_message_uuid_finds_the_workflow_of_the_message(store: Store):
    made = await create(store, sends=1)
    result = await store.apply(message_uuid=made.sends[0].message_uuid, transition=increment)
    assert result is not None
    assert await count_of(store, made.dispatch_uuid) == 1


async def test_apply_cancels_only_pending_sends(store: Store):
    dispatch_uuid = (await create(store)).dispatch_uuid
    sends = tuple(new_send(dispatch_uuid, step=step, at=NOW + step) for step in range(3))
    await store.apply(dispatch_uuid=dispatch_uuid, transition=lambda _: transition(1, sends=sends))
    in_flight, kept, cancelled = (send.message_uuid for send in sends)
    assert await claim_sends(store, now_ms=NOW) == [in_flight]
    await store.apply(
        dispatch_uuid=dispatch_uuid,
        transition=lambda _: transition(2, cancel_sends=(in_flight, cancelled)),
    )
    assert await claim_sends(store, now_ms=NOW + 2) == [kept]
    # The one in flight was not cancelled: when its lease runs out, it is claimed again.
    assert await claim_sends(store, now_ms=NOW + LEASE) == [in_flight]


async def test_a_transition_of_none_changes_nothing_but_side_writes_commit(store: Store):
    made = await create(store, sends=1)
    dispatch_uuid = made.dispatch_uuid
    [job] = await store.claim_due_sends(now_ms=NOW, limit=10, lease_ms=LEASE)
    await store.receive_statuses(
        [NewInboxEvent(message_uuid="m-1", status="read", due_at_ms=NOW + 5)]
    )
    [event] = await store.claim_due_inbox(now_ms=NOW + 5, limit=10, lease_ms=LEASE)
    done = SendCompletion(message_uuid=job.message_uuid, send_state="sent")
    result = await store.apply(
        dispatch_uuid=dispatch_uuid,
        transition=lambda loaded: None,
        side=SideWrites(complete_send=done, inbox_done=event.id),
    )
    assert result is None
    assert await count_of(store, dispatch_uuid) == 0
    assert await store.next_send_due_ms() is None  # completed: no lease left to run out
    assert await store.next_inbox_due_ms() is None  # consumed


async def test_apply_on_an_unknown_workflow_still_commits_the_side_writes(store: Store):
    calls: list[LoadedWorkflow] = []

    def never(loaded: LoadedWorkflow) -> Transition:
        calls.append(loaded)
        return transition(1)

    one = NewInboxEvent(message_uuid="m-1", status="delivered", due_at_ms=NOW + 1, price="0.1")
    two = NewInboxEvent(
        message_uuid="m-2", status="rejected", due_at_ms=NOW + 2, error_code=1300, error_reason="x"
    )
    await store.receive_statuses([one, two])
    events = await store.claim_due_inbox(now_ms=NOW + 2, limit=10, lease_ms=LEASE)
    found = [(e.message_uuid, e.status, e.error_code, e.error_reason, e.price) for e in events]
    assert sorted(found) == [
        ("m-1", "delivered", None, None, "0.1"),
        ("m-2", "rejected", 1300, "x", None),
    ]
    assert sorted(event.due_at_ms for event in events) == [NOW + 1, NOW + 2]
    side_one, side_two = (SideWrites(inbox_done=event.id) for event in events)
    assert await store.apply(message_uuid="no-such", transition=never, side=side_one) is None
    assert await store.apply(dispatch_uuid="no-such", transition=never, side=side_two) is None
    assert calls == []
    assert await store.next_inbox_due_ms() is None  # both consumed, with no workflow to apply


async def test_a_failing_transition_function_commits_nothing(store: Store):
    dispatch_uuid = (await create(store)).dispatch_uuid

    def broken(loaded: LoadedWorkflow) -> Transition:
        raise RuntimeError("engine bug")

    await store.receive_statuses([NewInboxEvent(message_uuid="m-1", status="read", due_at_ms=NOW)])
    [event] = await store.claim_due_inbox(now_ms=NOW, limit=10, lease_ms=LEASE)
    side = SideWrites(inbox_done=event.id)
    with pytest.raises(RuntimeError, match="engine bug"):
        await store.apply(dispatch_uuid=dispatch_uuid, transition=broken, side=side)
    assert await store.next_inbox_due_ms() == NOW + LEASE  # not consumed: back after its lease


async def test_events_of_many_workflows_at_once_each_write_their_own_effects(store: Store):
    # On PostgreSQL these share statements (the store sends concurrent calls together): each
    # workflow must still get exactly its own state, sends, cancels, webhooks and side writes.
    made = await asyncio.gather(*(create(store, sends=1) for _ in range(40)))
    # A status for each first message, half of them consumed by their workflow's event.
    await store.receive_statuses(
        [
            NewInboxEvent(
                message_uuid=c.sends[0].message_uuid, status="read", due_at_ms=NOW + 10_000 + n
            )
            for n, c in enumerate(made)
        ]
    )
    claimed = await store.claim_due_inbox(now_ms=NOW + 10_000 + 40, limit=100, lease_ms=1)
    by_message = {event.message_uuid: event.id for event in claimed}
    inbox_ids = {
        c.sends[0].message_uuid: None if n % 2 else by_message[c.sends[0].message_uuid]
        for n, c in enumerate(made)
    }
    assert len(await claim_sends(store)) == 40

    def advance(created: Created, number: int) -> Callable[[LoadedWorkflow], Transition]:
        def step(loaded: LoadedWorkflow) -> Transition:
            assert loaded.record.dispatch_uuid == created.dispatch_uuid
            return transition(
                number,
                due_at_ms=NOW + number,
                sends=(new_send(created.dispatch_uuid, step=1, at=NOW + 1000 + number),),
                webhooks=(new_webhook(created.dispatch_uuid),),
            )

        return step

    await asyncio.gather(
        *(
            store.apply(
                message_uuid=c.sends[0].message_uuid,
                transition=advance(c, number),
                side=SideWrites(
                    complete_send=SendCompletion(
                        message_uuid=c.sends[0].message_uuid,
                        send_state="sent",
                        provider_message_id=f"p-{number}",
                    ),
                    inbox_done=inbox_ids[c.sends[0].message_uuid],
                ),
            )
            for number, c in enumerate(made)
        )
    )
    for number, c in enumerate(made):
        assert await count_of(store, c.dispatch_uuid) == number
        assert len(await store.list_webhooks(c.dispatch_uuid)) == 1
    second_steps = await store.claim_due_sends(now_ms=NOW + 2000, limit=100, lease_ms=LEASE)
    assert sorted((job.dispatch_uuid, job.step) for job in second_steps) == sorted(
        (c.dispatch_uuid, 1) for c in made
    )
    due = await store.due_timers(now_ms=NOW + 100, limit=100)
    assert due == [c.dispatch_uuid for c in made]  # each workflow's own deadline, NOW + number
    remaining = await store.claim_due_inbox(now_ms=NOW + 20_000, limit=100, lease_ms=LEASE)
    assert sorted((e.message_uuid, e.due_at_ms) for e in remaining) == sorted(
        (c.sends[0].message_uuid, NOW + 10_000 + number)
        for number, c in enumerate(made)
        if number % 2  # the others were consumed, each with its own event
    )


async def test_one_failing_transition_among_many_fails_only_its_own_event(store: Store):
    made = await asyncio.gather(*(create(store) for _ in range(10)))
    broken_uuid = made[3].dispatch_uuid

    def maybe_broken(loaded: LoadedWorkflow) -> Transition:
        if loaded.record.dispatch_uuid == broken_uuid:
            raise RuntimeError("engine bug")
        return increment(loaded)

    outcomes = await asyncio.gather(
        *(store.apply(dispatch_uuid=c.dispatch_uuid, transition=maybe_broken) for c in made),
        return_exceptions=True,
    )
    assert [isinstance(outcome, RuntimeError) for outcome in outcomes] == [
        c.dispatch_uuid == broken_uuid for c in made
    ]
    assert [await count_of(store, c.dispatch_uuid) for c in made] == [
        0 if c.dispatch_uuid == broken_uuid else 1 for c in made
    ]


async def test_an_event_whose_writes_the_database_refuses_fails_alone(store: Store):
    made = await asyncio.gather(*(create(store, sends=1) for _ in range(10)))
    bad = made[6]

    def step(loaded: LoadedWorkflow) -> Transition:
        created = next(c for c in made if c.dispatch_uuid == loaded.record.dispatch_uuid)
        if created is bad:  # a send whose id is taken: the database refuses the insert
            return transition(1, sends=(made[0].sends[0],))
        return transition(1, sends=(new_send(created.dispatch_uuid, step=1),))

    outcomes = await asyncio.gather(
        *(store.apply(dispatch_uuid=c.dispatch_uuid, transition=step) for c in made),
        return_exceptions=True,
    )
    assert [isinstance(outcome, StoreError) for outcome in outcomes] == [c is bad for c in made]
    assert [await count_of(store, c.dispatch_uuid) for c in made] == [
        0 if c is bad else 1 for c in made
    ]


async def test_a_workflow_the_database_refuses_fails_alone_among_concurrent_creations(
    store: Store,
):
    outcomes = await asyncio.gather(
        *(create(store, app="no-such-app" if i == 4 else "app-1", sends=1) for i in range(8)),
        return_exceptions=True,
    )
    assert [isinstance(outcome, StoreError) for outcome in outcomes] == [i == 4 for i in range(8)]
    created = [outcome for outcome in outcomes if isinstance(outcome, Created)]
    for made in created:
        assert await count_of(store, made.dispatch_uuid) == 0
    assert len(await claim_sends(store)) == 7


async def test_many_events_of_one_workflow_at_once_apply_one_after_the_other(store: Store):
    dispatch_uuid = (await create(store)).dispatch_uuid
    seen: list[int] = []
    counting = recording_increment(seen)
    await asyncio.gather(
        *(store.apply(dispatch_uuid=dispatch_uuid, transition=counting) for _ in range(30))
    )
    assert await count_of(store, dispatch_uuid) == 30
    assert seen == list(range(30))  # one process: never decided twice, each on the last state


async def test_completing_a_send_and_consuming_an_inbox_event_commit_with_the_event(store: Store):
    made = await create(store, sends=1)
    [job] = await store.claim_due_sends(now_ms=NOW, limit=10, lease_ms=LEASE)
    scheduled = NewInboxEvent(message_uuid=job.message_uuid, status="delivered", due_at_ms=NOW + 7)
    await store.receive_statuses([scheduled])
    done = SendCompletion(message_uuid=job.message_uuid, send_state="sent", provider_message_id="p")
    await store.apply(
        message_uuid=job.message_uuid,
        transition=increment,
        side=SideWrites(complete_send=done),
    )
    assert await store.next_send_due_ms() is None  # sent: no lease left to run out
    assert await claim_sends(store, now_ms=NOW + 10 * LEASE) == []
    [event] = await store.claim_due_inbox(now_ms=NOW + 7, limit=10, lease_ms=LEASE)
    await store.apply(
        message_uuid=event.message_uuid, transition=increment, side=SideWrites(inbox_done=event.id)
    )
    assert await store.next_inbox_due_ms() is None
    assert await store.claim_due_inbox(now_ms=NOW + 10 * LEASE, limit=10, lease_ms=LEASE) == []
    assert await count_of(store, made.dispatch_uuid) == 2


async def test_a_message_belongs_to_its_workflow_and_application(store: Store):
    made = await create(store, app="app-2", sends=1)
    owner = await store.message_owner(made.sends[0].message_uuid)
    assert owner is not None
    assert (owner.message_uuid, owner.dispatch_uuid, owner.application_id) == (
        made.sends[0].message_uuid,
        made.dispatch_uuid,
        "app-2",
    )
    assert await store.message_owner("no-such") is None


# -- sends ------------------------------------------------------------------------------------


async def test_due_sends_are_claimed_once_earliest_first(store: Store):
    made = await create(store, sends=3)
    late = new_send(made.dispatch_uuid, step=9, at=NOW + 1)
    await store.apply(
        dispatch_uuid=made.dispatch_uuid, transition=lambda _: transition(1, sends=(late,))
    )
    first = await store.claim_due_sends(now_ms=NOW + 1, limit=2, lease_ms=LEASE)
    assert [job.attempts for job in first] == [1, 1]
    assert late.message_uuid not in {job.message_uuid for job in first}
    second = await claim_sends(store, now_ms=NOW)
    assert len(second) == 1
    assert not {job.message_uuid for job in first} & set(second)
    assert await claim_sends(store, now_ms=NOW) == []  # the same moment: nothing left
    assert await claim_sends(store, now_ms=NOW + 1) == [late.message_uuid]


async def test_a_send_whose_lease_expired_is_claimable_again(store: Store):
    made = await create(store, sends=1)
    assert await claim_sends(store, now_ms=NOW) == [made.sends[0].message_uuid]
    assert await store.next_send_due_ms() == NOW + LEASE  # the next thing due: the lease's end
    assert await claim_sends(store, now_ms=NOW + LEASE - 1) == []
    again = await store.claim_due_sends(now_ms=NOW + LEASE, limit=10, lease_ms=LEASE)
    assert [(job.message_uuid, job.attempts) for job in again] == [(made.sends[0].message_uuid, 2)]


async def test_only_sends_whose_lease_ran_out_are_claimed_again(store: Store):
    await create(store, sends=2)
    [early] = await store.claim_due_sends(now_ms=NOW, limit=1, lease_ms=LEASE)
    assert len(await claim_sends(store, now_ms=NOW + 10)) == 1  # its lease ends 10 ms later
    assert await store.next_send_due_ms() == NOW + LEASE  # the first lease to run out
    assert await claim_sends(store, now_ms=NOW + LEASE) == [early.message_uuid]


async def test_retrying_a_send_reschedules_it(store: Store):
    made = await create(store, sends=1)
    [job] = await store.claim_due_sends(now_ms=NOW, limit=10, lease_ms=LEASE)
    await store.retry_send(job.message_uuid, next_attempt_at_ms=NOW + 500, error="busy")
    assert await store.next_send_due_ms() == NOW + 500
    assert await claim_sends(store, now_ms=NOW + 499) == []
    [again] = await store.claim_due_sends(now_ms=NOW + 500, limit=10, lease_ms=LEASE)
    assert (again.message_uuid, again.attempts) == (made.sends[0].message_uuid, 2)


# -- timers -----------------------------------------------------------------------------------


async def test_timers_come_due_in_deadline_order(store: Store):
    assert await store.next_timer_due_ms() is None
    second = (await create(store, due_at_ms=NOW + 20)).dispatch_uuid
    first = (await create(store, due_at_ms=NOW + 10)).dispatch_uuid
    await create(store)  # no deadline
    assert await store.next_timer_due_ms() == NOW + 10
    assert await store.due_timers(now_ms=NOW + 9, limit=10) == []
    assert await store.due_timers(now_ms=NOW + 10, limit=10) == [first]
    assert await store.due_timers(now_ms=NOW + 99, limit=1) == [first]
    assert await store.due_timers(now_ms=NOW + 99, limit=10) == [first, second]
    await store.apply(dispatch_uuid=first, transition=lambda _: transition(1, due_at_ms=None))
    assert await store.next_timer_due_ms() == NOW + 20
    assert await store.due_timers(now_ms=NOW + 99, limit=10) == [second]


# -- provider statuses waiting to be applied ------------------------------------------------------


async def test_inbox_events_are_claimed_once_when_due_and_again_after_their_lease(store: Store):
    assert await store.next_inbox_due_ms() is None
    schedule = tuple(
        NewInboxEvent(message_uuid=f"m-{i}", status="delivered", due_at_ms=NOW + i) for i in (1, 2)
    )
    await store.receive_statuses(schedule)
    assert await store.next_inbox_due_ms() == NOW + 1
    assert await store.claim_due_inbox(now_ms=NOW, limit=10, lease_ms=LEASE) == []
    [first] = await store.claim_due_inbox(now_ms=NOW + 1, limit=10, lease_ms=LEASE)
    assert first.message_uuid == "m-1"
    assert await store.claim_due_inbox(now_ms=NOW + 1, limit=10, lease_ms=LEASE) == []
    assert await store.next_inbox_due_ms() == NOW + 2
    [second] = await store.claim_due_inbox(now_ms=NOW + 2, limit=10, lease_ms=LEASE)
    assert second.message_uuid == "m-2"
    assert await store.next_inbox_due_ms() == NOW + 1 + LEASE
    again = await store.claim_due_inbox(now_ms=NOW + 1 + LEASE, limit=10, lease_ms=LEASE)
    assert [event.id for event in again] == [first.id]


async def test_a_workflows_inbox_comes_with_it_in_the_order_things_happened(store: Store):
    """Whatever an event is, its transition sees the statuses waiting for its workflow's
    messages, leased by a claim or not (another process may have died holding them), in the
    order they happened; the ones it consumes go with its write, and only then."""
    made = await create(store, sends=1)
    other = await create(store, sends=1)
    message_uuid = made.sends[0].message_uuid
    await store.receive_statuses(
        [
            NewInboxEvent(message_uuid=message_uuid, status="read", due_at_ms=NOW + 5,
                          occurred_at_ms=NOW + 2),
            NewInboxEvent(message_uuid=message_uuid, status="delivered", due_at_ms=NOW + 5,
                          occurred_at_ms=NOW + 1),
            NewInboxEvent(message_uuid=other.sends[0].message_uuid, status="read",
                          due_at_ms=NOW + 5),
        ]
    )  # fmt: skip
    assert len(await store.claim_due_inbox(now_ms=NOW + 5, limit=10, lease_ms=LEASE)) == 3
    seen: list[LoadedWorkflow] = []

    def consume(loaded: LoadedWorkflow) -> Transition | None:
        seen.append(loaded)
        if len(seen) == 1:
            return None  # changes nothing: consumes nothing either
        return transition(1, consumed_inbox=tuple(status.id for status in loaded.inbox))

    await store.apply(dispatch_uuid=made.dispatch_uuid, transition=consume)
    await store.apply(message_uuid=message_uuid, transition=consume)
    assert [[(s.status, s.occurred_at_ms) for s in loaded.inbox] for loaded in seen] == [
        [("delivered", NOW + 1), ("read", NOW + 2)]
    ] * 2
    assert {s.message_uuid for s in seen[0].inbox} == {message_uuid}
    left = await store.claim_due_inbox(now_ms=NOW + 5 + LEASE, limit=10, lease_ms=LEASE)
    assert [event.message_uuid for event in left] == [other.sends[0].message_uuid]


# -- webhooks ---------------------------------------------------------------------------------


async def test_due_webhooks_are_claimed_once_and_not_for_saturated_applications(store: Store):
    mine = await create(store, webhooks=("message_status",))
    theirs = await create(store, app="app-2", webhooks=("message_status",))
    assert await store.next_webhook_due_ms() == NOW
    [job] = await claim_webhooks(store, exclude=frozenset({"app-2"}))
    assert (job.event_id, job.dispatch_uuid, job.application_id) == (
        mine.webhooks[0].event_id,
        mine.dispatch_uuid,
        "app-1",
    )
    assert (job.url, job.payload, job.attempts, job.created_at_ms) == (
        mine.webhooks[0].url,
        mine.webhooks[0].payload,
        1,
        NOW,
    )
    assert await claim_webhooks(store, exclude=frozenset({"app-2"})) == []
    assert await store.next_webhook_due_ms() == NOW  # app-2's: due, though its app is full
    [other] = await claim_webhooks(store)
    assert other.dispatch_uuid == theirs.dispatch_uuid
    assert await claim_webhooks(store) == []
    assert await store.next_webhook_due_ms() == NOW + LEASE
    [again] = await claim_webhooks(store, now_ms=NOW + LEASE, exclude=frozenset({"app-2"}))
    assert (again.id, again.attempts) == (job.id, 2)


async def test_recorded_attempts_deliver_reschedule_or_bury_webhooks(store: Store):
    made = await create(store, webhooks=("message_status",) * 3)
    jobs = sorted(await claim_webhooks(store), key=lambda job: job.id)
    delivered, retried, dead = (job.id for job in jobs)
    d = made.dispatch_uuid
    await store.record_webhook_attempts(
        [
            attempt(delivered, d, "delivered", at_ms=NOW + 3),
            attempt(retried, d, "pending", next_attempt_at_ms=NOW + 900, error="HTTP 500"),
            attempt(dead, d, "dead", status_code=None, error="gone"),
        ]
    )
    records = await store.list_webhooks(d)
    assert [(r.state, r.attempts, r.next_attempt_at_ms) for r in records] == [
        ("delivered", 1, None),
        ("pending", 1, NOW + 900),
        ("dead", 1, None),
    ]
    assert [(r.last_status_code, r.last_error, r.delivered_at_ms) for r in records] == [
        (200, None, NOW + 3),
        (500, "HTTP 500", None),
        (None, "gone", None),
    ]
    assert [record.event_id for record in records] == [w.event_id for w in made.webhooks]
    assert await store.next_webhook_due_ms() == NOW + 900
    assert await claim_webhooks(store, now_ms=NOW + 899) == []
    assert [job.id for job in await claim_webhooks(store, now_ms=NOW + 900)] == [retried]


async def test_a_final_report_is_held_until_its_workflows_last_webhook_settles(store: Store):
    made = await create(store, webhooks=("message_status", "message_status", "final_report"))
    d = made.dispatch_uuid
    assert await states(store, d) == ["pending", "pending", "held"]
    first, second = sorted(job.id for job in await claim_webhooks(store))
    await store.record_webhook_attempts([attempt(first, d, "delivered")])
    assert await states(store, d) == ["delivered", "pending", "held"]
    await store.record_webhook_attempts([attempt(second, d, "pending", next_attempt_at_ms=NOW)])
    assert await states(store, d) == ["delivered", "pending", "held"]
    [job] = await claim_webhooks(store)
    await store.record_webhook_attempts([attempt(job.id, d, "dead")])
    assert await states(store, d) == ["delivered", "dead", "pending"]
    [final] = await claim_webhooks(store)
    assert final.event_id == made.webhooks[2].event_id


async def test_a_final_report_with_nothing_left_to_deliver_is_pending_at_once(store: Store):
    made = await create(store, webhooks=("final_report",))
    assert await states(store, made.dispatch_uuid) == ["pending"]
    later = await create(store, webhooks=("message_status",))
    jobs = await claim_webhooks(store)
    [job] = [job for job in jobs if job.dispatch_uuid == later.dispatch_uuid]
    await store.record_webhook_attempts([attempt(job.id, later.dispatch_uuid, "delivered")])
    final = new_webhook(later.dispatch_uuid, "final_report")
    await store.apply(
        dispatch_uuid=later.dispatch_uuid, transition=lambda _: transition(1, webhooks=(final,))
    )
    assert await states(store, later.dispatch_uuid) == ["delivered", "pending"]


async def test_a_final_report_written_after_pending_webhooks_is_held(store: Store):
    made = await create(store, webhooks=("message_status",))
    final = new_webhook(made.dispatch_uuid, "final_report")
    await store.apply(
        dispatch_uuid=made.dispatch_uuid, transition=lambda _: transition(1, webhooks=(final,))
    )
    assert await states(store, made.dispatch_uuid) == ["pending", "held"]
    [job] = await claim_webhooks(store)  # the held one is not claimable
    assert await store.next_webhook_due_ms() == NOW + LEASE  # nor counted as due
    await store.record_webhook_attempts([attempt(job.id, made.dispatch_uuid, "delivered")])
    assert await states(store, made.dispatch_uuid) == ["delivered", "pending"]


# -- recovery and the sandbox ------------------------------------------------------------------


async def test_the_sandbox_counts_the_attempts_to_send_each_message(store: Store):
    assert isinstance(store, DatabaseStore)
    log = SandboxLog(store.connector)  # its own table, beside the store's

    async def record(message_uuid: str, now_ms: int) -> tuple[int, int]:
        logged = await log.record(
            message_uuid=message_uuid, channel="sms", recipient="1", outcome="ok", now_ms=now_ms
        )
        return (logged.attempts, logged.first_sent_at_ms)

    assert [await record("m-1", NOW), await record("m-1", NOW + 5), await record("m-2", NOW)] == [
        (1, NOW),
        (2, NOW),  # when it was first asked, whatever the retry
        (1, NOW),
    ]


async def test_releasing_leases_frees_claims_only_where_one_process_owns_the_database(
    store: Store, backend: Backend
):
    await create(store, sends=1, webhooks=("message_status",))
    await store.receive_statuses([NewInboxEvent(message_uuid="m-1", status="read", due_at_ms=NOW)])
    assert len(await claim_sends(store)) == 1
    assert len(await claim_webhooks(store)) == 1
    assert len(await store.claim_due_inbox(now_ms=NOW, limit=10, lease_ms=LEASE)) == 1
    other = await backend.open_store()  # another process, on PostgreSQL
    await other.release_leases()
    expected = 1 if backend.name == "sqlite" else 0  # PostgreSQL: others' leases are alive
    assert len(await claim_sends(store)) == expected
    assert len(await claim_webhooks(store)) == expected
    assert len(await store.claim_due_inbox(now_ms=NOW, limit=10, lease_ms=LEASE)) == expected
    await store.release_leases()  # its own (on SQLite: all): free for anyone, at once
    assert len(await claim_sends(other)) == 1
    assert len(await claim_webhooks(other)) == 1
    assert len(await other.claim_due_inbox(now_ms=NOW, limit=10, lease_ms=LEASE)) == 1


# -- PostgreSQL: several processes, one database -----------------------------------------------


async def _drain(claim: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
    taken: list[Any] = []
    while batch := await claim():
        taken += batch
    return taken


@pytest.mark.postgres
async def test_two_processes_claiming_at_once_never_get_the_same_send(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    made = await create(two_processes[0], sends=300)

    async def claim(store: PostgresStore) -> list[str]:
        jobs = await store.claim_due_sends(now_ms=NOW, limit=5, lease_ms=LEASE)
        return [job.message_uuid for job in jobs]

    # Three claimers per process, all at once.
    takes = await asyncio.gather(
        *(_drain(lambda s=store: claim(s)) for store in two_processes for _ in range(3))
    )
    every = [message_uuid for take in takes for message_uuid in take]
    assert len(every) == len(set(every)) == 300
    assert set(every) == {send.message_uuid for send in made.sends}
    assert any(takes[:3])  # both processes took part
    assert any(takes[3:])


@pytest.mark.postgres
async def test_two_processes_claiming_at_once_never_get_the_same_webhook_or_inbox_event(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    first, _ = two_processes
    made = await create(first, webhooks=("message_status",) * 100)
    schedule = tuple(
        NewInboxEvent(message_uuid=f"m-{i}", status="read", due_at_ms=NOW) for i in range(100)
    )
    await first.receive_statuses(schedule)

    async def webhooks(store: PostgresStore) -> list[int]:
        jobs = await store.claim_due_webhooks(
            now_ms=NOW, limit=5, lease_ms=LEASE, exclude_applications=frozenset()
        )
        return [job.id for job in jobs]

    async def inbox(store: PostgresStore) -> list[int]:
        events = await store.claim_due_inbox(now_ms=NOW, limit=5, lease_ms=LEASE)
        return [event.id for event in events]

    for claim, expected in ((webhooks, len(made.webhooks)), (inbox, len(schedule))):
        takes = await asyncio.gather(
            *(_drain(lambda s=store, c=claim: c(s)) for store in two_processes for _ in range(2))
        )
        every = [row_id for take in takes for row_id in take]
        assert len(every) == len(set(every)) == expected


@pytest.mark.postgres
async def test_events_of_one_workflow_from_two_processes_apply_one_after_the_other(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    dispatch_uuid = (await create(two_processes[0])).dispatch_uuid
    seen: list[int] = []
    counting = recording_increment(seen)
    await asyncio.gather(
        *(
            store.apply(dispatch_uuid=dispatch_uuid, transition=counting)
            for _ in range(25)
            for store in two_processes
        )
    )
    # Each event applied exactly once, on the state the one before it left: none lost, none
    # doubled. (A transition function may run again when its first write lost a race: the
    # store retries on the newer state, so every intermediate state was seen.)
    assert await count_of(two_processes[1], dispatch_uuid) == 50
    assert set(seen) == set(range(50))


@pytest.mark.postgres
async def test_a_final_report_racing_the_delivery_it_waits_for_is_never_left_held(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    """Many at once, in whatever order the two processes meet (see the two tests below for
    each order forced): every final report ends up pending, none held."""
    first, second = two_processes
    made = [await create(first, webhooks=("message_status",)) for _ in range(20)]
    jobs = {job.dispatch_uuid: job for job in await claim_webhooks(second)}

    async def finish(dispatch_uuid: str) -> None:
        final = new_webhook(dispatch_uuid, "final_report")
        await first.apply(
            dispatch_uuid=dispatch_uuid, transition=lambda _: transition(1, webhooks=(final,))
        )

    async def deliver(dispatch_uuid: str) -> None:
        delivered = attempt(jobs[dispatch_uuid].id, dispatch_uuid, "delivered")
        await second.record_webhook_attempts([delivered])

    await asyncio.gather(*(step(m.dispatch_uuid) for m in made for step in (finish, deliver)))
    for m in made:
        assert await states(first, m.dispatch_uuid) == ["delivered", "pending"]


async def _raw(store: PostgresStore) -> Any:
    """A plain connection to the store's schema, to hold a transaction open by hand."""
    connector = store.connector
    assert isinstance(connector, PostgresConnector)
    return await asyncpg.connect(
        connector.dsn, server_settings={"search_path": str(connector.schema)}
    )


def _sql(store: PostgresStore, query: str) -> str:
    """A named query as the connector sends it ($n parameters, in the order of their names)."""
    connector = store.connector
    assert isinstance(connector, PostgresConnector)
    return connector.queries[query].sql


async def _until_waiting_for_a_lock(store: PostgresStore, connection: Any) -> None:
    """Until one of `store`'s connections waits for a row lock (polled, bounded)."""
    name = f"opendispatch {store.connector.lease_owner}"[:63]
    async with asyncio.timeout(10):
        while not await connection.fetchval(  # noqa: ASYNC110 (another process's state)
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND application_name = $1",
            name,
        ):
            await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_a_final_report_written_while_its_last_webhook_is_being_recorded_is_pending(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    """The record goes first and is not yet committed: the transition waits for it, then
    sees the webhook delivered, and writes its final report pending."""
    first, second = two_processes
    made = await create(first, webhooks=("message_status",))
    [job] = await claim_webhooks(second)
    recording = await _raw(second)
    observer = await _raw(second)
    try:
        async with recording.transaction():
            await recording.execute(
                _sql(second, "record_webhook_attempts"),
                [job.id], ["delivered"], [None], [200], [None], [NOW + 5], [NOW + 5],
            )  # fmt: skip
            final = new_webhook(made.dispatch_uuid, "final_report")
            writing = asyncio.ensure_future(
                first.apply(
                    dispatch_uuid=made.dispatch_uuid,
                    transition=lambda _: transition(1, webhooks=(final,)),
                )
            )
            await _until_waiting_for_a_lock(first, observer)
            assert not writing.done()
        await writing
    finally:
        await recording.close()
        await observer.close()
    assert await states(first, made.dispatch_uuid) == ["delivered", "pending"]


@pytest.mark.postgres
async def test_a_delivery_recorded_while_its_final_report_is_being_written_releases_it(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    """The transition goes first and is not yet committed (by hand: what write_transitions
    does for a final report, share-lock the webhooks it waits for and write it held): the
    record waits for it, and its release then sees the held report."""
    first, second = two_processes
    made = await create(first, webhooks=("message_status",))
    [job] = await claim_webhooks(second)
    writing = await _raw(first)
    observer = await _raw(first)
    try:
        async with writing.transaction():
            await writing.execute(
                "SELECT 1 FROM webhooks WHERE dispatch_uuid = $1 AND state = 'pending'"
                " ORDER BY id FOR SHARE",
                made.dispatch_uuid,
            )
            await writing.execute(
                "INSERT INTO webhooks (event_id, dispatch_uuid, application_id, kind, status,"
                " url, payload, state, next_attempt_at_ms, created_at_ms)"
                " VALUES ($1, $2, 'app-1', 'final_report', 'completed', 'http://x/f', '{}',"
                " 'held', $3, $3)",
                str(uuid.uuid4()), made.dispatch_uuid, NOW,
            )  # fmt: skip
            recording = asyncio.ensure_future(
                second.record_webhook_attempts([attempt(job.id, made.dispatch_uuid, "delivered")])
            )
            await _until_waiting_for_a_lock(second, observer)
            assert not recording.done()
        await recording
    finally:
        await writing.close()
        await observer.close()
    assert await states(first, made.dispatch_uuid) == ["delivered", "pending"]


@pytest.mark.postgres
async def test_two_processes_recording_a_workflows_last_two_webhooks_release_its_report(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    """Each records one of the two webhooks the final report waits for; the first is not
    yet committed: the second waits for it, then sees both delivered and releases."""
    first, second = two_processes
    made = await create(first, webhooks=("message_status", "message_status", "final_report"))
    assert await states(first, made.dispatch_uuid) == ["pending", "pending", "held"]
    one, other = sorted(await claim_webhooks(second), key=lambda job: job.id)
    recording = await _raw(first)
    observer = await _raw(first)
    try:
        async with recording.transaction():
            await recording.execute(
                _sql(first, "record_webhook_attempts"),
                [one.id], ["delivered"], [None], [200], [None], [NOW + 5], [NOW + 5],
            )  # fmt: skip
            racing = asyncio.ensure_future(
                second.record_webhook_attempts([attempt(other.id, made.dispatch_uuid, "delivered")])
            )
            await _until_waiting_for_a_lock(second, observer)
            assert not racing.done()
        await racing
    finally:
        await recording.close()
        await observer.close()
    assert await states(first, made.dispatch_uuid) == ["delivered", "delivered", "pending"]


@pytest.mark.postgres
async def test_a_retry_from_a_process_whose_lease_was_taken_over_changes_nothing(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    first, second = two_processes
    message_uuid = (await create(first, sends=1)).sends[0].message_uuid
    assert await claim_sends(first, now_ms=NOW) == [message_uuid]
    [taken] = await second.claim_due_sends(now_ms=NOW + LEASE, limit=10, lease_ms=LEASE)
    assert (taken.message_uuid, taken.attempts) == (message_uuid, 2)
    await first.retry_send(message_uuid, next_attempt_at_ms=NOW + LEASE, error="too late")
    assert await claim_sends(first, now_ms=NOW + LEASE) == []  # still the second's
    assert await first.next_send_due_ms() == NOW + 2 * LEASE


async def _hear(heard: asyncio.Queue[str], expected: set[str]) -> None:
    """Until every expected payload arrived (others' notifications may come in between)."""
    missing = set(expected)
    async with asyncio.timeout(10):
        while missing:
            missing.discard(await heard.get())


@pytest.mark.postgres
async def test_a_notification_from_one_process_reaches_the_others_listener(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    first, second = two_processes
    heard: asyncio.Queue[str] = asyncio.Queue()
    await second.listen(heard.put_nowait)
    tag = uuid.uuid4().hex
    await first.notify([f"sends-{tag}", f"timers:{tag}"])
    await _hear(heard, {f"sends-{tag}", f"timers:{tag}"})
    with pytest.raises(StoreError, match="already listening"):
        await second.listen(heard.put_nowait)


@pytest.mark.postgres
async def test_a_dropped_listen_connection_is_reopened_and_asks_for_a_full_recheck(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    first, second = two_processes
    heard: asyncio.Queue[str] = asyncio.Queue()
    await second.listen(heard.put_nowait)
    administrator = await asyncpg.connect(skip_unless_postgres())
    try:
        terminated = await administrator.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            f"opendispatch-listen {second.connector.lease_owner}"[:63],
        )
    finally:
        await administrator.close()
    assert terminated == 1
    await _hear(heard, {"*"})
    tag = uuid.uuid4().hex
    await first.notify([tag])
    await _hear(heard, {tag})


async def test_an_unreachable_server_is_a_retryable_store_error():
    store = postgres_store("postgresql://postgres@127.0.0.1:1/nothing", min_size=1)
    with pytest.raises(StoreError) as refused:
        await store.open()
    assert refused.value.retryable
    with pytest.raises(StoreError, match="not open"):
        await store.list_applications()
    await store.close()


@pytest.mark.postgres
async def test_installations_in_other_schemas_of_the_database_are_not_woken(
    two_processes: tuple[PostgresStore, PostgresStore],
):
    first, _ = two_processes
    async with _postgres() as elsewhere:  # another schema of the same database
        stranger = await elsewhere.open_store()
        assert isinstance(stranger, PostgresStore)
        heard_here: asyncio.Queue[str] = asyncio.Queue()
        heard_there: asyncio.Queue[str] = asyncio.Queue()
        await first.listen(heard_here.put_nowait)
        await stranger.listen(heard_there.put_nowait)
        tag = uuid.uuid4().hex
        await first.notify([tag])
        await _hear(heard_here, {tag})
        await asyncio.sleep(0.2)  # real time: a notification, if any, would have arrived
        assert heard_there.empty()


async def test_a_late_consumption_never_takes_a_status_that_landed_since(store: Store):
    """The inbox worker claims two statuses of one workflow; applying the first consumes both,
    then the second's apply finds nothing left and deletes its own id again. A status landed
    in between must not be the one deleted (SQLite reused a deleted rowid: the chaos
    benchmark lost 1-2 % of statuses under load this way)."""
    await store.receive_statuses(
        [
            NewInboxEvent(message_uuid="m-1", status="delivered", due_at_ms=NOW),
            NewInboxEvent(message_uuid="m-1", status="read", due_at_ms=NOW + 1),
        ]
    )
    first, second = await store.claim_due_inbox(now_ms=NOW + 1, limit=10, lease_ms=LEASE)
    for event in (first, second):  # both consumed (no workflow: they go all the same)
        await store.apply(
            message_uuid="no-such", transition=lambda _: None, side=SideWrites(inbox_done=event.id)
        )
    await store.receive_statuses(
        [
            NewInboxEvent(message_uuid="m-2", status="delivered", due_at_ms=NOW + 2),
            NewInboxEvent(message_uuid="m-3", status="delivered", due_at_ms=NOW + 2),
        ]
    )
    # The second apply, once more, as a claim raced by the first would run it.
    await store.apply(
        message_uuid="no-such", transition=lambda _: None, side=SideWrites(inbox_done=second.id)
    )
    landed = await store.claim_due_inbox(now_ms=NOW + 2, limit=10, lease_ms=LEASE)
    assert sorted(event.message_uuid for event in landed) == ["m-2", "m-3"]


async def test_a_claimed_send_says_since_when_it_was_due_not_since_it_was_created(store: Store):
    """Admission control watches how long due sends wait: a send deferred while its provider
    account rests after a 429 waited for the provider, not for this server."""
    [send] = (await create(store, sends=1)).sends
    [job] = await store.claim_due_sends(now_ms=NOW + 5, limit=10, lease_ms=LEASE)
    assert (job.created_at_ms, job.due_at_ms) == (NOW, NOW)
    await store.defer_send(send.message_uuid, next_attempt_at_ms=NOW + 60_000, reason="429")
    assert await store.claim_due_sends(now_ms=NOW + 59_999, limit=10, lease_ms=LEASE) == []
    [job] = await store.claim_due_sends(now_ms=NOW + 60_020, limit=10, lease_ms=LEASE)
    assert (job.created_at_ms, job.due_at_ms) == (NOW, NOW + 60_000)
