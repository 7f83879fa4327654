"""Cross-process wake-ups: one dedicated connection LISTENing on a channel.

NOTIFY is only a hint that work was created somewhere: workers still poll their next due
time, so a notification lost while the connection was down delays work, it does not lose it.
Still, after reconnecting the callback gets `"*"` so the runtime re-checks every queue at
once instead of waiting for its next planned look.

The connection is outside the pool: a LISTEN belongs to a session, and a pooled connection
is handed to other work (and reset) between uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from opendispatch.store.postgres.driver import DRIVER_ERRORS, Connection

__all__ = ["EVERYTHING", "Listener"]

log = logging.getLogger(__name__)

EVERYTHING = "*"  # the payload that means "notifications may have been missed: look at all"


class Listener:
    """Calls `callback(payload)` for each notification on `channel`, across reconnections."""

    def __init__(
        self,
        *,
        connect: Callable[[], Awaitable[Connection]],
        channel: str,
        callback: Callable[[str], None],
        backoff_s: tuple[float, float] = (0.05, 2.0),
        ping_interval_s: float = 30.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._callback = callback
        self._backoff_first_s, self._backoff_max_s = backoff_s
        # A connection whose peer vanished without a reset (a host down, a cut network) looks
        # alive until something is sent: an idle LISTEN would wait on it forever.
        self._ping_interval_s = ping_interval_s
        self._connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen before returning (a NOTIFY sent after this is heard); raises the driver's
        error if the first connection fails. Later drops are survived in the background."""
        connection, lost = await self._listen()
        self._task = asyncio.create_task(
            self._supervise(connection, lost), name="opendispatch-listen"
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()  # first, so closing the connection does not look like a drop
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_connection()

    async def _listen(self) -> tuple[Connection, asyncio.Event]:
        """Connect and LISTEN; the event is set when the connection terminates."""
        connection = await self._connect()
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(self._channel, self._on_notification)
        except BaseException:
            connection.terminate()
            raise
        self._connection = connection
        return connection, lost

    async def _supervise(self, connection: Connection, lost: asyncio.Event) -> None:
        while True:
            await self._wait_until_lost(connection, lost)
            log.warning("the LISTEN connection dropped; reconnecting")
            await self._close_connection()
            connection, lost = await self._reconnect()
            self._deliver(EVERYTHING)

    async def _wait_until_lost(self, connection: Connection, lost: asyncio.Event) -> None:
        while True:
            try:  # asyncio.timeout: a cancellation is never swallowed (see runtime/clock.py)
                async with asyncio.timeout(self._ping_interval_s):
                    await lost.wait()
                return
            except TimeoutError:
                pass
            try:
                await connection.fetchval("SELECT 1", timeout=self._ping_interval_s)
            except DRIVER_ERRORS as exc:
                log.warning("the LISTEN connection does not answer: %s", exc)
                return

    async def _reconnect(self) -> tuple[Connection, asyncio.Event]:
        delay = self._backoff_first_s
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._listen()
            except DRIVER_ERRORS as exc:
                log.warning("reconnecting to LISTEN failed (again in %.2f s): %s", delay, exc)
                delay = min(delay * 2, self._backoff_max_s)

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=5)
            except DRIVER_ERRORS:
                connection.terminate()

    def _on_notification(
        self, _connection: Connection, _pid: int, _channel: str, payload: str
    ) -> None:
        self._deliver(payload)

    def _deliver(self, payload: str) -> None:
        try:
            self._callback(payload)
        except Exception:  # one bad callback must not end the listening
            log.exception("the notification callback failed on %r", payload)
