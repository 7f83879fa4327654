"""Concurrent calls of one kind, sent to PostgreSQL as one statement.

A statement costs a round trip, a parse of its parameters, an executor start and (outside a
transaction) a commit with its WAL flush, whatever its number of rows. Measured with two
servers on this machine's two cores, that fixed cost, not the rows, was most of the CPU of
both the database and the servers: about 13 statements per workflow. So, as SQLite's group
commit does for its transactions, calls made while earlier ones are on their way are queued
and sent together when a slot frees: one statement per call when the server is idle (no added
latency, no timer to tune), one for dozens when it is busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Generic, TypeVar

__all__ = ["AGAIN", "Again", "Coalescer"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Again:
    def __repr__(self) -> str:
        return "AGAIN"


# What a flush returns for an item it could not settle in this batch (it lost a race, or
# another item of the batch touches the same rows): the item goes into the next batch.
AGAIN: Final = Again()

Flush = Callable[[list[ItemT]], Awaitable[Sequence["ResultT | BaseException | Again"]]]


class Coalescer(Generic[ItemT, ResultT]):
    """`await submit(item)` returns the item's result from a `flush(items)` shared with the
    calls queued beside it. At most `in_flight` flushes run at once; each takes at most
    `max_batch` items, oldest first."""

    def __init__(
        self, flush: Flush[ItemT, ResultT], *, in_flight: int = 1, max_batch: int = 256
    ) -> None:
        self._flush = flush
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._queue: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def submit(self, item: ItemT) -> ResultT:
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._schedule()
        return await future

    async def wait_idle(self) -> None:
        """Until nothing is queued or being flushed (before the pool closes)."""
        while self._running or self._queue:
            if self._running:
                await asyncio.wait(set(self._running))
            else:
                await asyncio.sleep(0)

    def _schedule(self) -> None:
        # On the next turn of the loop, so that every call made in this one (a gather of a
        # timer batch, say) goes into the same flush.
        if not self._scheduled and len(self._running) < self._in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        while self._queue and len(self._running) < self._in_flight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            task = asyncio.ensure_future(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._queue:
            self._schedule()

    async def _run(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException as exc:  # every caller of the batch learns of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        again = []
        for (item, future), result in zip(batch, results, strict=True):
            if isinstance(result, Again):
                again.append((item, future))
            elif future.done():
                continue  # its caller was cancelled; the work itself was done
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._queue[:0] = again  # ahead of newer calls: they keep their order
