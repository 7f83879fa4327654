"""Fixtures of the acceptance tests: databases that server processes and the CLI share.

Most tests here are synchronous (they drive processes), so these fixtures set their database
up and tear it down without the test's event loop; `TestDatabase` opens a connection per
query, so async tests here use them all the same. `database` overrides the suite's own
(tests/conftest.py) for this folder: each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import BACKENDS, TestDatabase, new_database


def _made(kind: str, tmp_path: Path) -> Iterator[TestDatabase]:
    made = new_database(kind, tmp_path)
    yield asyncio.run(anext(made))
    asyncio.run(anext(made, None))


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A fresh SQLite file, or a fresh PostgreSQL schema (skipped, saying why, without one)."""
    yield from _made(request.param, tmp_path)


@pytest.fixture
def postgres_database(tmp_path: Path) -> Iterator[TestDatabase]:
    """A fresh PostgreSQL schema (skipped, saying why, when there is no PostgreSQL)."""
    yield from _made("postgres", tmp_path)
