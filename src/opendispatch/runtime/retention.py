"""Retention: what has ended and is older than `--retention-days` is deleted, a little at a time.

Without it the database grows for ever (about 11 KB per workflow with its webhooks). Deleted:
webhooks delivered or given up (dead) longer ago than the retention, then workflows that ended
longer ago than that and have no webhook left, with their messages and statuses. A dead
webhook is kept until it is replayed or expires by the same rule, and its workflow with it;
nothing pending or running is ever touched. The `jti`s of JWTs seen (auth/replay.py) go
once their token has expired, and idempotency keys 24 hours after their first use, by the
same batches.

Deletes go in batches of `batch_size` rows, each its own short transaction, with a pause
between full batches: on SQLite they share the one writer with the hot path (a batch of 500
measured a few milliseconds), and on PostgreSQL rows another process is deleting are skipped,
not waited for. Once a batch comes back short, the backlog is gone until the next check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from opendispatch.runtime.clock import Clock
from opendispatch.runtime.workers import Worker
from opendispatch.store.protocol import Store
from opendispatch.store.records import IDEMPOTENCY_WINDOW_MS

__all__ = ["Expire", "RetentionWorker"]

log = logging.getLogger(__name__)


class Expire(Protocol):
    """More retention (a provider's own records): one batch before `before_ms`; how many."""

    async def __call__(self, *, before_ms: int, limit: int) -> int: ...


class RetentionWorker(Worker):
    name = "retention"

    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        retention_ms: int,
        batch_size: int = 500,
        check_every_ms: int | None = None,
        pause_s: float = 0.02,
        expire_also: Sequence[Expire] = (),
    ) -> None:
        super().__init__(clock)
        if retention_ms < 1 or batch_size < 1:
            raise ValueError("retention and batch size must be positive")
        self._store = store
        self._retention_ms = retention_ms
        self._batch_size = batch_size
        # Once a minute, or more often for a short retention (benchmarks use seconds).
        self._check_every_ms = check_every_ms or max(1_000, min(60_000, retention_ms // 10))
        self._pause_s = pause_s
        self._expire_also = tuple(expire_also)
        self._next_check_ms = 0
        self.deleted_webhooks = 0
        self.deleted_workflows = 0

    async def run_once(self) -> bool:
        now = self.clock.now_ms()
        if now < self._next_check_ms:
            return False
        before_ms = now - self._retention_ms
        expired = await self._store.delete_expired(before_ms=before_ms, limit=self._batch_size)
        self.deleted_webhooks += expired.webhooks
        self.deleted_workflows += expired.workflows
        others = [
            await also(before_ms=before_ms, limit=self._batch_size) for also in self._expire_also
        ]
        # The jti of a JWT is kept only until the token expires, whatever the retention.
        others.append(await self._store.forget_expired_tokens(now_ms=now, limit=self._batch_size))
        others.append(
            await self._store.forget_idempotency_keys(
                before_ms=now - IDEMPOTENCY_WINDOW_MS, limit=self._batch_size
            )
        )
        if max(expired.webhooks, expired.workflows, *others) >= self._batch_size:
            await asyncio.sleep(self._pause_s)  # more to delete: let the hot path go first
            return True
        if expired.webhooks or expired.workflows:
            log.debug(
                "retention deleted %d webhooks and %d workflows",
                expired.webhooks,
                expired.workflows,
            )
        self._next_check_ms = now + self._check_every_ms
        return False

    async def next_due_ms(self) -> int | None:
        return self._next_check_ms
