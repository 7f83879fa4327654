"""Delivers webhooks at least once: sign, POST, record; retry with backoff; give up as dead.

Isolation is the point of the shape here. Deliveries run concurrently up to a global limit,
and each application may hold at most `per_application` of those slots: an application whose
receiver is slow or dead fills its own slots, and the claim query skips its webhooks until a
slot frees, so other applications' webhooks (and every workflow, which never waits for a
webhook) go on at full speed. A final report is claimable only once its workflow's earlier
webhooks are delivered or dead (the claim query sees to it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from opendispatch import __version__
from opendispatch.retry import RetryPolicy, next_attempt_at
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.workers import Worker
from opendispatch.store.protocol import Store
from opendispatch.store.records import ApplicationCredentials, WebhookAttempt, WebhookJob
from opendispatch.webhooks.client import DeliveryOutcome
from opendispatch.webhooks.destinations import redact_url
from opendispatch.webhooks.signing import Signer

__all__ = ["WebhookPoster", "WebhookWorker"]

log = logging.getLogger(__name__)

_USER_AGENT = f"OpenDispatch/{__version__}"
_SWEEP_EVERY_MS = 2000


class WebhookPoster(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryOutcome: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _CachedCredentials:
    credentials: ApplicationCredentials
    fresh_until: float


class WebhookWorker(Worker):
    name = "webhooks"

    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        client: WebhookPoster,
        signer: Signer,
        retry: RetryPolicy,
        concurrency: int = 256,
        per_application: int = 64,
        lease_ms: int = 30_000,
    ) -> None:
        super().__init__(clock)
        self._store = store
        self.client = client
        self._signer = signer
        self._retry = retry
        self._concurrency = concurrency
        self._per_application = per_application
        self._lease_ms = lease_ms
        self._per_app_in_flight: Counter[str] = Counter()
        # Claimed beyond their application's limit (a claim takes a batch): they start as that
        # application's deliveries finish, without taking another application's slot.
        self._waiting: dict[str, deque[WebhookJob]] = defaultdict(deque)
        self._credentials: dict[str, _CachedCredentials] = {}
        self._outcomes: list[WebhookAttempt] = []
        self._found_nothing = False
        self._next_sweep_ms = 0
        self._recording: asyncio.Future[None] | None = None
        self._random = random.Random()
        self.delivered = 0
        self.failed_attempts = 0

    @property
    def busy(self) -> bool:
        return super().busy or any(self._waiting.values())

    def _saturated(self) -> frozenset[str]:
        limit = self._per_application
        return frozenset(
            app
            for app, count in self._per_app_in_flight.items()
            if count + len(self._waiting.get(app, ())) >= limit
        )

    async def run_once(self) -> bool:
        now = self.clock.now_ms()
        if now >= self._next_sweep_ms:
            # A final report held by a transition at the very moment its last pending webhook
            # was recorded elsewhere (each unseen by the other) is released here.
            self._next_sweep_ms = now + _SWEEP_EVERY_MS
            await self._store.release_settled_final_reports()
        room = self._concurrency - len(self._in_flight)
        if room <= 0:
            return False
        jobs = await self._store.claim_due_webhooks(
            now_ms=self.clock.now_ms(),
            limit=min(room, self._per_application),
            lease_ms=self._lease_ms,
            exclude_applications=self._saturated(),
        )
        self._found_nothing = not jobs
        for job in jobs:
            if self._per_app_in_flight[job.application_id] < self._per_application:
                self._start(job)
            else:
                self._waiting[job.application_id].append(job)
        return bool(jobs)

    def _start(self, job: WebhookJob) -> None:
        self._per_app_in_flight[job.application_id] += 1
        task = asyncio.ensure_future(self._deliver(job))
        self._in_flight.add(task)
        task.add_done_callback(functools.partial(self._done, application_id=job.application_id))

    def _done(self, task: asyncio.Task[None], *, application_id: str) -> None:
        self._in_flight.discard(task)
        self._per_app_in_flight[application_id] -= 1
        if self._per_app_in_flight[application_id] <= 0:
            del self._per_app_in_flight[application_id]
        waiting = self._waiting.get(application_id)
        if waiting:
            self._start(waiting.popleft())
        elif waiting is not None:
            del self._waiting[application_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery failed unexpectedly", exc_info=task.exception())
        self.notify()  # a slot is free, and a final report may have become claimable

    async def next_due_ms(self) -> int | None:
        if len(self._in_flight) >= self._concurrency:
            return None  # a finishing delivery wakes us
        due = await self._store.next_webhook_due_ms()
        now = self.clock.now_ms()
        if due is not None and due <= now and self._found_nothing:
            # Due, yet nothing could be claimed: it belongs to an application at its limit.
            # A finishing delivery wakes us; look again in a second regardless.
            due = now + 1000
        return self._next_sweep_ms if due is None else min(due, self._next_sweep_ms)

    async def _deliver(self, job: WebhookJob) -> None:
        credentials = await self._credentials_for(job.application_id)
        body = job.payload.encode()
        if credentials is None:  # the application was deleted: nobody to sign for or tell
            outcome = DeliveryOutcome(
                delivered=False, status_code=None, error="unknown application", elapsed_ms=0.0
            )
        else:
            headers = {
                "Content-Type": "application/json",
                "Authorization": self._signer.authorization(
                    body,
                    signature_secret=credentials.signature_secret,
                    api_key=credentials.application.api_key,
                    application_id=job.application_id,
                    now_s=self.clock.now_ms() // 1000,
                    jti=f"{job.event_id}.{job.attempts}",  # unique per attempt
                ),
                "webhook-id": job.event_id,
                "User-Agent": _USER_AGENT,
            }
            outcome = await self.client.post(job.url, body, headers)
        await self._record(self._attempt(job, outcome))

    def _record(self, attempt: WebhookAttempt) -> asyncio.Future[None]:
        """Deliveries finishing in the same loop turn share one write."""
        self._outcomes.append(attempt)
        if self._recording is None:
            self._recording = asyncio.ensure_future(self._record_outcomes())
        return asyncio.shield(self._recording)

    async def _record_outcomes(self) -> None:
        await asyncio.sleep(self.batch_window_s)  # the other deliveries finishing add theirs
        outcomes, self._outcomes, self._recording = self._outcomes, [], None
        await self._store.record_webhook_attempts(outcomes)

    def _attempt(self, job: WebhookJob, outcome: DeliveryOutcome) -> WebhookAttempt:
        now = self.clock.now_ms()
        if outcome.delivered:
            self.delivered += 1
            return WebhookAttempt(
                id=job.id,
                dispatch_uuid=job.dispatch_uuid,
                state="delivered",
                next_attempt_at_ms=None,
                status_code=outcome.status_code,
                error=None,
                at_ms=now,
            )
        self.failed_attempts += 1
        retry_at = (
            None
            if outcome.permanent  # a refused destination: trying again cannot help
            else next_attempt_at(
                self._retry,
                attempts=job.attempts,
                first_attempt_at_ms=job.created_at_ms,
                now_ms=now,
                jitter=self._random.random(),
            )
        )
        if retry_at is None:
            log.warning(
                "webhook %s to %s is dead: %s", job.event_id, redact_url(job.url), outcome.error
            )
        return WebhookAttempt(
            id=job.id,
            dispatch_uuid=job.dispatch_uuid,
            state="pending" if retry_at is not None else "dead",
            next_attempt_at_ms=retry_at,
            status_code=outcome.status_code,
            error=outcome.error,
            at_ms=now,
        )

    async def _credentials_for(self, application_id: str) -> ApplicationCredentials | None:
        cached = self._credentials.get(application_id)
        if cached is not None and cached.fresh_until > time.monotonic():
            return cached.credentials
        credentials = await self._store.find_credentials(application_id)
        if credentials is not None:
            self._credentials[application_id] = _CachedCredentials(
                credentials, time.monotonic() + 30.0
            )
        return credentials
