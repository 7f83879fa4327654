"""The one seam between the PostgreSQL store and asyncpg: named queries on a pool, and every
driver error converted into a `StoreError` where it enters our code.

asyncpg ships no type information, so its objects are `Any` here; the store's public methods
take and return only our own records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

from opendispatch.errors import StoreError

__all__ = [
    "DRIVER_ERRORS",
    "Connection",
    "Pool",
    "PostgresAccess",
    "Row",
    "columns",
    "quote_identifier",
    "store_error",
]

Pool: TypeAlias = Any  # asyncpg.Pool
Connection: TypeAlias = Any  # asyncpg.Connection (or a pool's proxy of one)
Row: TypeAlias = Any  # asyncpg.Record: by position, by column name, or dict(row)

# What the driver raises: server errors, client-side misuse and protocol errors, and the
# socket's own errors (refused, reset, timed out) when the server cannot be reached.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,  # TimeoutError included
)

# Trying again can succeed after these: the transaction lost a race (serialization failure,
# deadlock) or the server is briefly unreachable, restarting or out of connection slots.
# Class 08 (connection exceptions) is matched by its prefix.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "53300", "57P01", "57P02", "57P03"})


def store_error(what: str, exc: BaseException, *, cls: type[StoreError] = StoreError) -> StoreError:
    """The `StoreError` (or subclass) for a driver error, with its retry hint."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        retryable = sqlstate.startswith("08") or sqlstate in _RETRYABLE_SQLSTATES
    else:
        retryable = isinstance(exc, OSError)
    return cls(f"{what} failed: {type(exc).__name__}: {exc}", retryable=retryable)


def quote_identifier(name: str) -> str:
    """A schema name as SQL identifier: DDL and `search_path` take no bind parameters."""
    return '"' + name.replace('"', '""') + '"'


def columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows to per-column lists: one array parameter per column for `unnest(...)`, so a
    transition's rows go to the server in one statement whatever their number."""
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresAccess:
    """Named queries run on the pool, driver errors converted; the base of the store's parts."""

    _queries: dict[str, str]
    _pool: Pool | None

    def _require_pool(self) -> Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    async def _fetch(self, query: str, *arguments: Any) -> list[Row]:
        pool = self._require_pool()
        try:
            rows: list[Row] = await pool.fetch(self._queries[query], *arguments)
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc
        return rows

    async def _fetchrow(self, query: str, *arguments: Any) -> Row | None:
        pool = self._require_pool()
        try:
            return await pool.fetchrow(self._queries[query], *arguments)
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc

    async def _fetchval(self, query: str, *arguments: Any) -> Any:
        pool = self._require_pool()
        try:
            return await pool.fetchval(self._queries[query], *arguments)
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc

    async def _execute(self, query: str, *arguments: Any) -> int:
        """Run a statement; returns the rows it changed (from its status tag, `UPDATE 3`)."""
        pool = self._require_pool()
        try:
            tag: str = await pool.execute(self._queries[query], *arguments)
        except DRIVER_ERRORS as exc:
            raise store_error(query, exc) from exc
        count = tag.rpartition(" ")[2]
        return int(count) if count.isdigit() else 0

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[Connection]:
        """One connection in one transaction: COMMIT when the block ends, ROLLBACK if it
        raises. Driver errors from the block are converted here, once."""
        pool = self._require_pool()
        try:
            async with pool.acquire() as connection, connection.transaction():
                yield connection
        except DRIVER_ERRORS as exc:
            raise store_error(what, exc) from exc
