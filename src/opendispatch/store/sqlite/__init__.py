"""The embedded default: one SQLite file in WAL mode, served by one process."""

from __future__ import annotations

from pathlib import Path

from opendispatch.store.database import DatabaseStore
from opendispatch.store.sqlite.connector import SqliteConnector, sqlite_path_from_url
from opendispatch.store.sqlite.migrate import migrate
from opendispatch.store.sqlite.transitions import QUERIES, SqliteTransitions

__all__ = ["SqliteConnector", "migrate", "sqlite_path_from_url", "sqlite_store"]


def sqlite_store(
    path: Path | str,
    *,
    serving: bool = False,
    wal_limit_bytes: int = 64 * 1024 * 1024,
    checkpoint_interval_s: float = 0.5,
    idle_checkpoint_s: float = 2.0,
    create: bool = False,
) -> DatabaseStore:
    """`create`: create the file even where a database was before (see `guard`)."""
    connector = SqliteConnector(
        path,
        serving=serving,
        extra_queries=[QUERIES],
        wal_limit_bytes=wal_limit_bytes,
        checkpoint_interval_s=checkpoint_interval_s,
        idle_checkpoint_s=idle_checkpoint_s,
        create=create,
    )
    return DatabaseStore(connector, SqliteTransitions(connector))
