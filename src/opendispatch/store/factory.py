"""Choose the store from the database URL."""

from __future__ import annotations

from opendispatch.errors import ConfigurationError
from opendispatch.store.protocol import Store
from opendispatch.store.sqlite import SqliteStore, sqlite_path_from_url

__all__ = ["create_store"]


def create_store(
    database: str, *, serving: bool = False, pool_min: int = 2, pool_max: int = 10
) -> Store:
    """`serving`: for the process that runs the workers (see `SqliteStore`)."""
    if database.startswith(("postgres://", "postgresql://")):
        from opendispatch.store.postgres import PostgresStore

        return PostgresStore(database, min_size=pool_min, max_size=pool_max)
    if "://" in database and not database.startswith("sqlite:"):
        raise ConfigurationError(f"unsupported database URL {database!r}")
    return SqliteStore(sqlite_path_from_url(database), serving=serving)
