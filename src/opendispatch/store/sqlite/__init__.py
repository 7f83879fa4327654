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
) -> DatabaseStore:
    connector = SqliteConnector(
        path,
        serving=serving,
        extra_queries=[QUERIES],
        wal_limit_bytes=wal_limit_bytes,
        checkpoint_interval_s=checkpoint_interval_s,
    )
    return DatabaseStore(connector, SqliteTransitions(connector))
