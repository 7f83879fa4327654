"""Delivers webhooks at least once: sign, POST, record; retry with backoff; give up as dead.

Isolation is the point of the shape here; three limits bound what one tenant can take:

- deliveries run concurrently up to a global limit (`concurrency`, 256);
- each application may hold at most `per_application` (64) of those, counting its webhooks
  claimed and waiting for a slot; the claim query skips an application at its limit, through
  its own range of the due index, so its backlog costs other applications nothing;
- each endpoint (an application's URL) has its own limit, which starts small and backs off
  while the endpoint keeps failing (see `endpoint_health`): a receiver that hangs holds at
  most 8 slots for one timeout, then one probe per backoff period, and its webhooks wait in
  the store (not counted as attempts) until it answers again; then they are all due at once.

So a slow or dead receiver delays only its own webhooks: other applications' deliveries, and
every workflow (which never waits for a webhook), go on at full speed. A final report is
claimable only once its workflow's earlier webhooks are delivered or dead (the claim query
sees to it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from opendispatch import __version__, event_log
from opendispatch.errors import DatabaseUnavailable
from opendispatch.metrics.instruments import Metrics
from opendispatch.retry import RetryPolicy, next_attempt_at
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.endpoint_health import Admission, EndpointHealth, Verdict
from opendispatch.runtime.workers import Worker
from opendispatch.store.protocol import Store
from opendispatch.store.records import (
    ApplicationCredentials,
    WebhookAttempt,
    WebhookDeferral,
    WebhookJob,
)
from opendispatch.webhooks.client import DeliveryOutcome
from opendispatch.webhooks.signing import Signer

__all__ = ["WebhookPoster", "WebhookWorker"]

log = logging.getLogger(__name__)

_USER_AGENT = f"OpenDispatch/{__version__}"
# A safety net (final reports held by an earlier version, whose release raced): it walks every
# held report, so it runs rarely; endpoint health is tidied at the same time.
_SWEEP_EVERY_MS = 60_000
_LOOK_AGAIN_MS = 2_000
# An application at its delivery limit this recently has a backlog of its own: its webhooks'
# waits say nothing about the server's.
_HELD_BACK_S = 5.0
# An attempt's outcome as `opendispatch_webhook_deliveries_total` names it, by its new state.
_OUTCOMES = {"delivered": "delivered", "pending": "failed", "dead": "dead"}

Endpoint = tuple[str, str]  # (application_id, url)


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
        probe_wait_ms: int = 5_000,
        on_queue_delay: Callable[[float], None] = lambda delay_s: None,
        metrics: Metrics,
    ) -> None:
        """`probe_wait_ms`: how long to wait for a probe's answer (the client's timeout).
        `on_queue_delay`: told how long new webhooks waited (see `admission`). `metrics`:
        told each attempt's outcome."""
        super().__init__(clock)
        self._store = store
        self.client = client
        self._signer = signer
        self._retry = retry
        self._concurrency = concurrency
        self._per_application = per_application
        self._lease_ms = lease_ms
        self._health = EndpointHealth(
            initial_limit=min(8, per_application),
            max_limit=per_application,
            probe_wait_ms=probe_wait_ms,
        )
        self._on_queue_delay = on_queue_delay
        self._metrics = metrics
        self._saturated_at: dict[str, float] = {}  # monotonic time an app was last at its limit
        self._per_app_in_flight: Counter[str] = Counter()
        # Claimed while their endpoint was at its limit: they start as its deliveries end.
        # They count towards their application's limit, so this stays bounded.
        self._waiting: dict[Endpoint, deque[WebhookJob]] = defaultdict(deque)
        self._per_app_waiting: Counter[str] = Counter()
        self._credentials: dict[str, _CachedCredentials] = {}
        self._outcomes: list[WebhookAttempt] = []
        self._deferrals: list[WebhookDeferral] = []
        self._found_nothing = False
        self._next_sweep_ms = 0
        self._recording: asyncio.Future[None] | None = None
        self._deferring: asyncio.Future[None] | None = None
        self._random = random.Random()
        self.delivered = 0
        self.failed_attempts = 0
        self.deferred = 0

    @property
    def busy(self) -> bool:
        return (
            super().busy
            or any(self._waiting.values())
            or bool(self._deferrals)
            or self._deferring is not None
        )

    def _saturated(self) -> frozenset[str]:
        limit = self._per_application
        return frozenset(
            app
            for app, count in self._per_app_in_flight.items()
            if count + self._per_app_waiting[app] >= limit
        ) | frozenset(app for app, count in self._per_app_waiting.items() if count >= limit)

    async def run_once(self) -> bool:
        now = self.clock.now_ms()
        if now >= self._next_sweep_ms:
            self._next_sweep_ms = now + _SWEEP_EVERY_MS
            await self._store.release_settled_final_reports()
            self._health.forget_idle(now_ms=now)
        room = self._concurrency - len(self._in_flight)
        self.at_capacity = room <= 0
        if self.at_capacity:
            return False
        saturated = self._saturated()
        wall = time.monotonic()
        for application_id in saturated:
            self._saturated_at[application_id] = wall
        limit = min(room, self._per_application)
        jobs = await self._store.claim_due_webhooks(
            now_ms=self.clock.now_ms(),
            limit=limit,
            lease_ms=self._lease_ms,
            exclude_applications=saturated,
        )
        # No other application has webhooks due: those at their limit may use the idle slots,
        # all but one application's share, kept free for whoever comes next. (A lone busy
        # application on a loaded server needs more than 64 in flight: its round trips wait
        # for the loop. Measured at 1.5x capacity offered: 924 and 879 completed/s with the
        # strict limit, 981 and 1,080/s with this.) Webhooks held back in memory by their
        # endpoint's limit take slots too here, so what is held stays bounded.
        spare = room - len(jobs) - sum(self._per_app_waiting.values()) - self._per_application
        beyond: list[WebhookJob] = []
        if saturated and len(jobs) < limit and spare > 0:
            beyond = await self._store.claim_due_webhooks(
                now_ms=self.clock.now_ms(),
                limit=min(spare, self._per_application),
                lease_ms=self._lease_ms,
                exclude_applications=frozenset(),
            )
        self._found_nothing = not jobs and not beyond
        now = self.clock.now_ms()
        waited = 0
        for job, beyond_limit in [(job, False) for job in jobs] + [(job, True) for job in beyond]:
            if self._admit(job, now) and self._tells_the_server_is_behind(
                job, wall, beyond_limit=beyond_limit
            ):
                waited = max(waited, self.waited_ms(job.created_at_ms, now))
        jobs += beyond
        if jobs:
            self._on_queue_delay(waited / 1000)
        return bool(jobs)

    def _tells_the_server_is_behind(
        self, job: WebhookJob, wall: float, *, beyond_limit: bool = False
    ) -> bool:
        """Whether this webhook's wait measures the server (for admission control), not its
        own application's limit or its receiver: a new status webhook, sent at once to an
        endpoint that is healthy, of an application not held back by its limit lately (or
        claimed `beyond_limit`, when no other application was waiting: the server's doing)."""
        if job.kind != "message_status" or job.attempts != 1 or job.replays:
            return False
        held_back = None if beyond_limit else self._saturated_at.get(job.application_id)
        if held_back is not None:
            if wall - held_back < _HELD_BACK_S:
                return False
            del self._saturated_at[job.application_id]
        return self._health.healthy((job.application_id, job.url))

    def _admit(self, job: WebhookJob, now: int) -> bool:
        """Start a claimed webhook, queue it behind its endpoint, or hand it back; True if
        it started at once."""
        endpoint = (job.application_id, job.url)
        decision = self._health.admit(endpoint, now_ms=now, jitter=self._random.random())
        if decision.admission is Admission.SEND:
            self._start(job, endpoint, probe=decision.probe)
            return True
        if decision.admission is Admission.WAIT:
            self._waiting[endpoint].append(job)
            self._per_app_waiting[job.application_id] += 1
        else:
            self._hand_back(job, endpoint, decision.retry_at_ms)
        return False

    def _hand_back(self, job: WebhookJob, endpoint: Endpoint, retry_at_ms: int) -> None:
        """Its endpoint is backing off. Every webhook still gets one real attempt in each
        retry period: one just replayed (an operator says the receiver is fixed: it probes
        at once), or one whose period would end before the backoff does."""
        period_ends_ms = job.retry_from_ms + self._retry.give_up_after_ms
        if job.attempts == 1 and (job.replays or retry_at_ms > period_ends_ms):
            forced = self._health.force(endpoint, now_ms=self.clock.now_ms())
            self._start(job, endpoint, probe=forced.probe)
        else:
            self._defer(job, retry_at_ms)

    def _start(self, job: WebhookJob, endpoint: Endpoint, *, probe: bool) -> None:
        self._per_app_in_flight[job.application_id] += 1
        task = asyncio.ensure_future(self._deliver(job, endpoint, probe=probe))
        self._in_flight.add(task)
        task.add_done_callback(functools.partial(self._done, job=job, endpoint=endpoint))

    def _done(self, task: asyncio.Task[None], *, job: WebhookJob, endpoint: Endpoint) -> None:
        self._in_flight.discard(task)
        application_id = job.application_id
        self._per_app_in_flight[application_id] -= 1
        if self._per_app_in_flight[application_id] <= 0:
            del self._per_app_in_flight[application_id]
        self._start_waiting(endpoint)
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, DatabaseUnavailable):  # logged once
            log.error("webhook delivery failed unexpectedly", exc_info=error)
        self.notify()  # a slot is free, and a final report may have become claimable

    def _start_waiting(self, endpoint: Endpoint) -> None:
        waiting = self._waiting.get(endpoint)
        now = self.clock.now_ms()
        while waiting:
            job = waiting[0]
            decision = self._health.admit(endpoint, now_ms=now, jitter=self._random.random())
            if decision.admission is Admission.WAIT:
                break
            waiting.popleft()
            self._unwait(job)
            if decision.admission is Admission.SEND:
                self._start(job, endpoint, probe=decision.probe)
            else:
                self._hand_back(job, endpoint, decision.retry_at_ms)
        if waiting is not None and not waiting:
            del self._waiting[endpoint]

    def _unwait(self, job: WebhookJob) -> None:
        self._per_app_waiting[job.application_id] -= 1
        if self._per_app_waiting[job.application_id] <= 0:
            del self._per_app_waiting[job.application_id]

    def _defer(self, job: WebhookJob, retry_at_ms: int) -> None:
        """Hand a claimed webhook back unattempted; past its retry period, it is dead (it was
        tried in the period, and its endpoint kept failing)."""
        if retry_at_ms > job.retry_from_ms + self._retry.give_up_after_ms:
            reason = "gave up: the endpoint kept failing for the whole retry period"
            event_log.webhook_dead(job, attempts=job.attempts - 1, reason=reason)  # not tried now
            self._metrics.webhook_attempt(
                kind=job.kind, outcome="dead", request_ms=None, delivered_after_ms=None
            )
            self._record(
                WebhookAttempt(
                    id=job.id,
                    dispatch_uuid=job.dispatch_uuid,
                    state="dead",
                    next_attempt_at_ms=None,
                    status_code=None,
                    error=reason,
                    at_ms=self.clock.now_ms(),
                )
            )
            return
        self.deferred += 1
        self._deferrals.append(WebhookDeferral(id=job.id, until_ms=retry_at_ms))
        if self._deferring is None:
            self._deferring = asyncio.ensure_future(self._write_deferrals())

    async def _write_deferrals(self) -> None:
        try:
            await asyncio.sleep(self.batch_window_s)  # other deferrals this turn join in
            deferrals, self._deferrals = self._deferrals, []
            await self._store.defer_webhooks(deferrals)
        except DatabaseUnavailable:
            pass  # logged once by the store
        except Exception:
            log.exception("could not hand webhooks back; their leases will run out")
        finally:
            self._deferring = None
            if self._deferrals:
                self._deferring = asyncio.ensure_future(self._write_deferrals())

    async def next_due_ms(self) -> int | None:
        if len(self._in_flight) >= self._concurrency:
            return None  # a finishing delivery wakes us
        due = await self._store.next_webhook_due_ms()
        now = self.clock.now_ms()
        if due is not None and due <= now and self._found_nothing:
            # Due, yet nothing could be claimed: it belongs to an application at its limit.
            # A finishing delivery wakes us; look again in a second regardless.
            due = now + 1000
        # Look again within 2 s whatever it says: another process (`webhooks replay`) may
        # have put webhooks back without anyone to wake us.
        look_again = min(now + _LOOK_AGAIN_MS, self._next_sweep_ms)
        return look_again if due is None else min(due, look_again)

    async def _deliver(self, job: WebhookJob, endpoint: Endpoint, *, probe: bool) -> None:
        credentials = await self._credentials_for(job.application_id)
        body = job.payload.encode()
        if credentials is None:  # the application was deleted: nobody to sign for or tell
            outcome = DeliveryOutcome(
                delivered=False,
                status_code=None,
                error="not sent: the application was deleted",
                elapsed_ms=0.0,
                permanent=True,
            )
        else:
            # Unique per attempt, also across replays (receivers may refuse a repeated jti).
            jti = f"{job.event_id}.{job.attempts}"
            if job.replays:
                jti = f"{job.event_id}.r{job.replays}.{job.attempts}"
            headers = {
                "Content-Type": "application/json",
                "Authorization": self._signer.authorization(
                    body,
                    signature_secret=credentials.signature_secret,
                    api_key=credentials.application.api_key,
                    application_id=job.application_id,
                    now_s=self.clock.now_ms() // 1000,
                    jti=jti,
                ),
                "webhook-id": job.event_id,
                "User-Agent": _USER_AGENT,
            }
            outcome = await self.client.post(job.url, body, headers)
        now = self.clock.now_ms()
        verdict = self._health.finished(
            endpoint,
            delivered=outcome.delivered,
            probe=probe,
            now_ms=now,
            jitter=self._random.random(),
        )
        if verdict is Verdict.OPENED:
            event_log.webhook_endpoint_failing(
                application_id=job.application_id, url=job.url, reason=outcome.error
            )
            self._start_waiting(endpoint)  # what waits for it is handed back
        elif verdict is Verdict.RECOVERED:
            # Handed-back webhooks not yet written would miss the wake (they are still leased
            # until then) and wait out their backoff: write them first.
            while self._deferring is not None:
                await asyncio.shield(self._deferring)
            woken = await self._store.wake_webhooks(
                application_id=job.application_id, url=job.url, now_ms=now
            )
            event_log.webhook_endpoint_recovered(
                application_id=job.application_id, url=job.url, woken=woken
            )
        attempt = self._attempt(job, outcome)
        self._metrics.webhook_attempt(
            kind=job.kind,
            outcome=_OUTCOMES[attempt.state],
            request_ms=None if credentials is None else outcome.elapsed_ms,
            delivered_after_ms=(
                attempt.at_ms - job.retry_from_ms if attempt.state == "delivered" else None
            ),
        )
        await self._record(attempt)

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
            event_log.webhook_delivered(
                job, status_code=outcome.status_code, elapsed_ms=outcome.elapsed_ms
            )
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
                first_attempt_at_ms=job.retry_from_ms,
                now_ms=now,
                jitter=self._random.random(),
            )
        )
        if retry_at is None:
            event_log.webhook_dead(job, attempts=job.attempts, reason=outcome.error)
        else:
            event_log.webhook_attempt_failed(
                job,
                status_code=outcome.status_code,
                reason=outcome.error,
                retry_in_ms=retry_at - now,
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

    def forget_application(self, application_id: str | None) -> None:
        """An application changed or was deleted (None: any may have): read it again."""
        if application_id is None:
            self._credentials.clear()
        else:
            self._credentials.pop(application_id, None)

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
