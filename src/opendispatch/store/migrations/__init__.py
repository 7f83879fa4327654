"""Versioned schema migrations: `migrations/<dialect>/NNNN_description.sql`, applied in order.

Each database records what it has applied in `schema_migrations`; applying is idempotent and
each store runs it under a lock, so several processes starting at once is safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Migration", "load_migrations"]

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


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
