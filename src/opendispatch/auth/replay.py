"""Each JWT is good for one request: its `jti` is remembered until the token expires.

Vonage's SDKs sign a fresh token, with a fresh `jti`, for every request, so a token seen
twice is a captured one being replayed. The database is the shared truth (every server
process on one PostgreSQL sees the same `seen_tokens`, and a restart forgets nothing); the
in-process set in front only answers repeats without a round trip, so a flood of one
replayed token costs no database work. A new `jti` always costs one insert: on SQLite it
rides the group commit with the request's other writes; on PostgreSQL it is one short
statement. Figures in the commit that added this (bench/accept.py --auth jwt).

Rows are deleted once their token has expired, by the retention worker
(`Store.forget_expired_tokens`); the in-process set forgets on its own, and is bounded.
"""

from __future__ import annotations

from enum import StrEnum

from opendispatch.store.protocol import Store

__all__ = ["JwtReplay", "SeenTokens"]

# Far enough for any real token, small enough for a 64-bit column: `exp: 1e300` is a finite
# number, and is remembered until this.
_LATEST_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z


class JwtReplay(StrEnum):
    """What a second use of one token's `jti` gets (`serve --jwt-replay`)."""

    REFUSE = "refuse"  # 401: for clients that sign a token per request (Vonage's SDKs)
    ALLOW = "allow"  # for clients that reuse one token until it expires


class SeenTokens:
    """`first_use(application, jti, until)`: True once per token, False for every replay."""

    def __init__(self, store: Store, *, capacity: int = 100_000) -> None:
        self._store = store
        self._capacity = capacity
        self._recent: dict[tuple[str, str], int] = {}  # (application, jti) -> expires at (ms)

    async def first_use(
        self, application_id: str, jti: str, *, expires_at_ms: int, now_ms: int
    ) -> bool:
        key = (application_id, jti)
        known = self._recent.get(key)
        if known is not None and known >= now_ms:
            return False
        expires_at_ms = min(expires_at_ms, _LATEST_MS)
        if not await self._store.remember_token(
            application_id, jti, expires_at_ms=expires_at_ms, now_ms=now_ms
        ):
            self._keep(key, expires_at_ms, now_ms)  # answer the next replay from memory
            return False
        self._keep(key, expires_at_ms, now_ms)
        return True

    def _keep(self, key: tuple[str, str], expires_at_ms: int, now_ms: int) -> None:
        if len(self._recent) >= self._capacity:
            # Drop what has expired; if the set is still full, start over: the database
            # still knows every token, memory only saves it some work.
            self._recent = {k: until for k, until in self._recent.items() if until >= now_ms}
            if len(self._recent) >= self._capacity // 2:  # else the next call prunes again
                self._recent.clear()
        self._recent[key] = expires_at_ms
