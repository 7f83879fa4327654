"""The embedded default store: one SQLite file in WAL mode.

Writes are where throughput is won, and every 202 waits for one, so writes are batched
(group commit): `_GroupCommit` queues the write operations of many concurrent requests and
runs them in one `BEGIN IMMEDIATE ... COMMIT`, one fsync for all. `synchronous=FULL` makes
that COMMIT durable (the WAL is fsynced) before any caller's future resolves, so no 202 is
ever answered for a workflow that is not on disk.

Measured on the project's 2-core target, with the same handlers: one fsync per request caps
the server at a few thousand requests/s; a writer thread doing the batching served ~21,500/s
(GIL hand-offs per request); running the statements on the event loop and only the COMMIT on
a dedicated thread, one batch in flight while the next gathers, serves the most, and keeps
the loop busy parsing while the disk syncs. WAL checkpoints run on their own thread.

Reads use a second connection: in WAL mode a reader never waits for the writer, and it sees
every committed write, including those of other processes (`opendispatch apps create`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from opendispatch.errors import MigrationError, StoreError
from opendispatch.store.migrations import load_migrations
from opendispatch.store.queries import load_queries
from opendispatch.store.records import (
    Application,
    ApplicationCredentials,
    NewWorkflow,
    WorkflowRecord,
)
from opendispatch.timefmt import now_ms

__all__ = ["SqliteStore", "sqlite_path_from_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOperation = Callable[[sqlite3.Connection], T]

# Every canonical UUID string sorts before "g" (they are hex digits and hyphens), so this
# stands for "no upper bound" in `list_workflows` without a second query.
_AFTER_EVERY_UUID = "g"

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # FULL: the WAL is fsynced at every COMMIT, so a committed workflow survives power loss,
    # not only a process crash. Group commit keeps this affordable.
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA cache_size = -65536",
    "PRAGMA temp_store = MEMORY",
)


def sqlite_path_from_url(url: str) -> Path:
    """`sqlite:///rel.db` -> `rel.db`, `sqlite:////abs/x.db` -> `/abs/x.db`; a bare path as is."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if url.startswith("sqlite://"):
        raise StoreError(f"unsupported SQLite URL {url!r}: use sqlite:///relative/path.db")
    return Path(url)


class _GroupCommit:
    """Runs queued write operations together: one transaction, one fsync, per batch.

    The statements run on the event loop thread (they only touch SQLite's page cache); the
    COMMIT, whose fsync is most of a batch's wall time, runs on one dedicated thread, with the
    GIL released, while the loop goes on parsing and validating the next requests. Only one
    batch is in flight at a time; whatever arrives meanwhile forms the next batch, so batches
    grow with load instead of fsyncs multiplying.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._pending: list[tuple[WriteOperation[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._in_flight: asyncio.Future[None] | None = None
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        self.batches = 0
        self.operations = 0

    def submit(self, operation: WriteOperation[T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((operation, future))
        self._schedule(loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled and self._in_flight is None:
            self._scheduled = True
            loop.call_soon(self._start_batch)

    def _start_batch(self) -> None:
        self._scheduled = False
        batch = self._take_pending()
        if not batch:
            return
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            results = [operation(connection) for operation, _ in batch]
        except sqlite3.Error:
            self._rollback()
            self._run_one_by_one(batch)
            self._schedule(asyncio.get_running_loop())
            return
        loop = asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(self._committer, connection.commit)
        self._in_flight.add_done_callback(lambda done: self._finish_batch(done, batch, results))

    def _finish_batch(
        self,
        done: asyncio.Future[Any],
        batch: list[tuple[WriteOperation[Any], asyncio.Future[Any]]],
        results: list[Any],
    ) -> None:
        self._in_flight = None
        error = done.exception()
        if error is None:
            self.batches += 1
            self.operations += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        else:
            self._rollback()
            for _, future in batch:
                if not future.done():
                    future.set_exception(_store_error(error))
        if self._pending:
            self._schedule(asyncio.get_running_loop())

    def _run_one_by_one(self, batch: list[tuple[WriteOperation[Any], asyncio.Future[Any]]]) -> None:
        """After a failed batch: each operation alone, so one bad write fails only itself."""
        connection = self._connection
        for operation, future in batch:
            try:
                connection.execute("BEGIN IMMEDIATE")
                result = operation(connection)
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                future.set_exception(_store_error(exc))
            else:
                future.set_result(result)

    def _take_pending(self) -> list[tuple[WriteOperation[Any], asyncio.Future[Any]]]:
        batch = [item for item in self._pending if not item[1].cancelled()]
        self._pending = []
        return batch

    def _rollback(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    async def drain(self) -> None:
        """At close: let the batch in flight finish, commit what is queued, stop the thread."""
        while self._in_flight is not None or self._pending:
            if self._in_flight is not None:
                await asyncio.wait([self._in_flight])
            else:
                self._schedule(asyncio.get_running_loop())
            await asyncio.sleep(0)  # lets `_finish_batch` / `_start_batch` run
        self._committer.shutdown(wait=True)


class _Checkpointer:
    """Copies the WAL back into the database file from its own thread and connection.

    SQLite's automatic checkpoint runs inside whichever COMMIT crosses the threshold, so that
    batch (and every request waiting on it) would also wait for the database file's fsync:
    measured as 30-145 ms stalls. PASSIVE checkpoints run beside the writer instead.
    """

    def __init__(self, path: Path, interval_s: float = 0.5) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout = 5000")
            while not self._stop.wait(self._interval_s):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # a busy database is retried next round
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            connection.close()


def _store_error(exc: BaseException) -> StoreError:
    retryable = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
    return StoreError(f"write failed: {exc}", retryable=retryable)


class SqliteStore:
    """`Store` on one SQLite file. One process serves a file at a time."""

    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._queries = load_queries("sqlite")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._group_commit: _GroupCommit | None = None
        self._checkpointer: _Checkpointer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._writer = self._connect()
        migrate(self._writer)
        self._writer.execute("PRAGMA wal_autocheckpoint = 0")  # see _Checkpointer
        self._reader = self._connect()
        self._group_commit = _GroupCommit(self._writer)
        self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.start()

    async def close(self) -> None:
        if self._group_commit is not None:
            await self._group_commit.drain()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._writer = self._reader = None
        self._group_commit = None

    def _connect(self) -> sqlite3.Connection:
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"directory {self.path.parent} does not exist")
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in _PRAGMAS:
                connection.execute(pragma)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return connection

    @property
    def _conn(self) -> sqlite3.Connection:
        """The read connection: in WAL mode it never waits for the writer."""
        if self._reader is None:
            raise StoreError("the store is not open")
        return self._reader

    async def _write(self, operation: WriteOperation[T]) -> T:
        if self._group_commit is None:
            raise StoreError("the store is not open")
        return await self._group_commit.submit(operation)

    def _read_one(self, query: str, parameters: tuple[Any, ...]) -> Any:
        try:
            return self._conn.execute(self._queries[query], parameters).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{query} failed: {exc}", retryable=True) from exc

    def _read_all(self, query: str, parameters: tuple[Any, ...]) -> list[Any]:
        try:
            return self._conn.execute(self._queries[query], parameters).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{query} failed: {exc}", retryable=True) from exc

    # -- applications ----------------------------------------------------------------------

    async def create_application(self, credentials: ApplicationCredentials) -> None:
        app = credentials.application
        insert_account = self._queries["insert_account"]
        insert_application = self._queries["insert_application"]

        def operation(connection: sqlite3.Connection) -> None:
            connection.execute(
                insert_account,
                (
                    app.api_key,
                    credentials.api_secret_hash,
                    credentials.signature_secret,
                    app.created_at_ms,
                ),
            )
            connection.execute(
                insert_application,
                (
                    app.application_id,
                    app.api_key,
                    app.name,
                    app.status_url,
                    app.final_report_url,
                    credentials.public_key_pem,
                    app.created_at_ms,
                ),
            )

        await self._write(operation)

    async def list_applications(self) -> list[Application]:
        return [_application(row) for row in self._read_all("list_applications", ())]

    async def find_credentials_by_api_key(self, api_key: str) -> ApplicationCredentials | None:
        row = self._read_one("credentials_by_api_key", (api_key,))
        return None if row is None else _credentials(row)

    async def find_credentials(self, application_id: str) -> ApplicationCredentials | None:
        row = self._read_one("credentials_by_application_id", (application_id,))
        return None if row is None else _credentials(row)

    # -- workflows -------------------------------------------------------------------------

    async def create_workflow(self, workflow: NewWorkflow) -> None:
        insert = self._queries["insert_workflow"]
        parameters = (
            workflow.dispatch_uuid,
            workflow.application_id,
            workflow.template,
            "accepted",
            workflow.request_json,
            workflow.created_at_ms,
            workflow.created_at_ms,
        )
        await self._write(lambda connection: connection.execute(insert, parameters))

    async def get_workflow(self, application_id: str, dispatch_uuid: str) -> WorkflowRecord | None:
        row = self._read_one("get_workflow", (dispatch_uuid, application_id))
        return None if row is None else _workflow(row)

    async def list_workflows(
        self, application_id: str, *, limit: int, before: str | None = None
    ) -> list[WorkflowRecord]:
        rows = self._read_all(
            "list_workflows", (application_id, before or _AFTER_EVERY_UUID, limit)
        )
        return [_workflow(row) for row in rows]

    # -- introspection (benchmarks, tests) -------------------------------------------------

    @property
    def group_commit_stats(self) -> tuple[int, int]:
        """(transactions committed, operations in them): operations / batches = batch size."""
        if self._group_commit is None:
            return (0, 0)
        return (self._group_commit.batches, self._group_commit.operations)


def migrate(connection: sqlite3.Connection) -> list[int]:
    """Apply the missing migrations; returns the versions applied. Safe across processes."""
    migrations = load_migrations("sqlite")
    try:
        connection.execute("BEGIN IMMEDIATE")  # the write lock serialises concurrent starts
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
        )
        applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
        newest_known = migrations[-1].version if migrations else 0
        if applied and max(applied) > newest_known:
            raise MigrationError(
                f"the database is at schema version {max(applied)}, newer than this "
                f"OpenDispatch knows ({newest_known}); upgrade OpenDispatch"
            )
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            for statement in _statements(migration.sql):
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
                (migration.version, migration.name, now_ms()),
            )
            done.append(migration.version)
        connection.execute("COMMIT")
    except BaseException as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise MigrationError(f"migrating the SQLite schema failed: {exc}") from exc
        raise
    if done:
        log.info("applied SQLite migrations %s", done)
    return done


def _statements(script: str) -> list[str]:
    """Split a script into statements (`executescript` would COMMIT our transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        raise MigrationError(f"unterminated statement in migration: {current.strip()[:80]}")
    return statements


def _application(row: tuple[Any, ...]) -> Application:
    return Application(
        application_id=row[0],
        name=row[1],
        api_key=row[2],
        status_url=row[3],
        final_report_url=row[4],
        created_at_ms=row[5],
    )


def _credentials(row: tuple[Any, ...]) -> ApplicationCredentials:
    return ApplicationCredentials(
        application=_application(row[:6]),
        api_secret_hash=row[6],
        signature_secret=row[7],
        public_key_pem=row[8],
    )


def _workflow(row: tuple[Any, ...]) -> WorkflowRecord:
    return WorkflowRecord(
        dispatch_uuid=row[0],
        application_id=row[1],
        template=row[2],
        status=row[3],
        request_json=row[4],
        created_at_ms=row[5],
        updated_at_ms=row[6],
    )
