"""What the SQLite store does when the disk under it goes wrong.

Two things SQLite does not notice by itself:

- **The file is deleted or replaced while the server runs.** Open connections keep writing to
  the unlinked inode, every request still succeeds, and at the next start a new, empty
  database appears where the old one was: every application and workflow silently gone. So
  `FileGuard` remembers the file's identity (device, inode) when the store opens and compares
  it with the path's after every group commit (one `stat` per batch, on the commit thread,
  not per request) and every checkpoint round (twice a second, also when idle). On a change
  the store is *failed*: it logs one error, `/health` answers 503 with the reason, and every
  read and write raises `DatabaseUnavailable` (503 in Vonage's shape) until an operator
  restarts it.
- **The file is damaged** (truncated, overwritten): SQLite answers "database disk image is
  malformed" or "file is not a database" to whatever touches a missing page, which used to
  look like a busy database (503 "busy, retry" for ever). The guard recognises those errors
  and fails the store the same way, saying that the database is damaged.

And at start, `check_directory` and `expect_database` decide whether the file may be opened
or created (see there); a directory the server cannot write in is named as such
(`unwritable_directory`), not left to SQLite's "unable to open database file".
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

from opendispatch.errors import DatabaseUnavailable, StoreError

__all__ = [
    "FileGuard",
    "check_directory",
    "expect_database",
    "is_damage",
    "traces_of_database",
    "unwritable_directory",
]

log = logging.getLogger("opendispatch.store")

# SQLite's primary result codes for a damaged file (the extended codes add high bits).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def is_damage(exc: BaseException) -> bool:
    """Is this SQLite's way of saying the file is damaged (not busy, not a bug of ours)?"""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    message = str(exc)
    return "malformed" in message or "not a database" in message


def traces_of_database(path: Path) -> list[Path]:
    """The files SQLite and OpenDispatch leave beside a database: `-wal` and `-shm` while it is
    open (and after a crash), `.lock` from the first `serve` (or the first command that
    created it) on, never removed."""
    return [
        trace
        for trace in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock"))
        if trace.exists()
    ]


def check_directory(path: Path) -> None:
    """The database's directory must exist: it is never created, so that a mistyped
    `--database` fails at once instead of starting an empty database somewhere else."""
    directory = path.parent
    if directory.is_dir():
        return
    if directory.exists():
        raise StoreError(
            f"{directory} is not a directory, so the SQLite database {path} cannot be there: "
            "choose another --database"
        )
    raise StoreError(
        f"the directory {directory} of the SQLite database does not exist: create it, or "
        "choose another --database"
    )


def unwritable_directory(path: Path, exc: OSError) -> StoreError:
    """The error for a file beside the database that cannot be created (the `.lock`; SQLite's
    `-wal` and `-shm` need the same), e.g. permission denied or a read-only file system."""
    reason = exc.strerror or str(exc)
    if exc.filename:
        reason += f": {Path(exc.filename).name}"
    return StoreError(
        f"cannot write in {path.parent}, the directory of the SQLite database ({reason}): "
        "make it writable for this user, or choose another --database"
    )


def expect_database(path: Path, *, create: bool) -> bool:
    """May the store open `path`? True if it will create the file.

    A missing file is created only where no database has been before: on a fresh machine
    `opendispatch serve` (the README's first command) just works. Where one has been (the
    traces above are there), a missing file means the database was deleted or moved, and
    creating an empty one would silently lose every application: that takes `create`
    (`opendispatch db init`), and otherwise the start fails saying so.
    """
    if path.exists():
        return False
    traces = traces_of_database(path)
    if traces and not create:
        raise DatabaseUnavailable(
            f"the SQLite database {path} is missing, but "
            f"{', '.join(trace.name for trace in traces)} beside it show that one was there: "
            "it was deleted or moved. Put it back (or restore a backup), or run "
            f"`opendispatch db init --database sqlite:///{path}` to start over with a new, "
            "empty database"
        )
    if create:
        _set_aside(traces)
    return True


def _set_aside(traces: list[Path]) -> None:
    """Before a new database takes the path: SQLite would replay an old `-wal` onto it. Keep
    a non-empty one (it holds the lost database's last writes) under another name."""
    for trace in traces:
        if trace.name.endswith("-shm"):
            trace.unlink(missing_ok=True)
        elif trace.name.endswith("-wal"):
            if trace.stat().st_size:
                kept = trace.with_name(f"{trace.name}.orphaned")
                trace.rename(kept)
                log.warning("kept the WAL of the missing database as %s", kept)
            else:
                trace.unlink(missing_ok=True)


class FileGuard:
    """The identity of the open database file, and whether the store has failed (see the
    module docstring). `check` runs on several threads; the first failure wins and is logged
    once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.failure: str | None = None
        self._reason: str | None = None  # for /health, without the path

    def remember(self) -> None:
        """At open, once the file exists: this is the file the server serves."""
        stat = os.stat(self.path)
        self._identity = (stat.st_dev, stat.st_ino)

    def check(self) -> None:
        """Raise `DatabaseUnavailable` if the store has failed or the file is not the one
        opened any more."""
        if self.failure is None and self._identity is not None:
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                self.fail("database deleted", f"the database file {self.path} was deleted")
            except OSError as exc:
                self.fail(
                    "database unreadable", f"the database file {self.path} cannot be read: {exc}"
                )
            else:
                if (stat.st_dev, stat.st_ino) != self._identity:
                    self.fail("database replaced", f"the database file {self.path} was replaced")
        if self.failure is not None:
            raise DatabaseUnavailable(self.failure)

    def fail(self, reason: str, message: str) -> None:
        with self._lock:
            if self.failure is not None:
                return
            self._reason = reason
            self.failure = (
                f"{message} while the server ran: nothing more is stored, every request "
                "answers 503. Restore the database and restart the server"
            )
        log.error("%s", self.failure)

    def damaged(self, exc: BaseException) -> DatabaseUnavailable:
        """The error a damaged file's queries raise (the store is failed from now on)."""
        self.fail("database damaged", f"the database {self.path} is damaged ({exc})")
        return DatabaseUnavailable(self.failure or str(exc))

    @property
    def reason(self) -> str | None:
        """For `/health`: "database deleted", "... replaced", "... unreadable" or "... damaged"
        (None: healthy)."""
        return self._reason if self.failure is not None else None
