"""Requests per second per application (`--rate-limit`), as the hosted service limits each key.

A token bucket per application: it holds at most one second of requests (so a client may
burst up to the rate, then is paced at it), refills continuously, and a request that finds it
empty is answered 429 with `Retry-After` (whole seconds until a token is back). Pure: the
caller passes the time. Buckets are kept per process: on several PostgreSQL processes behind a
load balancer, each allows the rate, so set it to the budget divided by the processes.
Only authenticated applications get a bucket, so a stranger cannot grow the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RateLimiter", "parse_rate"]


def parse_rate(text: str) -> float:
    """`30/s`, `30` or `0.5/s`; `0` or `off` for no limit."""
    value = text.strip().lower()
    if value == "off":
        return 0.0
    number = value.removesuffix("/s").strip()
    try:
        rate = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate: write it as N/s, e.g. 30/s") from None
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"{text!r} is not a rate: N must be a non-negative number")
    return rate


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_ms: int


class RateLimiter:
    def __init__(self, rate_per_s: float) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive (no limiter when there is no limit)")
        self.rate_per_s = rate_per_s
        self.capacity = max(1.0, rate_per_s)
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, key: str, now_ms: int) -> float:
        """0 when the request may go on; else the seconds until it could."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.capacity, now_ms)
        elapsed_s = max(0, now_ms - bucket.at_ms) / 1000
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed_s * self.rate_per_s)
        bucket.at_ms = max(bucket.at_ms, now_ms)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate_per_s
