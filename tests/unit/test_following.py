"""`opendispatch tail`'s reading of rows that commit out of order (cli/following.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from opendispatch.cli.following import SettlingCursor, read_new

Row = tuple[int, str]  # (position, key)


def follow(rows: list[Row], cursor: SettlingCursor[int], now_ms: int, page: int = 500) -> list[str]:
    async def read(position: int, limit: int) -> Sequence[Row]:
        return sorted(row for row in rows if row[0] >= position)[:limit]

    found = asyncio.run(
        read_new(
            cursor,
            read,
            position_of=lambda row: row[0],
            key_of=lambda row: row[1],
            now_ms=now_ms,
            page=page,
        )
    )
    return [row[1] for row in found]


def test_a_row_committed_after_a_later_one_is_found_once():
    rows: list[Row] = [(10, "a"), (12, "c")]
    cursor = SettlingCursor(0, settle_ms=2_000)
    assert follow(rows, cursor, now_ms=1_000) == ["a", "c"]
    rows.append((11, "b"))  # its transaction took longer
    assert follow(rows, cursor, now_ms=1_500) == ["b"]
    assert follow(rows, cursor, now_ms=5_000) == []
    assert cursor.position == 12  # moved up once what it saw had settled
    assert cursor.remembered == 1  # the row at the position itself, read again


def test_every_row_is_found_exactly_once_whatever_the_commit_order():
    generator = random.Random(7)
    rows: list[Row] = []
    cursor = SettlingCursor(10_000, settle_ms=2_000)
    found: list[str] = []
    for poll in range(1, 400):
        now = 12_000 + poll * 250
        for _ in range(generator.randint(0, 30)):  # positions taken up to 1.5 s ago
            rows.append((now - generator.randint(0, 1_500), f"r{len(rows)}"))
        found += follow(rows, cursor, now_ms=now, page=7)  # pages smaller than a poll's rows
    assert sorted(found) == sorted(key for _, key in rows)
    assert len(found) == len(set(found))
