"""`PostgresStore`: the storage protocol on PostgreSQL, for several processes sharing the work.

On SQLite one process owns the database, so it may keep the queues' state in its head (it
releases every lease at start) and batch everyone's writes into one transaction. Here any
number of `opendispatch serve` processes, on any number of hosts, share the tables, and the
database is what keeps them from stepping on each other:

- **Versions serialise a workflow's events.** `apply` reads the workflow, decides, and writes
  the transition with every effect in one statement that applies only if the workflow is
  still at the version it read; the loser of a race reads what the winner wrote and decides
  again (after a few lost races it takes the row lock). Two processes racing a late status
  and an expiry for the same workflow therefore leave one consistent outcome, and nothing is
  locked while Python decides (see `transitions`).
- **Concurrent calls share statements.** Events, new workflows and the sandbox's log are
  queued while earlier ones are on their way and sent together (see `coalesce`): about one
  statement per workflow under load instead of thirteen.
- **Claims skip what others are taking.** Each `claim_due_*` is one `UPDATE ... WHERE id IN
  (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING ...`: concurrent claimers pass each other's
  rows by instead of queueing, and no row is handed to two of them.
- **Leases, not locks, cover the work.** A claim stamps `lease_until_ms` (and `lease_owner`).
  A process that dies leaves its leases to run out, after which anyone may claim the rows
  again; `release_leases` is therefore a no-op here (other live processes hold leases).
  Times are the caller's `now_ms`, never the database's clock, so tests drive them.
- **Migrations run once.** `open()` migrates in one transaction under a transaction-level
  advisory lock on a fixed key, so processes starting together apply each version exactly
  once (see `migrate`).
- **LISTEN/NOTIFY wakes the others.** `notify` announces new work on one channel, `listen`
  keeps one dedicated connection listening for it (see `listener`); workers poll anyway, so
  a lost notification only delays work.

Final reports add one rule: a final report is written `held` while its workflow has webhooks
pending, and released when the last of them settles, by the same statement that records that
webhook's delivery (see `outbox`); row locks order the two when they meet (migration 0005).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import asyncpg

from opendispatch.errors import StoreError
from opendispatch.store.postgres.driver import (
    DRIVER_ERRORS,
    Connection,
    Row,
    quote_identifier,
    store_error,
)
from opendispatch.store.postgres.listener import Listener
from opendispatch.store.postgres.migrate import migrate
from opendispatch.store.postgres.outbox import PostgresOutbox
from opendispatch.store.postgres.transitions import (
    PostgresTransitions,
    loaded_workflow,
    workflow_record,
)
from opendispatch.store.protocol import Store
from opendispatch.store.queries import load_queries
from opendispatch.store.records import (
    Application,
    ApplicationCredentials,
    LoadedWorkflow,
    MessageOwner,
    WorkflowRecord,
)

__all__ = ["NOTIFY_CHANNEL", "PostgresStore"]

# Followed by the schema (`opendispatch.public`): installations sharing a database in separate
# schemas must not wake each other (measured: a leftover process of another schema, woken by
# every notification, took a third of this machine's capacity).
NOTIFY_CHANNEL = "opendispatch"

# Every canonical UUID string sorts before "g" (hex digits and hyphens, compared byte-wise:
# the columns are COLLATE "C"), so this stands for "no upper bound" in `list_workflows`.
_AFTER_EVERY_UUID = "g"


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection returned without asyncpg's reset (`RESET ALL`, `UNLISTEN *`,
    `CLOSE ALL`, `pg_advisory_unlock_all()`): the store keeps no session state, and measured
    under load the reset was a round trip on every one of ~9 acquisitions per workflow."""

    def get_reset_query(self) -> str:
        return ""


class PostgresStore(PostgresTransitions, PostgresOutbox):
    """`Store` on PostgreSQL through an asyncpg pool, plus `notify`/`listen` for wake-ups."""

    dialect = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        schema: str | None = None,
        lease_owner: str | None = None,
    ) -> None:
        """`schema`: every connection's `search_path` (created if missing), so several
        installations, or tests, can share a database. `lease_owner`: how this process is
        named in the leases it takes (default: host, pid and a random suffix)."""
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self.schema = schema
        self.lease_owner = lease_owner or _default_lease_owner()
        self._queries = load_queries("postgres")
        self._pool = None
        self._listener: Listener | None = None
        self._channel = NOTIFY_CHANNEL
        self._init_transitions()
        self._init_outbox()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise StoreError("the store is already open")
        # The application name shows in pg_stat_activity which process holds a connection.
        settings = {"application_name": _application_name("opendispatch", self.lease_owner)}
        if self.schema is not None:
            settings["search_path"] = quote_identifier(self.schema)
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=settings,
                connection_class=_Connection,
            )
        except DRIVER_ERRORS as exc:
            raise store_error("connecting to PostgreSQL", exc) from exc
        try:
            await migrate(pool, self._queries, self.schema)
            schema = await pool.fetchval("SELECT current_schema()")
        except BaseException:
            pool.terminate()
            raise
        self._channel = f"{NOTIFY_CHANNEL}.{schema}"
        self._pool = pool

    async def close(self) -> None:
        """Every write was committed by the call that made it (or is, once the batches on
        their way return); then only connections remain."""
        await self._stop_transitions()
        await self._stop_outbox()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except DRIVER_ERRORS as exc:
                pool.terminate()
                raise store_error("closing the PostgreSQL pool", exc) from exc

    # -- wake-ups across processes ---------------------------------------------------------

    async def notify(self, payloads: Iterable[str]) -> None:
        """Announce new work to every listening process (this one included), in one round
        trip. Sent outside any transaction: the work it announces is already committed."""
        if payloads:
            await self._execute("notify", self._channel, payloads)

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call `callback(payload)` for each announcement, from now until `close()`; after a
        dropped connection is re-established, `callback("*")`. One listener per store."""
        if self._pool is None:
            raise StoreError("the store is not open")
        if self._listener is not None:
            raise StoreError("this store is already listening")
        listener = Listener(connect=self._connect_one, channel=self._channel, callback=callback)
        try:
            await listener.start()
        except DRIVER_ERRORS as exc:
            raise store_error("listening for notifications", exc) from exc
        self._listener = listener

    async def _connect_one(self) -> Connection:
        name = _application_name("opendispatch-listen", self.lease_owner)
        return await asyncpg.connect(self._dsn, server_settings={"application_name": name})

    # -- applications ----------------------------------------------------------------------

    async def create_application(self, credentials: ApplicationCredentials) -> None:
        app = credentials.application
        async with self._transaction("create_application") as connection:
            await connection.execute(
                self._queries["insert_account"],
                app.api_key,
                credentials.api_secret_hash,
                credentials.signature_secret,
                app.created_at_ms,
            )
            await connection.execute(
                self._queries["insert_application"],
                app.application_id,
                app.api_key,
                app.name,
                app.status_url,
                app.final_report_url,
                credentials.public_key_pem,
                app.created_at_ms,
            )

    async def list_applications(self) -> list[Application]:
        return [Application(**dict(row)) for row in await self._fetch("list_applications")]

    async def find_credentials_by_api_key(self, api_key: str) -> ApplicationCredentials | None:
        row = await self._fetchrow("credentials_by_api_key", api_key)
        return None if row is None else _credentials(row)

    async def find_credentials(self, application_id: str) -> ApplicationCredentials | None:
        row = await self._fetchrow("credentials_by_application_id", application_id)
        return None if row is None else _credentials(row)

    # -- workflows -------------------------------------------------------------------------

    async def unstarted_workflows(self, limit: int) -> list[str]:
        return [row[0] for row in await self._fetch("unstarted_workflows", limit)]

    async def message_owner(self, message_uuid: str) -> MessageOwner | None:
        row = await self._fetchrow("message_owner", message_uuid)
        return None if row is None else MessageOwner(**dict(row))

    async def load_workflow(self, dispatch_uuid: str) -> LoadedWorkflow | None:
        row = await self._fetchrow("load_workflow", dispatch_uuid)
        return None if row is None else loaded_workflow(row)

    async def get_workflow(self, application_id: str, dispatch_uuid: str) -> WorkflowRecord | None:
        row = await self._fetchrow("get_workflow", dispatch_uuid, application_id)
        return None if row is None else workflow_record(row)

    async def list_workflows(
        self, application_id: str, *, limit: int, before: str | None = None
    ) -> list[WorkflowRecord]:
        rows = await self._fetch(
            "list_workflows", application_id, before or _AFTER_EVERY_UUID, limit
        )
        return [workflow_record(row) for row in rows]


def _default_lease_owner() -> str:
    """Readable in the tables (which host, which process) and unique per store object."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _application_name(role: str, lease_owner: str) -> str:
    return f"{role} {lease_owner}"[:63]  # PostgreSQL keeps at most 63 bytes of it


def _credentials(row: Row) -> ApplicationCredentials:
    return ApplicationCredentials(
        application=Application(
            application_id=row["application_id"],
            name=row["name"],
            api_key=row["api_key"],
            status_url=row["status_url"],
            final_report_url=row["final_report_url"],
            created_at_ms=row["created_at_ms"],
        ),
        api_secret_hash=row["api_secret_hash"],
        signature_secret=row["signature_secret"],
        public_key_pem=row["public_key_pem"],
    )


if TYPE_CHECKING:

    def _implements_the_protocol(store: PostgresStore) -> Store:
        return store  # mypy proves here that PostgresStore is a Store
