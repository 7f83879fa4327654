"""`SqliteConnector`: the store's named queries on one SQLite file, one serving process.

Reads run on their own connection (in WAL mode a reader never waits for the writer, and it
sees every committed write, including other processes' such as `opendispatch apps create`).
Writes go through the group commit (see `batching`): many concurrent callers' statements in
one transaction, one fsync, and no answer before it is durable.

The file itself is watched (see `guard`): a database deleted, replaced or damaged under the
server fails the store loudly instead of answering 202 into the void, and a missing file is
created only where no database was before. When writes pause, and at a clean stop, the WAL is
checkpointed and truncated to nothing.

Named queries may be short scripts (several statements, run in order in the same
transaction); a parameter that is a list is bound as a JSON array, read with `json_each`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from opendispatch.errors import DatabaseUnavailable, MigrationError, StoreError
from opendispatch.store.connector import NO_PARAMETERS, Parameters, Row, Statement
from opendispatch.store.migrations import MigrationObserver, Upgrade
from opendispatch.store.named_queries import load_queries
from opendispatch.store.sqlite.batching import GroupCommit
from opendispatch.store.sqlite.checkpoint import Checkpointer
from opendispatch.store.sqlite.guard import (
    FileGuard,
    check_directory,
    expect_database,
    is_damage,
    unwritable_directory,
)
from opendispatch.store.sqlite.migrate import migrate
from opendispatch.store.sqlite.wake import WakeSocket, wake

__all__ = ["SqliteConnector", "SqliteSession", "sqlite_path_from_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_WAL_LIMIT_BYTES = 64 * 1024 * 1024
_IDLE_CHECKPOINT_S = 2.0

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


def _unobserved(seconds: float) -> None:
    pass


def _scripts(queries: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Each query as its statements (most have one)."""
    split: dict[str, tuple[str, ...]] = {}
    for name, sql in queries.items():
        statements, current = [], ""
        for line in sql.splitlines(keepends=True):
            current += line
            if sqlite3.complete_statement(current):
                statements.append(current.strip())
                current = ""
        if current.strip():
            statements.append(current.strip())
        split[name] = tuple(statements)
    return split


_JSON_PARAMETER = re.compile(r"json_each\(:(\w+)\)")


def _json_parameters(scripts: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    """The parameters each query reads with json_each: only those need converting (measured:
    checking every value of every row cost 3 % of the server under load)."""
    return {
        name: frozenset(_JSON_PARAMETER.findall(" ".join(statements)))
        for name, statements in scripts.items()
    }


def _as_json(parameters: Parameters, names: frozenset[str]) -> Parameters:
    """Lists become JSON arrays (the queries read them with json_each)."""
    if not names:
        return parameters
    bound = dict(parameters)
    for name in names:
        value = bound.get(name)
        if value is not None and not isinstance(value, str):
            bound[name] = json.dumps(list(value))
    return bound


def named_rows(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """Rows by column name, as the record mappers want them."""
    names = [column[0] for column in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


class SqliteSession:
    """Named queries on the writer connection, inside one group-committed transaction (what
    a write operation gets: it runs synchronously, on the event loop)."""

    __slots__ = ("_connection", "_json", "_scripts")

    def __init__(
        self,
        connection: sqlite3.Connection,
        scripts: dict[str, tuple[str, ...]],
        json_parameters: dict[str, frozenset[str]],
    ):
        self._connection = connection
        self._scripts = scripts
        self._json = json_parameters

    def execute(self, query: str, parameters: Parameters = NO_PARAMETERS) -> int:
        bound = _as_json(parameters, self._json[query])
        changed = 0
        for statement in self._scripts[query]:
            changed = self._connection.execute(statement, bound).rowcount
        return changed

    def execute_many(self, query: str, rows: Sequence[Parameters]) -> None:
        if rows:
            (statement,) = self._scripts[query]
            names = self._json[query]
            self._connection.executemany(
                statement, [_as_json(row, names) for row in rows] if names else rows
            )

    def fetch_all(self, query: str, parameters: Parameters = NO_PARAMETERS) -> list[Row]:
        (statement,) = self._scripts[query]
        bound = _as_json(parameters, self._json[query])
        return list(named_rows(self._connection.execute(statement, bound)))

    def fetch_one(self, query: str, parameters: Parameters = NO_PARAMETERS) -> Row | None:
        rows = self.fetch_all(query, parameters)
        return rows[0] if rows else None


class SqliteConnector:
    """One SQLite file. `serving`: this process runs the workers, so it must be the file's
    only server (an exclusive lock on `<file>.lock`, released by the kernel if it dies).
    `create`: create the file even where a database was before (`opendispatch db init`; see
    `guard.expect_database`)."""

    dialect = "sqlite"
    sole_owner = True
    lease_owner = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        serving: bool = False,
        extra_queries: Iterable[tuple[str, str]] = (),
        wal_limit_bytes: int = _WAL_LIMIT_BYTES,
        checkpoint_interval_s: float = 0.5,
        idle_checkpoint_s: float = _IDLE_CHECKPOINT_S,
        create: bool = False,
    ) -> None:
        """`extra_queries`: (package, file) of more named queries (a write strategy's).
        `idle_checkpoint_s`: after this long without a write, the WAL is truncated."""
        self.path = Path(path)
        self._serving = serving
        self._create = create
        self._guard = FileGuard(self.path)
        self._idle_checkpoint_s = idle_checkpoint_s
        queries = load_queries("opendispatch.store.sql", "sqlite.sql")
        for package, file_name in extra_queries:
            queries |= load_queries(package, file_name)
        self.queries = queries
        self._scripts = _scripts(queries)
        self._json = _json_parameters(self._scripts)
        self._wal_limit_bytes = wal_limit_bytes
        self._checkpoint_interval_s = checkpoint_interval_s
        self._owner_lock: int | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._group_commit: GroupCommit | None = None
        self._checkpointer: Checkpointer | None = None
        self._upgrade: Upgrade | None = None
        self.observe_commit: Callable[[float], None] = _unobserved
        # Long reads (`fetch_one_aside`): their own connection, on their own thread.
        self._aside: ThreadPoolExecutor | None = None
        self._aside_reader: sqlite3.Connection | None = None
        self._wake: WakeSocket | None = None
        # Told as each migration of `open` starts and ends (`opendispatch db upgrade`).
        self.observe_migrations: MigrationObserver | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        creating = self._may_create()
        if self._serving:
            self._owner_lock = _take_owner_lock(self.path)
        elif creating:
            _leave_trace(self.path)
        self._writer = self._connect(may_create=creating)
        self._guard.remember()
        try:
            self._upgrade = migrate(self._writer, self.observe_migrations)
        except MigrationError as exc:
            if is_damage(exc.__cause__ or exc):
                raise self._damaged_at_start(exc.__cause__ or exc) from exc
            raise
        self._writer.execute("PRAGMA wal_autocheckpoint = 0")  # see Checkpointer
        # When the WAL starts over, its file is cut back to this (see Checkpointer).
        self._writer.execute(f"PRAGMA journal_size_limit = {int(self._wal_limit_bytes)}")
        self._reader = self._connect()
        self._checkpointer = Checkpointer(
            self.path,
            self._checkpoint_interval_s,
            wal_limit_bytes=self._wal_limit_bytes,
            guard=self._guard,
            idle_s=self._idle_checkpoint_s,
        )
        self._group_commit = GroupCommit(
            self._writer,
            wal_reset_wanted=self._checkpointer.wal_reset_wanted,
            guard=self._guard,
            observe_commit=lambda seconds: self.observe_commit(seconds),
        )
        self._checkpointer.watch_writes(
            lambda: self._group_commit.batches if self._group_commit else 0,
            self._group_commit.truncate_wal_when_idle,
        )
        self._checkpointer.start()

    async def close(self) -> None:
        if self._aside is not None:
            await asyncio.to_thread(self._aside.shutdown)  # a long read under way finishes
            self._aside = None
        if self._wake is not None:
            self._wake.close()
            self._wake = None
        if self._group_commit is not None:
            await self._group_commit.drain()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._writer is not None and self._guard.failure is None:
            # A clean stop leaves no WAL behind (SQLite also removes it when the last
            # connection closes, unless another process still has the file open).
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("could not checkpoint the WAL at stop: %s", exc)
        for connection in (self._aside_reader, self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._writer = self._reader = self._aside_reader = None
        self._group_commit = None
        if self._owner_lock is not None:
            os.close(self._owner_lock)  # releases the lock
            self._owner_lock = None

    def _may_create(self) -> bool:
        check_directory(self.path)
        return expect_database(self.path, create=self._create)

    def _connect(self, *, may_create: bool = False) -> sqlite3.Connection:
        """Only the first connection, and only when `expect_database` allowed it, may create
        the file: any other would make an empty database where one has just vanished."""
        try:
            connection = sqlite3.connect(
                _file_uri(self.path, "rwc" if may_create else "rw"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            for pragma in _PRAGMAS:
                connection.execute(pragma)
        except sqlite3.Error as exc:
            if is_damage(exc):
                raise self._damaged_at_start(exc) from exc
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return connection

    def _damaged_at_start(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"the SQLite database {self.path} is damaged ({exc}): restore it from a backup, "
            "or move it aside and run `opendispatch db init` to start over with an empty one"
        )

    @property
    def upgrade(self) -> Upgrade | None:
        return self._upgrade

    @property
    def failure(self) -> str | None:
        """Why the store has failed (the file deleted, replaced or damaged), if it has."""
        return self._guard.reason

    # -- reads: their own connection, never waiting for the writer -------------------------

    def _read(
        self, query: str, parameters: Parameters, reader: sqlite3.Connection | None = None
    ) -> list[Row]:
        if self._reader is None:
            raise StoreError("the store is not open")
        if self._guard.failure is not None:
            raise DatabaseUnavailable(self._guard.failure)
        try:
            (statement,) = self._scripts[query]
            cursor = (reader or self._reader).execute(
                statement, _as_json(parameters, self._json[query])
            )
            return list(named_rows(cursor))
        except sqlite3.Error as exc:
            if is_damage(exc):
                raise self._guard.damaged(exc) from exc
            raise StoreError(f"{query} failed: {exc}", retryable=True) from exc

    async def fetch_one(self, query: str, parameters: Parameters = NO_PARAMETERS) -> Row | None:
        rows = self._read(query, parameters)
        return rows[0] if rows else None

    async def fetch_all(self, query: str, parameters: Parameters = NO_PARAMETERS) -> list[Row]:
        return self._read(query, parameters)

    async def fetch_one_aside(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> Row | None:
        """A read that may walk many rows (the metrics' counts), kept off the event loop:
        reads run on the loop, and counting a million index entries takes ~50 ms, which
        every request would wait for. Here it runs on a thread of its own with a connection
        of its own (SQLite lets go of the GIL while it steps)."""
        if self._reader is None:
            raise StoreError("the store is not open")
        if self._aside is None:
            self._aside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-aside")
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._aside, self._read_aside, query, parameters)
        return rows[0] if rows else None

    async def fetch_all_aside(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> list[Row]:
        """`fetch_one_aside` for reads that return rows (the dashboard's lists and counts),
        on the same thread and connection, one at a time."""
        if self._reader is None:
            raise StoreError("the store is not open")
        if self._aside is None:
            self._aside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-aside")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._aside, self._read_aside, query, parameters)

    def _read_aside(self, query: str, parameters: Parameters) -> list[Row]:
        """On the aside thread, the only one to use its connection."""
        if self._aside_reader is None:
            self._aside_reader = self._connect()
        return self._read(query, parameters, self._aside_reader)

    # -- writes: group committed -----------------------------------------------------------

    async def write(self, operation: Callable[[SqliteSession], T]) -> T:
        """Run `operation` in the next group-committed transaction; its result once durable."""
        if self._group_commit is None:
            raise StoreError("the store is not open")
        if self._guard.failure is not None:
            raise DatabaseUnavailable(self._guard.failure)
        scripts, json_parameters = self._scripts, self._json

        def wrapped(connection: sqlite3.Connection) -> T:
            return operation(SqliteSession(connection, scripts, json_parameters))

        return await self._group_commit.submit(wrapped)

    async def execute(self, query: str, parameters: Parameters = NO_PARAMETERS) -> int:
        return await self.write(lambda session: session.execute(query, parameters))

    async def execute_returning(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> list[Row]:
        return await self.write(lambda session: session.fetch_all(query, parameters))

    async def execute_many(self, query: str, rows: Sequence[Parameters]) -> None:
        if rows:
            await self.write(lambda session: session.execute_many(query, rows))

    async def execute_many_returning(self, query: str, rows: Sequence[Parameters]) -> list[Row]:
        def operation(session: SqliteSession) -> list[Row]:
            return [found for row in rows for found in session.fetch_all(query, row)]

        return await self.write(operation) if rows else []

    def add_queries(self, package: str, file_name: str) -> None:
        added = load_queries(package, file_name)
        self.queries |= added
        self._scripts |= _scripts(added)
        self._json = _json_parameters(self._scripts)

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        def operation(session: SqliteSession) -> list[int]:
            changed = []
            for statement in statements:
                if statement.rows is not None:
                    session.execute_many(statement.query, statement.rows)
                    changed.append(len(statement.rows))
                else:
                    changed.append(session.execute(statement.query, statement.parameters))
            return changed

        return await self.write(operation)

    # -- one process serves the file; the commands beside it wake it (see `wake`) ----------

    async def notify(self, payloads: Iterable[str]) -> None:
        """From a command (`opendispatch send`...): wake the serving process. The serving
        process itself has nobody else to tell."""
        if not self._serving:
            wake(self.path, payloads)

    async def listen(self, callback: Callable[[str], None]) -> bool:
        """The serving process hears the commands' `notify`; False if it cannot (and a
        process that does not serve the file hears nothing)."""
        if not self._serving:
            return False
        if self._wake is not None:
            raise StoreError("this store is already listening")
        self._wake = WakeSocket(self.path, callback)
        return self._wake.open()

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


def _leave_trace(path: Path) -> None:
    """`<file>.lock`, which `serve` also takes: it tells a later start that a database was
    here, when a command other than `serve` created it (see `guard`)."""
    try:
        Path(f"{path}.lock").touch(mode=0o600)
    except OSError as exc:
        raise unwritable_directory(path, exc) from exc


def _file_uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path))}?mode={mode}"


def _take_owner_lock(path: Path) -> int:
    """One serving process per file: its workers own every queue (and, at start, release the
    claims a dead predecessor left). The kernel drops the lock when the process dies, even by
    SIGKILL, so a restart is never blocked by a crash."""
    try:
        descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise unwritable_directory(path, exc) from exc
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StoreError(
            f"another OpenDispatch server is already serving {path}: stop it first, or "
            "choose another --database (an SQLite database is served by one process; use "
            "PostgreSQL to run several)"
        ) from None
    return descriptor
