"""What every command shares: the database option, running a coroutine, the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from opendispatch.config import DEFAULT_DATABASE
from opendispatch.errors import ConfigurationError, OpenDispatchError

__all__ = [
    "allow_private_webhooks_option",
    "database_option",
    "http_url",
    "run",
    "store_for",
    "table",
    "with_store",
]

T = TypeVar("T")

database_option = click.option(
    "--database",
    envvar="OPENDISPATCH_DATABASE",
    default=DEFAULT_DATABASE,
    show_default=True,
    show_envvar=True,
    help="sqlite:///path.db (the embedded default) or postgresql://user@host/db (scale-out).",
)

allow_private_webhooks_option = click.option(
    "--allow-private-webhooks",
    envvar="OPENDISPATCH_ALLOW_PRIVATE_WEBHOOKS",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Let webhooks go to loopback, private and link-local addresses (development, "
    "receivers inside a private network). Off: such destinations are refused.",
)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except OpenDispatchError as exc:
        raise click.ClickException(str(exc)) from exc


def http_url(_: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    from opendispatch.webhooks.destinations import redact_url, url_problem

    if value is None:
        return None
    problem = url_problem(value)
    if problem is not None:
        raise click.BadParameter(f"{redact_url(value)!r} {problem}", param=parameter)
    return value


async def with_store(database: str, use: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    store = store_for(database)
    await store.open()
    try:
        return await use(store)
    finally:
        await store.close()


def store_for(database: str) -> Any:
    from opendispatch.store.factory import create_store

    try:
        return create_store(database)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a table: a header row, then the rows, each column as wide as its widest cell
    (the last one is not padded)."""
    widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
