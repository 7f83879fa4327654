"""`SqliteStore`: the storage protocol on one SQLite file (see `batching` for how writes go)."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, TypeVar

from opendispatch.errors import StoreError
from opendispatch.store.protocol import TransitionFunction
from opendispatch.store.queries import load_queries
from opendispatch.store.records import (
    NO_SIDE_WRITES,
    Application,
    ApplicationCredentials,
    LoadedWorkflow,
    MessageOwner,
    NewWorkflow,
    SideWrites,
    Transition,
    WorkflowRecord,
)
from opendispatch.store.sqlite.batching import Checkpointer, GroupCommit, WriteOperation
from opendispatch.store.sqlite.migrate import migrate
from opendispatch.store.sqlite.outbox import SqliteOutbox, named_rows

__all__ = ["SqliteStore", "sqlite_path_from_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every canonical UUID string sorts before "g" (they are hex digits and hyphens), so this
# stands for "no upper bound" in `list_workflows` without a second query.
_AFTER_EVERY_UUID = "g"

_WAL_LIMIT_BYTES = 64 * 1024 * 1024

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # FULL: the WAL is fsynced at every COMMIT, so a committed workflow survives power loss,
    # not only a process crash. Group commit keeps this affordable.
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    # 8 MiB per connection: the working set (recent rows, index tops) fits, the operating
    # system caches the rest of the file, and memory does not grow with the database.
    "PRAGMA cache_size = -8192",
    "PRAGMA temp_store = MEMORY",
)


def sqlite_path_from_url(url: str) -> Path:
    """`sqlite:///rel.db` -> `rel.db`, `sqlite:////abs/x.db` -> `/abs/x.db`; a bare path as is."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if url.startswith("sqlite://"):
        raise StoreError(f"unsupported SQLite URL {url!r}: use sqlite:///relative/path.db")
    return Path(url)


class SqliteStore(SqliteOutbox):
    """`Store` on one SQLite file. One process serves a file at a time."""

    dialect = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        serving: bool = False,
        wal_limit_bytes: int = _WAL_LIMIT_BYTES,
        checkpoint_interval_s: float = 0.5,
    ) -> None:
        """`serving`: this process runs the workers, so it must be the file's only server.
        `wal_limit_bytes`: how large the WAL may grow before it is started over."""
        self.path = Path(path)
        self._wal_limit_bytes = wal_limit_bytes
        self._checkpoint_interval_s = checkpoint_interval_s
        self._serving = serving
        self._owner_lock: int | None = None
        self._queries = load_queries("sqlite")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._group_commit: GroupCommit | None = None
        self._checkpointer: Checkpointer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._serving:
            self._owner_lock = _take_owner_lock(self.path)
        self._writer = self._connect()
        migrate(self._writer)
        self._writer.execute("PRAGMA wal_autocheckpoint = 0")  # see Checkpointer
        # When the WAL starts over, its file is cut back to this (see Checkpointer).
        self._writer.execute(f"PRAGMA journal_size_limit = {int(self._wal_limit_bytes)}")
        self._reader = self._connect()
        self._checkpointer = Checkpointer(
            self.path, self._checkpoint_interval_s, wal_limit_bytes=self._wal_limit_bytes
        )
        self._group_commit = GroupCommit(
            self._writer, wal_reset_wanted=self._checkpointer.wal_reset_wanted
        )
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
        if self._owner_lock is not None:
            os.close(self._owner_lock)  # releases the lock
            self._owner_lock = None

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

    def _read_named(self, query: str, parameters: Any) -> list[dict[str, Any]]:
        try:
            return list(named_rows(self._conn.execute(self._queries[query], parameters)))
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

    async def create_workflow(self, workflow: NewWorkflow, transition: Transition) -> None:
        insert = self._queries["insert_workflow"]
        queries = self._queries

        def operation(connection: sqlite3.Connection) -> None:
            connection.execute(
                insert,
                (
                    workflow.dispatch_uuid,
                    workflow.application_id,
                    workflow.template,
                    transition.status,
                    workflow.request_json,
                    workflow.created_at_ms,
                    transition.updated_at_ms,
                    transition.state_json,
                    transition.due_at_ms,
                ),
            )
            _write_effects(connection, queries, transition)

        await self._write(operation)

    async def apply(
        self,
        *,
        transition: TransitionFunction,
        dispatch_uuid: str | None = None,
        message_uuid: str | None = None,
        side: SideWrites = NO_SIDE_WRITES,
    ) -> Transition | None:
        """Load a workflow (by id, or by one of its messages), transition it, write it: one
        transaction, so the event, its effects and `side` commit together or not at all."""
        queries = self._queries

        def operation(connection: sqlite3.Connection) -> Transition | None:
            target = dispatch_uuid
            if target is None:
                found = connection.execute(queries["workflow_of_message"], (message_uuid,))
                row = found.fetchone()
                target = None if row is None else row[0]
            result = None
            if target is not None:
                row = connection.execute(queries["load_workflow"], (target,)).fetchone()
                if row is not None:
                    result = transition(_loaded(row))
            if result is not None:
                connection.execute(
                    queries["update_workflow_state"],
                    (
                        result.state_json,
                        result.status,
                        result.due_at_ms,
                        result.updated_at_ms,
                        target,
                    ),
                )
                _write_effects(connection, queries, result)
            _write_side(connection, queries, side)
            return result

        return await self._write(operation)

    async def unstarted_workflows(self, limit: int) -> list[str]:
        return [row[0] for row in self._read_all("unstarted_workflows", (limit,))]

    async def message_owner(self, message_uuid: str) -> MessageOwner | None:
        row = self._read_one("message_owner", (message_uuid,))
        if row is None:
            return None
        return MessageOwner(message_uuid=row[0], dispatch_uuid=row[1], application_id=row[2])

    async def load_workflow(self, dispatch_uuid: str) -> LoadedWorkflow | None:
        row = self._read_one("load_workflow", (dispatch_uuid,))
        return None if row is None else _loaded(row)

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
    def wal_resets(self) -> int:
        """How often the WAL was started over because it grew past its limit."""
        return 0 if self._group_commit is None else self._group_commit.wal_resets

    @property
    def group_commit_stats(self) -> tuple[int, int]:
        """(transactions committed, operations in them): operations / batches = batch size."""
        if self._group_commit is None:
            return (0, 0)
        return (self._group_commit.batches, self._group_commit.operations)


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


def _take_owner_lock(path: Path) -> int:
    """One serving process per file: its workers own every queue (and, at start, release the
    claims a dead predecessor left). The kernel drops the lock when the process dies, even by
    SIGKILL, so a restart is never blocked by a crash."""
    descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StoreError(
            f"another OpenDispatch server is already serving {path}: an SQLite database is "
            "served by one process (use PostgreSQL to run several)"
        ) from None
    return descriptor


def _loaded(row: tuple[Any, ...]) -> LoadedWorkflow:
    return LoadedWorkflow(
        record=_workflow(row[:7]),
        state_json=row[7],
        api_key=row[8],
        status_url=row[9],
        final_report_url=row[10],
    )


def _write_effects(
    connection: sqlite3.Connection, queries: dict[str, str], transition: Transition
) -> None:
    if transition.sends:
        connection.executemany(
            queries["insert_send"],
            [
                (
                    send.message_uuid,
                    send.dispatch_uuid,
                    send.step,
                    send.channel,
                    send.provider,
                    send.payload_json,
                    send.next_attempt_at_ms,
                    transition.updated_at_ms,
                )
                for send in transition.sends
            ],
        )
    for message_uuid in transition.cancel_sends:
        connection.execute(queries["cancel_send"], (message_uuid,))
    if transition.webhooks:
        connection.executemany(
            queries["insert_webhook"],
            [
                (
                    webhook.event_id,
                    webhook.dispatch_uuid,
                    webhook.application_id,
                    webhook.kind,
                    webhook.message_uuid,
                    webhook.status,
                    webhook.url,
                    webhook.payload,
                    webhook.next_attempt_at_ms,
                    transition.updated_at_ms,
                )
                for webhook in transition.webhooks
            ],
        )


def _write_side(connection: sqlite3.Connection, queries: dict[str, str], side: SideWrites) -> None:
    done = side.complete_send
    if done is not None:
        connection.execute(
            queries["complete_send"],
            (done.send_state, done.provider_message_id, done.error, done.message_uuid),
        )
    if side.inbox_done is not None:
        connection.execute(queries["delete_inbox"], (side.inbox_done,))
    if side.schedule:
        connection.executemany(
            queries["insert_inbox"],
            [
                (
                    event.message_uuid,
                    event.status,
                    event.error_code,
                    event.error_reason,
                    event.price,
                    event.due_at_ms,
                )
                for event in side.schedule
            ],
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
