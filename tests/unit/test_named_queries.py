"""The two dialects' query files stay twins: the store runs either through one code path."""

from __future__ import annotations

import pytest

from opendispatch.store.named_queries import (
    load_queries,
    parameter_names,
    parse_queries,
    positional,
)

SQLITE = load_queries("opendispatch.store.sql", "sqlite.sql")
POSTGRES = load_queries("opendispatch.store.sql", "postgres.sql")
SANDBOX_SQLITE = load_queries("opendispatch.providers.sandbox", "sqlite.sql")
SANDBOX_POSTGRES = load_queries("opendispatch.providers.sandbox", "postgres.sql")


@pytest.mark.parametrize(
    ("sqlite", "postgres"), [(SQLITE, POSTGRES), (SANDBOX_SQLITE, SANDBOX_POSTGRES)]
)
def test_both_dialects_have_the_same_query_names(
    sqlite: dict[str, str], postgres: dict[str, str]
) -> None:
    assert sorted(sqlite) == sorted(postgres)


@pytest.mark.parametrize("name", sorted(SQLITE))
def test_a_query_takes_the_same_named_parameters_in_both_dialects(name: str) -> None:
    # One difference is allowed: SQLite's one serving process has no need of :lease_owner.
    def names(sql: str) -> list[str]:
        return sorted(set(parameter_names(sql)) - {"lease_owner"})

    assert names(SQLITE[name]) == names(POSTGRES[name])


def test_named_parameters_become_positional_once_casts_untouched() -> None:
    query = positional("SELECT :a::text[], :b, x::int FROM t WHERE c = :a")
    assert query.names == ("a", "b")
    assert query.sql == "SELECT $1::text[], $2, x::int FROM t WHERE c = $1"


def test_comment_lines_are_dropped_and_a_name_defined_twice_is_refused() -> None:
    parsed = parse_queries("-- name: one\n-- about :this\nSELECT :that;\n")
    assert parsed == {"one": "SELECT :that;"}
    assert parameter_names(parsed["one"]) == ["that"]
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n")
