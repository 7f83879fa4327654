"""The embedded default store: one SQLite file in WAL mode."""

from opendispatch.store.sqlite.migrate import migrate
from opendispatch.store.sqlite.store import SqliteStore, sqlite_path_from_url

__all__ = ["SqliteStore", "migrate", "sqlite_path_from_url"]
