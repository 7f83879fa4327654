"""`Checkpointer`: the WAL copied back into the database file, beside the writer, and kept
from growing: bounded under load, truncated when the load stops."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from opendispatch.errors import DatabaseUnavailable
from opendispatch.store.sqlite.guard import FileGuard, is_damage

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)


class Checkpointer:
    """Copies the WAL back into the database file from its own thread and connection, and
    keeps the WAL from growing without bound.

    SQLite's automatic checkpoint runs inside whichever COMMIT crosses the threshold, so that
    batch (and every request waiting on it) would also wait for the database file's fsync:
    measured as 30-145 ms stalls. PASSIVE checkpoints run beside the writer instead.

    But under steady load a checkpoint running beside the writer never catches up: frames are
    appended while it copies, so the WAL is never wholly copied back, never started over, and
    grows for ever (measured: 39 MB/s at 300 workflows/s, 7.7 GB in under three minutes). So
    once the WAL holds more than `wal_limit_bytes`, the checkpointer asks the group commit
    for one checkpoint between two batches, with writes paused (`GroupCommit._reset_wal`):
    most of the WAL is copied already, so it is short; then the next write starts the WAL
    over, and `journal_size_limit` truncates the file back to the limit.

    And a WAL left at its high-water mark once the load stops would keep its size for ever
    (measured: 316 MB after a burst, idle). So once no write has come for `idle_s`, the group
    commit is asked to checkpoint with TRUNCATE (`GroupCommit.truncate_wal_when_idle`): the
    WAL goes back to zero bytes until the next write.

    Each round also checks that the file is still the one opened (`FileGuard`), so a database
    deleted while the server is idle is noticed within `interval_s`.
    """

    def __init__(
        self,
        path: Path,
        interval_s: float = 0.5,
        *,
        wal_limit_bytes: int = 64 * 1024 * 1024,
        wal_reset_wanted: threading.Event | None = None,
        guard: FileGuard | None = None,
        idle_s: float = 2.0,
    ) -> None:
        self._path = path
        self._interval_s = interval_s
        self._wal_limit_bytes = wal_limit_bytes
        self._guard = guard
        self._idle_s = idle_s
        self._writes_seen: Callable[[], int] = lambda: 0
        self._on_idle: Callable[[], None] = lambda: None
        self.wal_reset_wanted = wal_reset_wanted or threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def watch_writes(self, writes_seen: Callable[[], int], on_idle: Callable[[], None]) -> None:
        """`writes_seen`: a count that grows with every write; `on_idle`: called (on this
        thread) while it has not grown for `idle_s` and the WAL is not empty."""
        self._writes_seen = writes_seen
        self._on_idle = on_idle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        # mode=rw: never create a file where the database has just vanished.
        connection = sqlite3.connect(
            f"file:{quote(str(self._path))}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            connection.execute("PRAGMA busy_timeout = 5000")
            page_size = int(connection.execute("PRAGMA page_size").fetchone()[0])
            limit_frames = self._wal_limit_bytes // page_size
            quiet = _Quiet(self._idle_s, self._writes_seen(), time.monotonic())
            while not self._stop.wait(self._interval_s):
                if self._guard is not None:
                    try:
                        self._guard.check()
                    except DatabaseUnavailable:
                        continue  # logged once by the guard; nothing more to checkpoint
                try:
                    _, wal_frames, _ = connection.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                except sqlite3.Error as exc:  # a busy database is retried next round
                    if self._guard is not None and is_damage(exc):
                        self._guard.damaged(exc)
                    log.debug("checkpoint skipped: %s", exc)
                    continue
                if wal_frames > limit_frames:
                    self.wal_reset_wanted.set()
                idle, light = quiet.observe(self._writes_seen(), time.monotonic())
                if wal_frames > 0 and (idle or (light and self._wal_bytes() > _LIGHT_WAL_BYTES)):
                    self._on_idle()
        finally:
            connection.close()

    def _wal_bytes(self) -> int:
        try:
            return os.stat(f"{self._path}-wal").st_size
        except OSError:
            return 0


# Below this many commits a second the server is "lightly loaded" (webhook retries, sandbox
# statuses, no API traffic), and a WAL file larger than `_LIGHT_WAL_BYTES` is left over from
# an earlier burst: truncate it too, not only when writes stop altogether (failing webhooks
# retried on their own schedules may never leave two quiet seconds).
_LIGHT_COMMITS_PER_S = 10
_LIGHT_WAL_BYTES = 1024 * 1024


class _Quiet:
    """Whether the writes have stopped (none for `idle_s`), or are few (fewer than
    `_LIGHT_COMMITS_PER_S` over the last `idle_s`), from a count that grows with each."""

    def __init__(self, idle_s: float, writes: int, now: float) -> None:
        self._idle_s = idle_s
        self._history: deque[tuple[float, int]] = deque([(now, writes)])
        self._last, self._since = writes, now

    def observe(self, writes: int, now: float) -> tuple[bool, bool]:
        """(idle, light) now."""
        history = self._history
        history.append((now, writes))
        while len(history) > 2 and now - history[1][0] >= self._idle_s:
            history.popleft()  # history[0]: the newest sample at least idle_s old
        if writes != self._last:
            self._last, self._since = writes, now
        idle = now - self._since >= self._idle_s
        start, writes_then = history[0]
        covered = now - start
        light = covered >= self._idle_s and writes - writes_then <= _LIGHT_COMMITS_PER_S * covered
        return idle, light
