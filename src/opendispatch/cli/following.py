"""Following a table from a position when its rows may commit out of order.

A row's position (an id, a time) is taken before its transaction commits, so a row may
become visible after one with a later position: on SQLite a workflow's id is taken when its
request arrives, and on PostgreSQL many processes commit at once. A reader that resumed
just after the last position it saw would skip such a row for good.

So the reader resumes `settle_ms` behind: it reads again from the position of the newest
row it saw at least that long ago, and drops the rows it has already seen (remembered
only for that long). A row committed more than `settle_ms` after a later one would be
missed; transactions here last milliseconds, so two seconds is generous. Pure: the
caller passes the time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

__all__ = ["SettlingCursor", "read_new"]

P = TypeVar("P", int, str)
R = TypeVar("R")


class SettlingCursor(Generic[P]):
    def __init__(self, start: P, *, settle_ms: int = 2_000) -> None:
        self.position: P = start  # read rows at or after this
        self._settle_ms = settle_ms
        self._seen: dict[Hashable, tuple[P, int]] = {}  # key -> (its position, when seen)

    def fresh(self, key: Hashable, position: P, now_ms: int) -> bool:
        """True the first time `key` is offered (then it is remembered)."""
        if key in self._seen:
            return False
        self._seen[key] = (position, now_ms)
        return True

    def settle(self, now_ms: int) -> None:
        """Move the position up to the newest row seen `settle_ms` ago; forget the rows
        behind it (those at it are read again, so they stay remembered)."""
        settled = [
            position
            for position, seen_at in self._seen.values()
            if now_ms - seen_at >= self._settle_ms
        ]
        if not settled:
            return
        self.position = max(self.position, max(settled))
        self._seen = {key: value for key, value in self._seen.items() if value[0] >= self.position}

    @property
    def remembered(self) -> int:
        return len(self._seen)


async def read_new(
    cursor: SettlingCursor[P],
    read: Callable[[P, int], Awaitable[Sequence[R]]],
    *,
    position_of: Callable[[R], P],
    key_of: Callable[[R], Hashable],
    now_ms: int,
    page: int = 500,
) -> list[R]:
    """The rows from the cursor's position on that it has not seen, oldest first; page by
    page, since the rows read again may fill a page."""
    found: list[R] = []
    start = cursor.position
    while True:
        rows = await read(start, page)
        found += [row for row in rows if cursor.fresh(key_of(row), position_of(row), now_ms)]
        if len(rows) < page:
            break
        last = position_of(rows[-1])
        if last == start:  # a whole page at one position: nothing further can be read
            break
        start = last
    cursor.settle(now_ms)
    return found
