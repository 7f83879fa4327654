"""Applying the SQLite migrations, under the database's write lock."""

from __future__ import annotations

import logging
import sqlite3
import time

from opendispatch.errors import MigrationError
from opendispatch.store.migrations import Migration, MigrationObserver, Upgrade, load_migrations
from opendispatch.timefmt import now_ms

__all__ = ["migrate"]

log = logging.getLogger(__name__)


def migrate(connection: sqlite3.Connection, observer: MigrationObserver | None = None) -> Upgrade:
    """Apply the missing migrations; returns what was applied. Safe across processes.
    `observer` is told as each starts and ends (all commit together, at the end)."""
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
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            if observer is not None:
                observer.started(migration)
            began = time.perf_counter()
            for statement in _statements(migration.sql):
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
                (migration.version, migration.name, now_ms()),
            )
            done.append(migration)
            if observer is not None:
                observer.finished(migration, time.perf_counter() - began)
        connection.execute("COMMIT")
    except BaseException as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise MigrationError(f"migrating the SQLite schema failed: {exc}") from exc
        raise
    upgrade = Upgrade(applied=tuple(done), version=max([*applied, *(m.version for m in done), 0]))
    if done:
        log.info("applied SQLite migrations %s", upgrade.versions)
    return upgrade


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
