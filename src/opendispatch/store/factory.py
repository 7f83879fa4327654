"""Choose the store from the database URL: the one `DatabaseStore`, over the connector and
write strategy of that database."""

from __future__ import annotations

from opendispatch.errors import ConfigurationError
from opendispatch.store.database import DatabaseStore

__all__ = ["create_store"]


def create_store(
    database: str,
    *,
    serving: bool = False,
    pool_min: int = 2,
    pool_max: int = 10,
    schema: str | None = None,
    create: bool = False,
) -> DatabaseStore:
    """`serving`: for the process that runs the workers (one per SQLite file). `create`: an
    SQLite file is created even where a database was before (`opendispatch db init`)."""
    if database.startswith(("postgres://", "postgresql://")):
        from opendispatch.store.postgres import postgres_store

        return postgres_store(database, min_size=pool_min, max_size=pool_max, schema=schema)
    if "://" in database and not database.startswith("sqlite:"):
        raise ConfigurationError(f"unsupported database URL {database!r}")
    from opendispatch.store.sqlite import sqlite_path_from_url, sqlite_store

    return sqlite_store(sqlite_path_from_url(database), serving=serving, create=create)
