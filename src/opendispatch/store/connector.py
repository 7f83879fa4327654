"""The narrow seam between the store and a database: named queries, named parameters, rows
read by column name.

`Store` (store/database.py) holds every operation that is the same on both databases and
runs it through a `Connector`; only the SQL text and the write strategy differ per database.
A new storage operation is then two SQL snippets with one name, and one method.

- `fetch_one` / `fetch_all` read (`fetch_one_aside`, `fetch_all_aside`: a long read, such
  as the metrics' counts and the dashboard's lists, kept off the event loop);
  `execute` writes and says how many rows it changed;
  `execute_returning` writes and returns rows (claims: `UPDATE ... RETURNING`).
- `execute_many` runs one query for many rows: once per row on SQLite (executemany), once for
  all of them on PostgreSQL (each column bound as an array, unnested by the query);
  `execute_many_returning` likewise, for a query that returns rows.
- `transaction` runs several statements in one transaction, nothing committed unless all are.

Driver errors come out as `StoreError` (with `retryable` where trying again can help).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opendispatch.store.migrations import MigrationObserver, Upgrade

__all__ = ["NO_PARAMETERS", "Connector", "Parameters", "Row", "Statement"]

Row = Mapping[str, Any]
Parameters = Mapping[str, Any]
NO_PARAMETERS: Parameters = {}


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a transaction: a query with its parameters, or with many rows."""

    query: str
    parameters: Parameters = field(default_factory=dict)
    rows: Sequence[Parameters] | None = None  # run for each row (`execute_many`)


class Connector(Protocol):
    dialect: str
    # True where one process owns the database (SQLite): leases left at start are a dead
    # predecessor's.
    sole_owner: bool
    # How this process names itself in the leases it takes (PostgreSQL).
    lease_owner: str
    # Told how long each write transaction took to commit, in seconds (the metrics).
    observe_commit: Callable[[float], None]
    # Told as each migration of `open` starts and ends (`opendispatch db upgrade`).
    observe_migrations: MigrationObserver | None

    async def open(self) -> None:
        """Connect and bring the schema up to date (safe to run from several processes);
        `upgrade` then says what that did."""

    @property
    def upgrade(self) -> Upgrade | None:
        """What the last `open` did to the schema (None before it)."""

    async def close(self) -> None:
        """Commit what is pending, then release connections."""

    async def fetch_one(self, query: str, parameters: Parameters = NO_PARAMETERS) -> Row | None: ...

    async def fetch_all(self, query: str, parameters: Parameters = NO_PARAMETERS) -> list[Row]: ...

    async def fetch_one_aside(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> Row | None:
        """`fetch_one` for a read that may walk many rows (counts): it must not hold up
        the event loop (SQLite reads run on it otherwise)."""

    async def fetch_all_aside(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> list[Row]:
        """`fetch_all` for a read that may walk many rows (the dashboard's lists), likewise."""

    async def execute(self, query: str, parameters: Parameters = NO_PARAMETERS) -> int: ...

    async def execute_returning(
        self, query: str, parameters: Parameters = NO_PARAMETERS
    ) -> list[Row]: ...

    async def execute_many(self, query: str, rows: Sequence[Parameters]) -> None: ...

    async def execute_many_returning(self, query: str, rows: Sequence[Parameters]) -> list[Row]: ...

    def add_queries(self, package: str, file_name: str) -> None:
        """More named queries (a provider's own tables: the sandbox's log), before `open`."""

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Run `statements` in one transaction; the rows each changed."""

    async def notify(self, payloads: Iterable[str]) -> None:
        """Tell the other processes on this database that work is due."""

    async def listen(self, callback: Callable[[str], None]) -> bool:
        """Call `callback(payload)` for every other process's `notify` (`"*"`: re-check all);
        False if other processes cannot be heard (then whoever waits must look by itself)."""
