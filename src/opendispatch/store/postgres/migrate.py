"""Applying the PostgreSQL migrations, once, however many processes start at the same time.

Everything happens in one transaction that first takes a transaction-level advisory lock on
a fixed key: a second process starting meanwhile waits at the lock, then (READ COMMITTED: each
statement sees what committed before it) finds the schema complete and applies nothing. A
migration that fails rolls back whole, `schema_migrations` row included, so a half-applied
version is never recorded. DDL is transactional in PostgreSQL, which makes this possible.
"""

from __future__ import annotations

import logging
import time

from opendispatch.errors import MigrationError
from opendispatch.store.migrations import Migration, MigrationObserver, Upgrade, load_migrations
from opendispatch.store.postgres.driver import DRIVER_ERRORS, Pool, quote_identifier, store_error
from opendispatch.timefmt import now_ms

__all__ = ["MIGRATION_LOCK_KEY", "migrate"]

log = logging.getLogger(__name__)

# "opendisp" in ASCII: any bigint works as long as every OpenDispatch process agrees on it.
# It is one key for the whole database (not per schema): starts in different schemas wait for
# each other too, which costs a few milliseconds and keeps the rule simple.
MIGRATION_LOCK_KEY = 0x6F70656E64697370


async def migrate(
    pool: Pool,
    queries: dict[str, str],
    schema: str | None,
    observer: MigrationObserver | None = None,
) -> Upgrade:
    """Apply the missing migrations; returns what was applied. `schema` is created first
    if it is missing (the pool's connections already have it as their `search_path`).
    `observer` is told as each starts and ends (all commit together, at the end)."""
    migrations = load_migrations("postgres")
    newest_known = migrations[-1].version if migrations else 0
    done: list[Migration] = []
    applied: set[int] = set()
    try:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(queries["migration_lock"], MIGRATION_LOCK_KEY)
            if schema is not None:
                await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            await connection.execute(queries["create_schema_migrations"])
            applied = {row[0] for row in await connection.fetch(queries["applied_migrations"])}
            if applied and max(applied) > newest_known:
                raise MigrationError(
                    f"the database is at schema version {max(applied)}, newer than this "
                    f"OpenDispatch knows ({newest_known}); upgrade OpenDispatch"
                )
            for migration in migrations:
                if migration.version in applied:
                    continue
                if observer is not None:
                    observer.started(migration)
                began = time.perf_counter()
                await connection.execute(migration.sql)  # a script: the simple query protocol
                await connection.execute(
                    queries["record_migration"], migration.version, migration.name, now_ms()
                )
                done.append(migration)
                if observer is not None:
                    observer.finished(migration, time.perf_counter() - began)
    except DRIVER_ERRORS as exc:
        raise store_error("migrating the PostgreSQL schema", exc, cls=MigrationError) from exc
    upgrade = Upgrade(applied=tuple(done), version=max([*applied, *(m.version for m in done), 0]))
    if done:
        log.info("applied PostgreSQL migrations %s", upgrade.versions)
    return upgrade
