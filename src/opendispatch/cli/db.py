"""`opendispatch db`: the database schema."""

from __future__ import annotations

import click

from opendispatch.cli.common import database_option, run, store_for

__all__ = ["db"]


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@database_option
def db_upgrade(database: str) -> None:
    """Bring the schema up to date (the server also does this when it starts)."""

    async def upgrade() -> None:
        store = store_for(database)
        await store.open()
        await store.close()

    run(upgrade())
    click.echo(f"{database}: schema up to date")
