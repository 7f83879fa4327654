"""Versioned schema migrations: `migrations/<dialect>/NNNN_description.sql`, applied in order.

Each database records what it has applied in `schema_migrations`; applying is idempotent and
each store runs it under a lock, so several processes starting at once is safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

__all__ = ["Migration", "MigrationObserver", "Upgrade", "load_migrations"]

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        """As its file is named, without `.sql`: `0003_webhook_queue_per_application`."""
        return f"{self.version:04d}_{self.name}"


class MigrationObserver(Protocol):
    """Told as each migration starts and ends (`opendispatch db upgrade` prints both: a
    migration of a large database can take minutes)."""

    def started(self, migration: Migration) -> None: ...

    def finished(self, migration: Migration, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What bringing a database up to date did: the migrations it applied, oldest first, and
    the schema version the database is at afterwards (`opendispatch db upgrade` says both)."""

    applied: tuple[Migration, ...]
    version: int

    @property
    def versions(self) -> list[int]:
        return [migration.version for migration in self.applied]

    def lines(self) -> list[str]:
        """`applied 0001_initial`, ..., `applied 0008_seen_tokens, now at 8`; or
        `nothing to apply: database at version 8`."""
        if not self.applied:
            return [f"nothing to apply: database at version {self.version}"]
        lines = [f"applied {migration.label}" for migration in self.applied]
        lines[-1] += f", now at {self.version}"
        return lines


def load_migrations(dialect: str) -> list[Migration]:
    folder = resources.files("opendispatch.store").joinpath(f"migrations/{dialect}")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{dialect} migrations must be numbered 1..n without gaps: {versions}")
    return found
