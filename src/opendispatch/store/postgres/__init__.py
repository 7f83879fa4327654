"""The scale-out store: PostgreSQL, shared by any number of OpenDispatch processes."""

from __future__ import annotations

from opendispatch.store.database import DatabaseStore
from opendispatch.store.postgres.connector import NOTIFY_CHANNEL, PostgresConnector
from opendispatch.store.postgres.migrate import migrate
from opendispatch.store.postgres.transitions import QUERIES, PostgresTransitions

__all__ = ["NOTIFY_CHANNEL", "PostgresConnector", "migrate", "postgres_store"]


def postgres_store(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    schema: str | None = None,
    lease_owner: str | None = None,
) -> DatabaseStore:
    connector = PostgresConnector(
        dsn,
        min_size=min_size,
        max_size=max_size,
        schema=schema,
        lease_owner=lease_owner,
        extra_queries=[QUERIES],
    )
    return DatabaseStore(connector, PostgresTransitions(connector))
