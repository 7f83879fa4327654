"""Named SQL queries, kept in `.sql` files so a reader sees exactly what the database runs.

A file holds queries separated by `-- name: <query_name>` lines (the procrastinate way); each
dialect has its own file with the same names.
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["load_queries"]

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(dialect: str) -> dict[str, str]:
    text = resources.files("opendispatch.store").joinpath(f"queries/{dialect}.sql").read_text()
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {dialect}.sql")
        queries[name] = body.strip()
    return queries
