"""`opendispatch db`: the database schema, creating a database where one was before, and
retention run now."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from opendispatch.cli.common import database_option, run, store_for
from opendispatch.cli.progress import Progress, progress_option

if TYPE_CHECKING:
    from opendispatch.store.database import DatabaseStore
    from opendispatch.store.migrations import Migration

__all__ = ["db"]


class _MigrationLines:
    """Each migration as it starts (on stderr: `applying 0010_... ...`) and, as it ends,
    `applied 0010_... in 0.012 s` on stdout; the last line adds the version reached, so it
    waits for the commit (every migration of an upgrade commits together)."""

    def __init__(self) -> None:
        self._ended: str | None = None

    def started(self, migration: Migration) -> None:
        self._print_ended()
        click.echo(f"applying {migration.label} ...", err=True)

    def finished(self, migration: Migration, seconds: float) -> None:
        self._ended = f"applied {migration.label} in {_duration(seconds)}"

    def _print_ended(self, suffix: str = "") -> None:
        if self._ended is not None:
            click.echo(self._ended + suffix)
            self._ended = None

    def committed(self, version: int) -> None:
        if self._ended is None:
            click.echo(f"nothing to apply: database at version {version}")
        else:
            self._print_ended(f", now at {version}")


def _duration(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:,.1f} s"


def _upgrade(store: DatabaseStore) -> None:
    """Opening a store migrates it; each migration is printed as it goes."""
    lines = _MigrationLines()
    store.connector.observe_migrations = lines

    async def open_and_close() -> int:
        await store.open()
        await store.close()
        done = store.connector.upgrade
        assert done is not None  # set by every open
        return done.version

    lines.committed(run(open_and_close()))


@click.group()
def db() -> None:
    """Database schema, and retention run now."""


@db.command("upgrade")
@database_option
def db_upgrade(database: str) -> None:
    """Bring the schema up to date (the server also does this when it starts): prints each
    migration as it starts (stderr) and, with its duration, as it ends, then the version
    reached; or that nothing was due."""
    _upgrade(store_for(database))


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
    click.echo(f"{database}: {'created, empty' if is_sqlite and not existed else 'exists'}")
    _upgrade(store)


@db.command("purge-expired")
@click.option(
    "--retention-days",
    envvar="OPENDISPATCH_RETENTION_DAYS",
    show_envvar=True,
    default=30.0,
    show_default=True,
    type=click.FloatRange(0, 36_500),
    help="As `serve`'s: what settled or ended longer ago than this is deleted.",
)
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows per transaction (a running server's work goes between batches).",
)
@database_option
@progress_option
def db_purge_expired(
    retention_days: float, batch_size: int, database: str, show_progress: bool
) -> None:
    """Run retention now, to its end: delete the webhooks delivered or given up, then the
    workflows ended, longer ago than --retention-days, as the server's retention does (in
    short batches, beside a running server), with progress on stderr (on a terminal, or
    with --progress).

    The server catches up by itself, a batch at a time; this is for doing it at once, such
    as after lowering --retention-days on a large database."""
    from opendispatch.providers.sandbox import SandboxLog
    from opendispatch.runtime.clock import SystemClock
    from opendispatch.runtime.retention import RetentionWorker
    from opendispatch.timefmt import iso_ms

    if retention_days == 0:
        raise click.UsageError("--retention-days 0 keeps everything: nothing expires")
    retention_ms = max(1, int(retention_days * 86_400_000))
    store = store_for(database)
    clock = SystemClock()
    retention = RetentionWorker(
        clock=clock,
        store=store,
        retention_ms=retention_ms,
        batch_size=batch_size,
        expire_also=(SandboxLog(store.connector).expire,),
    )
    before_ms = clock.now_ms() - retention_ms

    async def purge() -> None:
        await store.open()
        try:
            total = await store.count_expired_webhooks(before_ms=before_ms)
            progress = Progress("deleted webhooks", total=total, forced=show_progress)
            while await retention.run_once():  # True while batches come back full
                progress.update(retention.deleted_webhooks)
            progress.update(retention.deleted_webhooks)
            progress.close()
        finally:
            await store.close()

    run(purge())
    click.echo(
        f"deleted {retention.deleted_webhooks:,} webhooks and {retention.deleted_workflows:,} "
        f"workflows settled or ended before {iso_ms(before_ms)}"
    )
