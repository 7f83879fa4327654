"""The SQLite store on real files: migrations, group commit, reads."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from opendispatch.errors import DatabaseUnavailable, MigrationError, StoreError
from opendispatch.ids import uuid7
from opendispatch.store.database import DatabaseStore
from opendispatch.store.migrations import load_migrations
from opendispatch.store.named_queries import load_queries, parameter_names
from opendispatch.store.records import (
    Application,
    ApplicationCredentials,
    NewWorkflow,
    Transition,
)
from opendispatch.store.sqlite import SqliteConnector, migrate, sqlite_store

pytestmark = pytest.mark.anyio


def credentials(application_id: str = "app-1", api_key: str = "key-1") -> ApplicationCredentials:
    return ApplicationCredentials(
        application=Application(
            application_id=application_id,
            name="test",
            api_key=api_key,
            status_url="http://127.0.0.1:9/status",
            final_report_url=None,
            created_at_ms=1,
        ),
        api_secret_hash="hmac-sha256$00$00",
        signature_secret="signature",
        public_key_pem="PEM",
    )


def new_workflow(application_id: str = "app-1", created_at_ms: int = 1_700_000_000_000):
    return NewWorkflow(
        dispatch_uuid=uuid7(created_at_ms),
        application_id=application_id,
        template="failover",
        request_json="[]",
        created_at_ms=created_at_ms,
        channels=("sms",),
    )


def first_transition(created_at_ms: int = 1_700_000_000_000) -> Transition:
    return Transition(
        state_json="{}", status="in_progress", due_at_ms=None, updated_at_ms=created_at_ms
    )


async def create(store: DatabaseStore, workflow: NewWorkflow) -> None:
    await store.create_workflow(workflow, first_transition(workflow.created_at_ms))


@pytest.fixture
async def store(tmp_path: Path):
    store = sqlite_store(tmp_path / "store.db")
    await store.open()
    await store.create_application(credentials())
    yield store
    await store.close()


def schema_versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT version FROM schema_migrations")]


def test_migrations_apply_once_in_order(tmp_path: Path):
    path = tmp_path / "m.db"
    known = [migration.version for migration in load_migrations("sqlite")]
    with sqlite3.connect(path, isolation_level=None) as connection:
        assert migrate(connection).versions == known
        again = migrate(connection)
        assert (again.versions, again.version) == ([], known[-1])
    assert schema_versions(path) == known


def _open_and_migrate(path: str) -> None:
    with sqlite3.connect(path, isolation_level=None, timeout=30) as connection:
        migrate(connection)


def test_concurrent_starts_migrate_exactly_once(tmp_path: Path):
    path = str(tmp_path / "race.db")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open_and_migrate, args=(path,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert schema_versions(Path(path)) == [m.version for m in load_migrations("sqlite")]


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path):
    path = tmp_path / "new.db"
    with sqlite3.connect(path, isolation_level=None) as connection:
        migrate(connection)
        connection.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
        with pytest.raises(MigrationError, match="newer"):
            migrate(connection)


async def test_writes_arriving_together_share_one_transaction(store: DatabaseStore):
    connector = store.connector
    assert isinstance(connector, SqliteConnector)
    before_batches, before_operations = connector.group_commit_stats
    await asyncio.gather(*(create(store, new_workflow()) for _ in range(50)))
    batches, operations = connector.group_commit_stats
    assert operations - before_operations == 50
    assert batches - before_batches <= 2  # one batch, or two if the first began early


async def test_a_failing_write_fails_alone(store: DatabaseStore):
    good = [new_workflow() for _ in range(3)]
    # A key already taken: the database itself refuses it (an unknown application is now
    # refused before the database is asked: ApplicationDeleted).
    orphan = dataclasses.replace(new_workflow(), dispatch_uuid=good[0].dispatch_uuid)
    results = await asyncio.gather(
        *(create(store, w) for w in [good[0], orphan, good[1], good[2]]),
        return_exceptions=True,
    )
    assert [type(result) for result in results] == [type(None), StoreError, type(None), type(None)]
    listed = await store.list_workflows("app-1", limit=10)
    assert {w.dispatch_uuid for w in listed} == {w.dispatch_uuid for w in good}


async def test_close_commits_writes_already_submitted(tmp_path: Path):
    path = tmp_path / "durable.db"
    store = sqlite_store(path)
    await store.open()
    await store.create_application(credentials())
    pending = [asyncio.ensure_future(create(store, new_workflow())) for _ in range(20)]
    await asyncio.sleep(0)  # the tasks submit their writes
    await store.close()  # drains what is queued
    await asyncio.sleep(0)  # the tasks see their results
    assert all(task.done() and task.exception() is None for task in pending)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM workflows").fetchone()[0] == 20


async def test_list_is_newest_first_per_application(store: DatabaseStore):
    await store.create_application(credentials("app-2", "key-2"))
    mine = [new_workflow(created_at_ms=1_700_000_000_000 + i) for i in range(5)]
    for workflow in mine:
        await create(store, workflow)
    await create(store, new_workflow("app-2"))
    listed = await store.list_workflows("app-1", limit=3)
    assert [w.dispatch_uuid for w in listed] == [w.dispatch_uuid for w in mine[::-1][:3]]
    rest = await store.list_workflows("app-1", limit=3, before=listed[-1].dispatch_uuid)
    assert [w.dispatch_uuid for w in rest] == [w.dispatch_uuid for w in mine[1::-1]]


async def test_get_is_scoped_to_the_application(store: DatabaseStore):
    await store.create_application(credentials("app-2", "key-2"))
    workflow = new_workflow()
    await create(store, workflow)
    assert (await store.get_workflow("app-1", workflow.dispatch_uuid)) is not None
    assert (await store.get_workflow("app-2", workflow.dispatch_uuid)) is None


async def test_credentials_are_found_by_key_and_by_application(store: DatabaseStore):
    by_key = await store.find_credentials_by_api_key("key-1")
    by_app = await store.find_credentials("app-1")
    assert by_key == by_app == credentials()
    assert await store.find_credentials_by_api_key("nope") is None


async def test_duplicate_api_key_is_refused(store: DatabaseStore):
    with pytest.raises(StoreError):
        await store.create_application(credentials("app-9", "key-1"))


async def test_the_wal_stays_bounded_under_steady_writes(tmp_path: Path) -> None:
    """Checkpoints beside a busy writer never catch up; the WAL must still start over."""
    limit = 1024 * 1024
    store = sqlite_store(tmp_path / "wal.db", wal_limit_bytes=limit, checkpoint_interval_s=0.02)
    await store.open()
    wal = tmp_path / "wal.db-wal"
    credentials = ApplicationCredentials(
        application=Application(
            application_id="app", name="app", api_key="key", status_url="http://x/",
            final_report_url=None, created_at_ms=1,
        ),
        api_secret_hash="h", signature_secret="s", public_key_pem="p",
    )  # fmt: skip
    sizes: list[int] = []

    async def write(n: int) -> None:
        workflow = NewWorkflow(
            dispatch_uuid=uuid7(n),
            application_id="app",
            template="failover",
            request_json="x" * 2000,
            created_at_ms=1,
            channels=("sms",),
        )
        first = Transition(state_json="{}", status="in_progress", due_at_ms=None, updated_at_ms=1)
        await store.create_workflow(workflow, first)
        if n % 50 == 0:
            sizes.append(wal.stat().st_size)

    try:
        await store.create_application(credentials)
        # ~25 MB of WAL pages, written without a pause (as under steady load): without the
        # reset the WAL grows by all of it.
        pending: set[asyncio.Task[None]] = set()
        for n in range(10_000):
            task = asyncio.ensure_future(write(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if len(pending) >= 64:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)
        assert max(sizes) <= 4 * limit, max(sizes)
        assert isinstance(store.connector, SqliteConnector)
        assert store.connector.wal_resets >= 1
    finally:
        await store.close()


async def test_no_write_is_reported_durable_once_the_file_is_deleted(tmp_path: Path) -> None:
    """The check after each commit, not the periodic one (which is set never to run here)."""
    path = tmp_path / "gone.db"
    store = sqlite_store(path, checkpoint_interval_s=3600)
    await store.open()
    try:
        await store.create_application(credentials())
        path.unlink()
        with pytest.raises(DatabaseUnavailable, match="was deleted"):
            await store.create_application(credentials("app-2", "key-2"))
        with pytest.raises(DatabaseUnavailable):
            await store.list_applications()
        assert store.failure == "database deleted"
    finally:
        await store.close()
    assert not path.exists()


async def test_a_missing_database_is_created_only_where_none_was(tmp_path: Path) -> None:
    path = tmp_path / "od.db"
    first = sqlite_store(path)
    await first.open()  # a fresh directory: created, with its trace beside it
    await first.create_application(credentials())
    await first.close()
    assert (tmp_path / "od.db.lock").exists()
    path.unlink()

    with pytest.raises(DatabaseUnavailable, match=r"is missing.*opendispatch db init"):
        await sqlite_store(path).open()
    assert not path.exists()

    again = sqlite_store(path, create=True)
    await again.open()
    try:
        assert await again.list_applications() == []
    finally:
        await again.close()


async def test_db_init_keeps_a_leftover_wal_aside(tmp_path: Path) -> None:
    """SQLite would replay an old WAL onto the new file; it holds the lost database's last
    writes, so it is kept under another name rather than deleted."""
    path, wal, shm = tmp_path / "od.db", tmp_path / "od.db-wal", tmp_path / "od.db-shm"
    wal.write_bytes(b"frames of a lost database")
    shm.write_bytes(b"index")
    store = sqlite_store(path, create=True)
    await store.open()
    await store.close()
    assert (tmp_path / "od.db-wal.orphaned").read_bytes() == b"frames of a lost database"
    assert not shm.exists()


def test_a_filtered_list_walks_an_index_and_never_sorts(tmp_path: Path):
    """A page of a rare status is read along workflows_by_status, any other list along
    workflows_by_application, in the order of the page: no temporary sort that would read
    every match first (and no scan of the table)."""
    path = tmp_path / "plans.db"
    with sqlite3.connect(path) as connection:
        migrate(connection)
    queries = load_queries("opendispatch.store.sql", "sqlite.sql")
    expected = {
        "list_workflows": "workflows_by_application",
        "list_workflows_of_status": "workflows_by_status",
    }
    with sqlite3.connect(path) as connection:
        for name, index in expected.items():
            parameters = dict.fromkeys(parameter_names(queries[name]), "x")
            plan = " | ".join(
                row[3]
                for row in connection.execute(f"EXPLAIN QUERY PLAN {queries[name]}", parameters)
            )
            assert f"USING INDEX {index} (" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_tails_reads_walk_an_index_from_their_position(tmp_path: Path):
    """`opendispatch tail` reads a few times a second, beside the server: each read walks
    one index from where the last one stopped (the workflows' and the webhooks' primary keys,
    webhooks_failed), with every application or one, and never sorts or scans a table."""
    path = tmp_path / "plans.db"
    with sqlite3.connect(path) as connection:
        migrate(connection)
    queries = load_queries("opendispatch.store.sql", "sqlite.sql")
    expected = {
        "activity_workflows": "USING INDEX sqlite_autoindex_workflows_1 (dispatch_uuid>?)",
        "activity_webhooks": "USING INTEGER PRIMARY KEY (rowid>?)",
        "activity_failed_webhooks": "USING INDEX webhooks_failed (failed_at_ms>?)",
    }
    with sqlite3.connect(path) as connection:
        for name, walk in expected.items():
            for application_id in ("x", None):
                parameters = dict.fromkeys(parameter_names(queries[name]), "x")
                parameters["application_id"] = application_id
                plan = " | ".join(
                    row[3]
                    for row in connection.execute(f"EXPLAIN QUERY PLAN {queries[name]}", parameters)
                )
                assert plan.startswith(
                    f"SEARCH {'workflows' if 'workflows' in name else 'h'} {walk}"
                ), plan
                assert "SCAN" not in plan, plan
                assert "TEMP B-TREE" not in plan, plan
