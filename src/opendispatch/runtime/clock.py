"""Time for the runtime, behind one seam so tests drive it instead of sleeping.

Workers never call `time` or `asyncio.sleep` for a deadline: they ask the clock for `now_ms()`
and wait with `sleep_until(deadline, wake)`, which returns when the deadline is reached or
when `wake` is set (new work arrived sooner). `ManualClock` only moves when a test advances it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep_until(self, deadline_ms: int | None, wake: asyncio.Event) -> None:
        """Return at `deadline_ms` (never, if None) or as soon as `wake` is set."""


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until(self, deadline_ms: int | None, wake: asyncio.Event) -> None:
        if wake.is_set():
            return
        timeout = None if deadline_ms is None else max(0.0, (deadline_ms - self.now_ms()) / 1000)
        if timeout == 0.0:
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the wake does, and a worker being stopped then sleeps on for ever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await wake.wait()


class ManualClock:
    """A clock that stands still until `advance` (or `set`) moves it; sleepers wake on time."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00:00Z
        self._now_ms = start_ms
        self._moved = asyncio.Event()

    def now_ms(self) -> int:
        return self._now_ms

    async def advance(self, ms: int) -> None:
        await self.set(self._now_ms + ms)

    async def set(self, now_ms: int) -> None:
        if now_ms < self._now_ms:
            raise ValueError("time does not go backwards")
        self._now_ms = now_ms
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        await asyncio.sleep(0)  # let woken sleepers look at the new time

    async def sleep_until(self, deadline_ms: int | None, wake: asyncio.Event) -> None:
        while not wake.is_set() and (deadline_ms is None or self._now_ms < deadline_ms):
            watchers = {
                asyncio.ensure_future(wake.wait()),
                asyncio.ensure_future(self._moved.wait()),
            }
            _, pending = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            for watcher in pending:
                watcher.cancel()
