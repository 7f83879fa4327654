"""The databases the integration suite runs against: a fresh SQLite file, or a fresh schema
in the PostgreSQL named by `OPENDISPATCH_TEST_POSTGRES` (skipped, with the reason, when
there is none).

`TestDatabase.url` is what a server or the CLI takes (`--database`); the PostgreSQL URL
carries `?search_path=<schema>`, so separate server processes share the test's schema.
`scalar` and `rows` let a test look at the tables directly, whatever the backend.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.postgres import postgres_dsn

BACKENDS = ["sqlite", "postgres"]
SKIP_REASON = "PostgreSQL not available: set OPENDISPATCH_TEST_POSTGRES (see README)"


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    kind: str
    url: str
    path: Path | None = None  # SQLite only

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.path is not None:
            with sqlite3.connect(self.path) as connection:
                return [tuple(row) for row in connection.execute(sql).fetchall()]
        connection = await asyncpg.connect(self.url)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    async def scalar(self, sql: str) -> Any:
        rows = await self.rows(sql)
        return rows[0][0] if rows else None


def postgres_or_skip() -> str:
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip(SKIP_REASON)
    return dsn


async def new_database(kind: str, tmp_path: Path) -> AsyncIterator[TestDatabase]:
    if kind == "sqlite":
        path = tmp_path / "test.db"
        yield TestDatabase("sqlite", f"sqlite:///{path}", path)
        return
    dsn = postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await _execute(dsn, f"CREATE SCHEMA {schema}")
    try:
        separator = "&" if "?" in dsn else "?"
        yield TestDatabase("postgres", f"{dsn}{separator}search_path={schema}")
    finally:
        # A connection of its own: the teardown may run on another event loop.
        await _execute(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _execute(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()
