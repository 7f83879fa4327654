"""The embedded default store: one SQLite file in WAL mode.

Writes are where throughput is won, and every 202 waits for one, so writes are batched
(group commit): `_GroupCommit` queues the write operations of many concurrent requests and
runs them in one `BEGIN IMMEDIATE ... COMMIT`, one fsync for all. `synchronous=FULL` makes
that COMMIT durable (the WAL is fsynced) before any caller's future resolves, so no 202 is
ever answered for a workflow that is not on disk.

Measured on the project's 2-core target, with the same handlers: one fsync per request caps
the server at a few thousand requests/s; a writer thread doing the batching served ~21,500/s
(GIL hand-offs per request); running the statements on the event loop and only the COMMIT on
a dedicated thread, one batch in flight while the next gathers, serves the most, and keeps
the loop busy parsing while the disk syncs. WAL checkpoints run on their own thread (see
`checkpoint`).

Reads use a second connection: in WAL mode a reader never waits for the writer, and it sees
every committed write, including those of other processes (`opendispatch apps create`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from opendispatch.errors import DatabaseUnavailable, StoreError
from opendispatch.store.sqlite.guard import FileGuard, is_damage

__all__ = ["GroupCommit", "WriteOperation"]

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOperation = Callable[[sqlite3.Connection], T]


class GroupCommit:
    """Runs queued write operations together: one transaction, one fsync, per batch.

    The statements run on the event loop thread (they only touch SQLite's page cache); the
    COMMIT, whose fsync is most of a batch's wall time, runs on one dedicated thread, with the
    GIL released, while the loop goes on parsing and validating the next requests. Only one
    batch is in flight at a time; whatever arrives meanwhile forms the next batch, so batches
    grow with load instead of fsyncs multiplying.

    A batch also waits `window_s` after its first operation before it starts (PostgreSQL's
    `commit_delay` idea). Measured: a transaction of one operation costs ~140 us of CPU (the
    fsync, file locks and the hand-off to the commit thread), one of twenty ~12 us per
    operation. The failover runtime's operations trickle in one per loop turn at moderate load,
    so without the window nearly every one paid the full price; a millisecond gathers them.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        window_s: float = 0.001,
        wal_reset_wanted: threading.Event | None = None,
        guard: FileGuard | None = None,
        observe_commit: Callable[[float], None] | None = None,
    ) -> None:
        """`wal_reset_wanted`: set (by the `Checkpointer`) when the WAL has grown past its
        limit; the next commit is then followed by a checkpoint with writes paused. `guard`:
        checked after each commit, so no caller is told a write is durable once the file has
        been deleted or replaced. `observe_commit`: told how long each batch took, from its
        BEGIN to its callers being answered (seconds)."""
        self._connection = connection
        self._guard = guard
        self._observe_commit = observe_commit
        self._closing = False
        self._window_s = window_s
        self._wal_reset_wanted = wal_reset_wanted or threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[WriteOperation[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._in_flight: asyncio.Future[None] | None = None
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        self.batches = 0
        self.operations = 0
        self.wal_resets = 0
        self.wal_truncations = 0

    def submit(self, operation: WriteOperation[T]) -> asyncio.Future[T]:
        # The loop is looked up once: on Python 3.11 every get_running_loop() is a getpid()
        # system call, measured at 4 % of the server's time under load.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((operation, future))
        self._schedule(loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled and self._in_flight is None:
            self._scheduled = True
            if self._window_s > 0:
                loop.call_later(self._window_s, self._start_batch)
            else:
                loop.call_soon(self._start_batch)

    def _start_batch(self) -> None:
        self._scheduled = False
        batch = self._take_pending()
        if not batch:
            return
        if self._guard is not None and self._guard.failure is not None:
            for _, future in batch:
                future.set_exception(DatabaseUnavailable(self._guard.failure))
            return
        connection = self._connection
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            results = [operation(connection) for operation, _ in batch]
        except Exception:  # any failure: no future may be left unresolved
            self._rollback()
            self._run_one_by_one(batch)
            self._schedule(self._loop or asyncio.get_running_loop())
            return
        loop = self._loop or asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(self._committer, self._commit)
        self._in_flight.add_done_callback(
            lambda done: self._finish_batch(done, batch, results, started)
        )

    def _commit(self) -> None:
        """On the commit thread: COMMIT (the fsync), then make sure it went to the file at
        the path, not to one deleted meanwhile (one `stat` per batch)."""
        self._connection.commit()
        if self._guard is not None:
            self._guard.check()

    def _reset_wal(self) -> None:
        """On the commit thread, between batches (no write can run meanwhile): checkpoint
        what the background checkpoints have not, so the next write starts the WAL over."""
        self._wal_reset_wanted.clear()
        try:
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.debug("WAL checkpoint between batches skipped: %s", exc)

    def _finish_batch(
        self,
        done: asyncio.Future[Any],
        batch: list[tuple[WriteOperation[Any], asyncio.Future[Any]]],
        results: list[Any],
        started: float,
    ) -> None:
        self._in_flight = None
        error = done.exception()
        if error is None:
            self.batches += 1
            self.operations += len(batch)
            if self._observe_commit is not None:
                self._observe_commit(time.perf_counter() - started)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        else:
            self._rollback()
            for _, future in batch:
                if not future.done():
                    future.set_exception(self._store_error(error))
        loop = self._loop or asyncio.get_running_loop()
        if self._wal_reset_wanted.is_set():
            # The batch's callers have their answers; what arrives now waits for this.
            self._in_flight = loop.run_in_executor(self._committer, self._reset_wal)
            self._in_flight.add_done_callback(self._after_reset)
            return
        if self._pending:
            self._schedule(loop)

    def _after_reset(self, done: asyncio.Future[Any]) -> None:
        self._in_flight = None
        self.wal_resets += 1
        if self._pending:
            self._schedule(self._loop or asyncio.get_running_loop())

    def truncate_wal_when_idle(self) -> None:
        """From any thread (the `Checkpointer`, when no write has come for a while): copy the
        whole WAL back and truncate it to nothing, on the commit thread between batches, so a
        write arriving meanwhile waits in the queue instead of blocking the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # never written: nothing in the WAL
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._truncate_if_idle)

    def _truncate_if_idle(self) -> None:
        if self._closing or self._in_flight is not None or self._pending or self._scheduled:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(self._committer, self._truncate_wal)
        self._in_flight.add_done_callback(self._after_truncate)

    def _truncate_wal(self) -> None:
        try:
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # a reader in the way: the checkpointer asks again
            log.debug("idle WAL truncation skipped: %s", exc)
        else:
            self.wal_truncations += 1

    def _after_truncate(self, done: asyncio.Future[Any]) -> None:
        self._in_flight = None
        if self._pending:
            self._schedule(self._loop or asyncio.get_running_loop())

    def _run_one_by_one(self, batch: list[tuple[WriteOperation[Any], asyncio.Future[Any]]]) -> None:
        """After a failed batch: each operation alone, so one bad write fails only itself."""
        connection = self._connection
        for operation, future in batch:
            try:
                connection.execute("BEGIN IMMEDIATE")
                result = operation(connection)
                connection.execute("COMMIT")
            except Exception as exc:
                self._rollback()
                future.set_exception(self._store_error(exc))
            else:
                future.set_result(result)

    def _take_pending(self) -> list[tuple[WriteOperation[Any], asyncio.Future[Any]]]:
        batch = [item for item in self._pending if not item[1].cancelled()]
        self._pending = []
        return batch

    def _rollback(self) -> None:
        if self._connection.in_transaction:
            try:
                self._connection.execute("ROLLBACK")
            except sqlite3.Error as exc:  # a damaged file: the error that led here says it
                log.debug("rollback failed: %s", exc)

    def _store_error(self, exc: BaseException) -> BaseException:
        """SQLite's errors as ours; a damaged file fails the store (see `guard`)."""
        if not isinstance(exc, sqlite3.Error):
            return exc
        if self._guard is not None and is_damage(exc):
            return self._guard.damaged(exc)
        retryable = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        return StoreError(f"write failed: {exc}", retryable=retryable)

    async def drain(self) -> None:
        """At close: let the batch in flight finish, commit what is queued, stop the thread."""
        self._closing = True
        while self._in_flight is not None or self._pending:
            if self._in_flight is not None:
                await asyncio.wait([self._in_flight])
            else:
                self._schedule(asyncio.get_running_loop())
            await asyncio.sleep(0)  # lets `_finish_batch` / `_start_batch` run
        self._committer.shutdown(wait=True)
