"""Named SQL queries, kept in `.sql` files so a reader sees exactly what the database runs.

A file holds queries separated by `-- name: <query_name>` lines (the procrastinate way).
`sql/sqlite.sql` and `sql/postgres.sql` hold the store's queries, with the same names and the
same named parameters (`:name`) in both; each write strategy keeps its own file beside it.
PostgreSQL's driver takes positional parameters, so `positional` rewrites `:name` into `$n`
once, when the queries are loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["PositionalQuery", "load_queries", "parameter_names", "parse_queries", "positional"]

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
# `:name`, but not the `::` of a PostgreSQL cast, nor a name inside a longer word.
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def load_queries(package: str, file_name: str) -> dict[str, str]:
    """The queries of `file_name` in `package`, by name."""
    return parse_queries(resources.files(package).joinpath(file_name).read_text(), file_name)


def parse_queries(text: str, file_name: str = "<text>") -> dict[str, str]:
    """Queries separated by `-- name: <query_name>` lines, by name (comment lines dropped:
    a comment must not look like a parameter). String literals must not hold `:word`."""
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {file_name}")
        queries[name] = _without_comment_lines(body)
    return queries


def _without_comment_lines(body: str) -> str:
    lines = [line for line in body.strip().splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def parameter_names(sql: str) -> list[str]:
    """The distinct `:name` parameters of a query, in order of first use."""
    return list(dict.fromkeys(_PARAMETER.findall(sql)))


@dataclass(frozen=True, slots=True)
class PositionalQuery:
    """A query with `$n` parameters and the names they stand for, in order."""

    sql: str
    names: tuple[str, ...]


def positional(sql: str) -> PositionalQuery:
    names = parameter_names(sql)
    index = {name: position for position, name in enumerate(names, start=1)}
    return PositionalQuery(
        _PARAMETER.sub(lambda match: f"${index[match.group(1)]}", sql), tuple(names)
    )
