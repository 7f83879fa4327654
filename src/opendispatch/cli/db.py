"""`opendispatch db`: the database schema, and creating a database where one was before."""

from __future__ import annotations

from pathlib import Path

import click

from opendispatch.cli.common import database_option, run, store_for
from opendispatch.store.migrations import Upgrade

__all__ = ["db"]


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@database_option
def db_upgrade(database: str) -> None:
    """Bring the schema up to date (the server also does this when it starts): prints each
    migration applied and the version reached, or that nothing was due."""

    async def upgrade() -> Upgrade:
        store = store_for(database)
        await store.open()
        await store.close()
        done: Upgrade = store.connector.upgrade
        return done

    for line in run(upgrade()).lines():
        click.echo(line)


@db.command("init")
@database_option
def db_init(database: str) -> None:
    """Create the database, even where one was before and has gone missing.

    A missing SQLite file is otherwise created only where no database was before: where
    traces of one remain (its -wal, -shm or .lock files), the server and every command refuse
    to start, rather than silently begin again with no applications. An existing database is
    only brought up to date, never emptied.
    """
    from opendispatch.store.factory import create_store
    from opendispatch.store.sqlite import sqlite_path_from_url

    is_sqlite = not database.startswith(("postgres://", "postgresql://"))
    existed = is_sqlite and Path(sqlite_path_from_url(database)).exists()

    async def init() -> None:
        store = store_for(database) if not is_sqlite else create_store(database, create=True)
        await store.open()
        await store.close()

    run(init())
    if is_sqlite and not existed:
        click.echo(f"{database}: created, empty")
    else:
        click.echo(f"{database}: exists, schema up to date")
