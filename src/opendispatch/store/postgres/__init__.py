"""The scale-out store: PostgreSQL, shared by any number of OpenDispatch processes."""

from opendispatch.store.postgres.migrate import migrate
from opendispatch.store.postgres.store import NOTIFY_CHANNEL, PostgresStore

__all__ = ["NOTIFY_CHANNEL", "PostgresStore", "migrate"]
