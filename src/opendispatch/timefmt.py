"""Wall-clock time for people: ISO 8601 UTC with milliseconds, as the Dispatch spec writes it.

Internally every instant is an integer count of Unix milliseconds (`*_ms`): it sorts, indexes
and compares the same way in SQLite and PostgreSQL, and never meets a time zone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["iso_ms", "now_ms", "parse_iso_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_last_second = -1
_last_prefix = ""


def iso_ms(unix_ms: int) -> str:
    """`1577887200000` -> `"2020-01-01T14:00:00.000Z"`."""
    global _last_second, _last_prefix
    seconds, millis = divmod(unix_ms, 1000)
    if seconds != _last_second:  # most timestamps in a burst share their second
        _last_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = seconds
    return f"{_last_prefix}.{millis:03d}Z"


def parse_iso_ms(text: str) -> int:
    """Inverse of `iso_ms`; accepts any ISO 8601 form `datetime` understands, naive = UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def parse_iso_ms_or(value: object, default_ms: int) -> int:
    """A timestamp a provider may leave out or garble: `default_ms` (when we received it) then."""
    if not isinstance(value, str):
        return default_ms
    try:
        return parse_iso_ms(value)
    except (ValueError, OverflowError):
        return default_ms
