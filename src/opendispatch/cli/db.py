"""`opendispatch db`: the database schema, and creating a database where one was before."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from opendispatch.cli.common import database_option, run, store_for
from opendispatch.store.migrations import Upgrade

if TYPE_CHECKING:
    from opendispatch.store.database import DatabaseStore

__all__ = ["db"]


async def _open_and_close(store: DatabaseStore) -> Upgrade:
    """Opening a store migrates it; what that did is the answer."""
    await store.open()
    await store.close()
    done = store.connector.upgrade
    assert done is not None  # set by every open
    return done


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@database_option
def db_upgrade(database: str) -> None:
    """Bring the schema up to date (the server also does this when it starts): prints each
    migration applied and the version reached, or that nothing was due."""

    for line in run(_open_and_close(store_for(database))).lines():
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

    store = store_for(database) if not is_sqlite else create_store(database, create=True)
    done = run(_open_and_close(store))
    if is_sqlite and not existed:
        click.echo(f"{database}: created, empty")
    else:
        click.echo(f"{database}: exists")
    for line in done.lines():
        click.echo(line)
