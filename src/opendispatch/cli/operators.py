"""`opendispatch operators`: the people who may use the dashboard (`/dashboard`)."""

from __future__ import annotations

import sys
from typing import Any

import click

from opendispatch.cli.common import database_option, run, with_store

__all__ = ["operators"]


@click.group()
def operators() -> None:
    """Create, list and delete dashboard operators (apart from applications' API keys)."""


def _operator_name(_: click.Context, parameter: click.Parameter, value: str) -> str:
    from opendispatch.auth.operators import operator_name_problem

    problem = operator_name_problem(value)
    if problem is not None:
        raise click.BadParameter(problem, param=parameter)
    return value


@operators.command("create")
@click.argument("name", callback=_operator_name)
@database_option
def operators_create(name: str, database: str) -> None:
    """Create an operator and print their login token, once: the server keeps only its hash.
    Sign in at /dashboard with the name and the token."""
    from opendispatch.auth.operators import new_secret, secret_hash
    from opendispatch.store.operators import OperatorStore
    from opendispatch.timefmt import now_ms

    token = new_secret()

    async def create(store: Any) -> bool:
        created: bool = await OperatorStore(store.connector).create(
            name, token_hash=secret_hash(token), now_ms=now_ms()
        )
        return created

    if not run(with_store(database, create)):
        raise click.ClickException(
            f"an operator named {name} exists already (delete it first to give a new token)"
        )
    click.echo(f"created operator {name}; their login token, shown only this once:", err=True)
    click.echo(token)


@operators.command("list")
@database_option
def operators_list(database: str) -> None:
    """Operators, with when they were created and how many browsers are signed in."""
    from opendispatch.store.operators import Operator, OperatorStore
    from opendispatch.timefmt import iso_ms, now_ms

    async def read(store: Any) -> list[Operator]:
        found: list[Operator] = await OperatorStore(store.connector).list(now_ms=now_ms())
        return found

    found = run(with_store(database, read))
    if not found:
        click.echo("No operators: create one with `opendispatch operators create NAME`.")
        return
    click.echo("NAME  CREATED  SESSIONS")
    for operator in found:
        click.echo(f"{operator.name}  {iso_ms(operator.created_at_ms)}  {operator.sessions}")


@operators.command("delete")
@click.argument("name")
@database_option
def operators_delete(name: str, database: str) -> None:
    """Delete an operator; every browser they are signed in on is signed out at once."""
    from opendispatch.store.operators import OperatorStore

    async def delete(store: Any) -> bool:
        deleted: bool = await OperatorStore(store.connector).delete(name)
        return deleted

    if not run(with_store(database, delete)):
        click.echo(f"no operator named {name}", err=True)
        sys.exit(1)
    click.echo(f"deleted operator {name} and ended their sessions")
