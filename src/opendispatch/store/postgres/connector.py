"""`PostgresConnector`: the store's named queries on PostgreSQL, through an asyncpg pool.

Any number of `opendispatch serve` processes, on any number of hosts, share the tables (see
`sql/postgres.sql` for what that asks of the queries). Here:

- **Named parameters.** The queries say `:name`; asyncpg takes `$n`. Each query is rewritten
  once when loaded (`named_queries.positional`), and its parameters are bound by name.
- **Many rows, one statement.** `execute_many` binds each column of its rows as an array; the
  query unnests them and writes every row at once.
- **Migrations run once.** `open()` migrates in one transaction under a transaction-level
  advisory lock on a fixed key, so processes starting together apply each version exactly
  once (see `migrate`).
- **LISTEN/NOTIFY wakes the others.** `notify` announces new work on one channel per schema,
  `listen` keeps one dedicated connection listening for it (see `listener`); workers poll
  anyway, so a lost notification only delays work.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from opendispatch.errors import StoreError
from opendispatch.store.connector import NO_PARAMETERS, Parameters, Row, Statement
from opendispatch.store.migrations import MigrationObserver, Upgrade
from opendispatch.store.named_queries import PositionalQuery, load_queries, positional
from opendispatch.store.postgres.driver import (
    DRIVER_ERRORS,
    Connection,
    quote_identifier,
    store_error,
)
from opendispatch.store.postgres.listener import Listener
from opendispatch.store.postgres.migrate import migrate

__all__ = ["NOTIFY_CHANNEL", "PostgresConnector", "PostgresSession"]

# Followed by the schema (`opendispatch.public`): installations sharing a database in separate
# schemas must not wake each other (measured: a leftover process of another schema, woken by
# every notification, took a third of this machine's capacity).
NOTIFY_CHANNEL = "opendispatch"


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection returned without asyncpg's reset (`RESET ALL`, `UNLISTEN *`,
    `CLOSE ALL`, `pg_advisory_unlock_all()`): the store keeps no session state, and measured
    under load the reset was a round trip on every one of ~9 acquisitions per workflow."""

    def get_reset_query(self) -> str:
        return ""


def _arguments(query: PositionalQuery, parameters: Parameters) -> list[Any]:
    try:
        return [parameters[name] for name in query.names]
    except KeyError as exc:
        raise StoreError(f"parameter {exc} missing") from None


def _columns(query: PositionalQuery, rows: Sequence[Parameters]) -> list[list[Any]]:
    """Rows to one array per parameter, for `unnest(...)`."""
    try:
        return [[row[name] for row in rows] for name in query.names]
    except KeyError as exc:
        raise StoreError(f"column {exc} missing") from None


class PostgresSession:
    """Named queries on one connection inside a transaction (see `PostgresConnector.session`)."""

    __slots__ = ("_connection", "_queries")

    def __init__(self, connection: Connection, queries: dict[str, PositionalQuery]) -> None:
        self._connection = connection
        self._queries = queries

    async def fetch_all(self, query: str, parameters: Parameters = NO_PARAMETERS) -> list[Row]:
        sql = self._queries[query]
        rows: list[Row] = await self._connection.fetch(sql.sql, *_arguments(sql, parameters))
        return rows

    async def fetch_one(self, query: str, parameters: Parameters = NO_PARAMETERS) -> Row | None:
        sql = self._queries[query]
        row: Row | None = await self._connection.fetchrow(sql.sql, *_arguments(sql, parameters))
        return row

    async def execute(self, query: str, parameters: Parameters = NO_PARAMETERS) -> int:
        sql = self._queries[query]
        return _changed(await self._connection.execute(sql.sql, *_arguments(sql, parameters)))

    async def execute_many(self, query: str, rows: Sequence[Parameters]) -> int:
        sql = self._queries[query]
        return _changed(await self._connection.execute(sql.sql, *_columns(sql, rows)))


class PostgresConnector:
    dialect = "postgres"
    sole_owner = False

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        schema: str | None = None,
        lease_owner: str | None = None,
        extra_queries: Iterable[tuple[str, str]] = (),
    ) -> None:
        """`schema`: every connection's `search_path` (created if missing), so several
        installations, or tests, can share a database. `lease_owner`: how this process is
        named in the leases it takes (default: host, pid and a random suffix).
        `extra_queries`: (package, file) of more named queries (a write strategy's)."""
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self.schema = schema
        self.lease_owner = lease_owner or _default_lease_owner()
        queries = load_queries("opendispatch.store.sql", "postgres.sql")
        for package, file_name in extra_queries:
            queries |= load_queries(package, file_name)
        self.queries = {name: positional(sql) for name, sql in queries.items()}
        self._admin = load_queries("opendispatch.store.postgres", "admin.sql")
        self._pool: Any = None
        self._listener: Listener | None = None
        self._channel = NOTIFY_CHANNEL
        self._upgrade: Upgrade | None = None
        # Told how long each write took (the metrics): every write here is its own
        # transaction (a statement in autocommit, or a `session`), so its round trip is its
        # commit's latency.
        self.observe_commit: Callable[[float], None] = _unobserved
        # Told as each migration of `open` starts and ends (`opendispatch db upgrade`).
        self.observe_migrations: MigrationObserver | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise StoreError("the store is already open")
        # The application name shows in pg_stat_activity which process holds a connection.
        settings = {"application_name": _application_name("opendispatch", self.lease_owner)}
        if self.schema is not None:
            settings["search_path"] = quote_identifier(self.schema)
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=settings,
                connection_class=_Connection,
            )
        except DRIVER_ERRORS as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {_where(self.dsn)} ({type(exc).__name__}: "
                f"{exc}): is it running, and is --database right?",
                retryable=store_error("connecting", exc).retryable,
            ) from exc
        try:
            self._upgrade = await migrate(pool, self._admin, self.schema, self.observe_migrations)
            schema = await pool.fetchval("SELECT current_schema()")
        except BaseException:
            pool.terminate()
            raise
        self._channel = f"{NOTIFY_CHANNEL}.{schema}"
        self._pool = pool

    @property
    def upgrade(self) -> Upgrade | None:
        return self._upgrade

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except DRIVER_ERRORS as exc:
                pool.terminate()
                raise store_error("closing the PostgreSQL pool", exc) from exc

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    # -- named queries on the pool ---------------------------------------------------------

    async def fetch_one(self, query: str, parameters: Parameters = NO_PARAMETERS) -> Row | None:
        sql = self.queries[query]
        try:
            row: Row | None = await self._require_pool().fetchrow(
                sql.sql, *_arguments(sql, parameters)
            )
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc
        return row

    async def fetch_all(self, query: str, parameters: Parameters = NO_PARAMETERS) -> list[Row]:
        sql = self.queries[query]
        try:
            rows: list[Row] = await self._require_pool().fetch(
                sql.sql, *_arguments(sql, parameters)
            )
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc
        return rows

    async def fetch_one_aside(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> Row | None:
        """Any read waits on its connection, never on the event loop: `fetch_one`."""
        return await self.fetch_one(query, parameters)

    async def fetch_all_aside(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> list[Row]:
        """Likewise `fetch_all` (the caller bounds how many such reads hold a connection)."""
        return await self.fetch_all(query, parameters)

    async def execute(self, query: str, parameters: Parameters = NO_PARAMETERS) -> int:
        sql = self.queries[query]
        started = time.perf_counter()
        try:
            tag = await self._require_pool().execute(sql.sql, *_arguments(sql, parameters))
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc
        self.observe_commit(time.perf_counter() - started)
        return _changed(tag)

    async def execute_returning(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> list[Row]:
        started = time.perf_counter()
        rows = await self.fetch_all(query, parameters)
        self.observe_commit(time.perf_counter() - started)
        return rows

    async def execute_many(self, query: str, rows: Sequence[Parameters]) -> None:
        if not rows:
            return
        sql = self.queries[query]
        started = time.perf_counter()
        try:
            await self._require_pool().execute(sql.sql, *_columns(sql, rows))
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc
        self.observe_commit(time.perf_counter() - started)

    def add_queries(self, package: str, file_name: str) -> None:
        added = load_queries(package, file_name)
        self.queries |= {name: positional(sql) for name, sql in added.items()}

    async def execute_many_returning(self, query: str, rows: Sequence[Parameters]) -> list[Row]:
        if not rows:
            return []
        sql = self.queries[query]
        started = time.perf_counter()
        try:
            result: list[Row] = await self._require_pool().fetch(sql.sql, *_columns(sql, rows))
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc
        self.observe_commit(time.perf_counter() - started)
        return result

    @asynccontextmanager
    async def session(self, what: str) -> AsyncIterator[PostgresSession]:
        """One connection in one transaction: COMMIT when the block ends, ROLLBACK if it
        raises. Driver errors from the block are converted here, once."""
        pool = self._require_pool()
        started = time.perf_counter()
        try:
            async with pool.acquire() as connection, connection.transaction():
                yield PostgresSession(connection, self.queries)
        except DRIVER_ERRORS as exc:
            raise store_error(what, exc) from exc
        self.observe_commit(time.perf_counter() - started)

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        changed = []
        async with self.session(statements[0].query if statements else "transaction") as session:
            for statement in statements:
                if statement.rows is not None:
                    changed.append(await session.execute_many(statement.query, statement.rows))
                else:
                    changed.append(await session.execute(statement.query, statement.parameters))
        return changed

    # -- wake-ups across processes ---------------------------------------------------------

    async def notify(self, payloads: Iterable[str]) -> None:
        """Announce new work to every listening process (this one included), in one round
        trip. Sent outside any transaction: the work it announces is already committed."""
        payloads = list(payloads)
        if payloads:
            try:
                await self._require_pool().execute(self._admin["notify"], self._channel, payloads)
            except DRIVER_ERRORS as exc:
                raise store_error("notify", exc) from exc

    async def listen(self, callback: Callable[[str], None]) -> bool:
        """Call `callback(payload)` for each announcement, from now until `close()`; after a
        dropped connection is re-established, `callback("*")`. One listener per store."""
        self._require_pool()
        if self._listener is not None:
            raise StoreError("this store is already listening")
        listener = Listener(connect=self._connect_one, channel=self._channel, callback=callback)
        try:
            await listener.start()
        except DRIVER_ERRORS as exc:
            raise store_error("listening for notifications", exc) from exc
        self._listener = listener
        return True

    async def _connect_one(self) -> Connection:
        name = _application_name("opendispatch-listen", self.lease_owner)
        return await asyncpg.connect(self.dsn, server_settings={"application_name": name})


def _unobserved(seconds: float) -> None:
    pass


def _changed(tag: str) -> int:
    """The rows a statement changed, from its status tag (`UPDATE 3`)."""
    count = tag.rpartition(" ")[2]
    return int(count) if count.isdigit() else 0


def _where(dsn: str) -> str:
    """Host, port and database of a DSN, for messages: never its password."""
    try:
        parts = urlsplit(dsn)
        host, port = parts.hostname or "the local socket", parts.port or 5432
    except ValueError:
        return "the --database URL"
    return f"{host}:{port}, database {parts.path.lstrip('/') or parts.username or 'postgres'}"


def _default_lease_owner() -> str:
    """Readable in the tables (which host, which process) and unique per store object."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _application_name(role: str, lease_owner: str) -> str:
    return f"{role} {lease_owner}"[:63]  # PostgreSQL keeps at most 63 bytes of it
