"""The migrations produce the schema the code expects: on a database migrated from nothing,
every named query the code can run (the store's, each write strategy's, the sandbox's)
compiles against it: every table, column and function it names exists."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from opendispatch.store.factory import create_store
from opendispatch.store.named_queries import load_queries, parameter_names, positional
from opendispatch.store.sqlite.connector import _scripts
from tests.databases import TestDatabase

pytestmark = pytest.mark.anyio

FILES = {
    "sqlite": [
        ("opendispatch.store.sql", "sqlite.sql"),
        ("opendispatch.store.sqlite", "transitions.sql"),
        ("opendispatch.providers.sandbox", "sqlite.sql"),
    ],
    "postgres": [
        ("opendispatch.store.sql", "postgres.sql"),
        ("opendispatch.store.postgres", "transitions.sql"),
        ("opendispatch.providers.sandbox", "postgres.sql"),
    ],
}


async def test_every_query_compiles_against_the_migrated_schema(database: TestDatabase) -> None:
    store = create_store(database.url)
    await store.open()  # migrates a fresh database from nothing
    await store.close()
    queries: dict[str, str] = {}
    for package, file_name in FILES[database.kind]:
        queries |= load_queries(package, file_name)
    assert len(queries) > 40
    failures = []
    if database.kind == "sqlite":
        assert database.path is not None
        with sqlite3.connect(database.path) as connection:
            for name, statements in _scripts(queries).items():
                for statement in statements:
                    parameters = dict.fromkeys(parameter_names(statement))
                    try:
                        connection.execute(f"EXPLAIN {statement}", parameters)
                    except sqlite3.Error as exc:
                        failures.append(f"{name}: {exc}")
    else:
        connection = await asyncpg.connect(database.url)
        try:
            for name, sql in queries.items():
                try:
                    await connection.prepare(positional(sql).sql)
                except asyncpg.PostgresError as exc:
                    failures.append(f"{name}: {exc}")
        finally:
            await connection.close()
    assert failures == []
