"""PostgreSQL for the tests: which server, whether it answers, and a fresh schema per test.

The server comes from `OPENDISPATCH_TEST_POSTGRES` (a DSN such as
`postgresql://postgres@127.0.0.1:5432/test`). Without it, or when the server does not answer,
tests that need PostgreSQL are skipped with a reason that says so (`pytest -rs` shows it):
a missing database must never look like a pass.

Each test gets its own schema (`t_<hex>`) in that one database, dropped afterwards: cheaper
than a database per test, and the store's `schema=` option makes every connection use it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
import pytest

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "SKIP_REASON",
    "fresh_schema",
    "postgres_dsn",
    "requires_postgres",
    "skip_unless_postgres",
]

ENVIRONMENT_VARIABLE = "OPENDISPATCH_TEST_POSTGRES"
SKIP_REASON = "PostgreSQL not available: set OPENDISPATCH_TEST_POSTGRES (see README)"

T = TypeVar("T")


@functools.cache
def postgres_dsn() -> str | None:
    """The test server's DSN if it is set and a connection succeeds (asked once per run)."""
    dsn = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not dsn:
        return None
    # On a thread of its own, with its own event loop: callers may be inside a running loop
    # (an async fixture) or not (collection).
    with ThreadPoolExecutor(max_workers=1) as executor:
        reachable = executor.submit(asyncio.run, _answers(dsn)).result()
    return dsn if reachable else None


async def _answers(dsn: str) -> bool:
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await connection.close()
    return True


def skip_unless_postgres() -> str:
    """The DSN, or skip the calling test (or fixture) with the visible reason."""
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip(SKIP_REASON)
    return dsn


def requires_postgres(test: T) -> T:
    """Decorates a test that needs PostgreSQL: marked `postgres` (select with `-m postgres`)
    and skipped with the reason when the server is not available. Decided at collection."""
    skip = pytest.mark.skipif(postgres_dsn() is None, reason=SKIP_REASON)
    return skip(pytest.mark.postgres(test))


@asynccontextmanager
async def fresh_schema(dsn: str | None = None) -> AsyncIterator[str]:
    """A unique schema name, dropped with everything in it afterwards. The store creates it
    (that is part of what `open()` does); use as `async with fresh_schema() as schema:`."""
    dsn = dsn or skip_unless_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield schema
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()
