"""The loops that turn due work into engine events: sends, timers, provider statuses.

Each worker claims what is due, performs it, and otherwise sleeps until its earliest due
time, or until the runtime wakes it because a transaction just created earlier work. Nothing
pending lives in memory: a worker's whole state is a query away, which is why a restart loses
nothing and 100,000 pending timers cost no more memory than 1,000.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import msgspec

from opendispatch import event_log
from opendispatch.engine.model import MessageError, MessageStatus, StatusReported, TimerFired
from opendispatch.errors import DatabaseUnavailable
from opendispatch.metrics.instruments import Metrics
from opendispatch.providers.base import (
    Accepted,
    OutboundMessage,
    Rejected,
    SendResult,
    Unavailable,
    Unknown,
)
from opendispatch.retry import RetryPolicy, next_attempt_at
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.routing import RouteOutcome, Routes, send_along
from opendispatch.runtime.shell import Shell
from opendispatch.store.protocol import Store
from opendispatch.store.records import (
    SendCompletion,
    SendJob,
    SideWrites,
    Transition,
)

__all__ = [
    "PROVIDER_UNAVAILABLE",
    "EventWorker",
    "InboxWorker",
    "SendWorker",
    "TimerWorker",
    "Worker",
]

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder().decode

# A send that kept failing transiently for the whole retry period is rejected with this.
PROVIDER_UNAVAILABLE: Final = MessageError(
    code=1410, reason="The provider could not be reached; gave up retrying."
)

AfterTransition = Callable[[Transition | None], None]

# The `result` label of `opendispatch_sends_total`, by the provider's answer.
_RESULT_LABELS: Final[dict[type, str]] = {
    Accepted: "accepted",
    Rejected: "rejected",
    Unavailable: "unavailable",
    Unknown: "unknown",
}


class Worker(ABC):
    """Claim due work, perform it, sleep until more is due or `notify()` is called."""

    name = "worker"

    # Set by the runtime where each claim is a database round trip (PostgreSQL): after being
    # woken for new work, wait this long for more of it, so one claim takes a batch.
    batch_window_s: float = 0.0
    # Set by the runtime where another process may create work without being able to say
    # so (see `Runtime.start`): look for it at least this often.
    look_again_ms: int | None = None

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()  # set while asleep with nothing due now (tests wait on it)
        self.sleeping_until: int | None = None
        # When it last woke with room for more (the clock's time): work due before that
        # waited for its turn only since then (see `waited_ms`). Asleep because it had no
        # room (`at_capacity`), it is behind, and the wait goes on counting.
        self.awake_since_ms = clock.now_ms()
        self.at_capacity = False
        self._in_flight: set[asyncio.Task[None]] = set()

    def notify(self) -> None:
        self._wake.set()

    def waited_ms(self, due_at_ms: int, now_ms: int) -> int:
        """How long work due at `due_at_ms` waited for this worker, for admission control:
        since it was due, or since the worker last woke, whichever is later. A worker that
        falls behind never sleeps (or sleeps only for want of room), so its backlog counts in
        full; work that came due while it slept with nothing to do (overdue after a restart,
        or a test's clock moved on) is not a server behind."""
        return now_ms - max(due_at_ms, self.awake_since_ms)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if await self.run_once():
                    await asyncio.sleep(0)  # let the rest of the server breathe between batches
                    continue
                deadline = await self.next_due_ms()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:  # logged once by the store; waiting for an operator
                deadline = self.clock.now_ms() + 1000
            except Exception:
                log.exception("%s failed; retrying in 1 s", self.name)
                deadline = self.clock.now_ms() + 1000
            if self.look_again_ms is not None:
                look_again = self.clock.now_ms() + self.look_again_ms
                deadline = look_again if deadline is None else min(deadline, look_again)
            self.sleeping_until = deadline
            if deadline is None or deadline > self.clock.now_ms():
                self.idle.set()
            await self.clock.sleep_until(deadline, self._wake)
            if not self.at_capacity:
                self.awake_since_ms = self.clock.now_ms()
            self.idle.clear()
            self.sleeping_until = None
            if self.batch_window_s and self._wake.is_set():
                await asyncio.sleep(self.batch_window_s)

    @abstractmethod
    async def run_once(self) -> bool:
        """Do what is due now; True if anything was found (look again at once)."""

    @abstractmethod
    async def next_due_ms(self) -> int | None:
        """When something becomes due, if anything will."""

    @property
    def busy(self) -> bool:
        """Work in flight, or woken and about to look for more."""
        return bool(self._in_flight) or self._wake.is_set()

    async def drain(self, timeout_s: float) -> None:
        """Let work in flight finish (the loop itself is already stopped)."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout_s)


class EventWorker(Worker):
    """A worker whose work ends as engine events, applied through the shell and the store;
    after each, the runtime wakes whichever worker the transition gave new work."""

    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        shell: Shell,
        after_transition: AfterTransition,
        batch: int = 512,
        lease_ms: int = 30_000,
        on_queue_delay: Callable[[float], None] = lambda delay_s: None,
    ) -> None:
        """`on_queue_delay`: told how long the oldest work of each claim waited for its turn
        (see `waited_ms` and `admission`)."""
        super().__init__(clock)
        self._store = store
        self._shell = shell
        self._after = after_transition
        self._batch = batch
        self._lease_ms = lease_ms
        self._on_queue_delay = on_queue_delay

    async def _apply_all(self, applications: Iterable[Awaitable[Transition | None]]) -> None:
        for transition in await asyncio.gather(*applications):
            self._after(transition)


class SendWorker(EventWorker):
    """Hands due messages to their providers (walking the route: see `routing`); the answer
    becomes the message's first status, recorded with the provider that gave it."""

    name = "sends"

    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        shell: Shell,
        after_transition: AfterTransition,
        routes: Routes,
        retry: RetryPolicy,
        on_queue_delay: Callable[[float], None] = lambda delay_s: None,
        concurrency: int = 64,
        lease_ms: int = 30_000,
        metrics: Metrics,
    ) -> None:
        super().__init__(
            clock=clock,
            store=store,
            shell=shell,
            after_transition=after_transition,
            lease_ms=lease_ms,
            on_queue_delay=on_queue_delay,
        )
        self._routes = routes
        self._retry = retry
        self._concurrency = concurrency
        self._metrics = metrics
        self._random = random.Random()

    async def run_once(self) -> bool:
        room = self._concurrency - len(self._in_flight)
        self.at_capacity = room <= 0
        if self.at_capacity:
            return False
        now = self.clock.now_ms()
        jobs = await self._store.claim_due_sends(now_ms=now, limit=room, lease_ms=self._lease_ms)
        # How long the longest-waiting send waited since it was due (its step's start, its
        # retry's or its deferral's time): what admission control watches. Not since it was
        # created: a send deferred while its provider account pauses after a 429 is not a
        # server falling behind, and must not make it refuse every application's workflows.
        waited = [self.waited_ms(job.due_at_ms, now) for job in jobs]
        self._on_queue_delay(max(waited, default=0) / 1000)
        for job in jobs:
            task = asyncio.ensure_future(self._send(job))
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return bool(jobs)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, DatabaseUnavailable):  # logged once
            log.error("send failed unexpectedly", exc_info=error)
        self.notify()  # room for more

    async def next_due_ms(self) -> int | None:
        if len(self._in_flight) >= self._concurrency:
            return None  # a finishing send wakes us
        return await self._store.next_send_due_ms()

    async def _send(self, job: SendJob) -> None:
        started_ms = self.clock.now_ms()
        payload: dict[str, Any] = _decode(job.payload_json)
        message = OutboundMessage(
            message_uuid=job.message_uuid,
            dispatch_uuid=job.dispatch_uuid,
            channel=job.channel,
            to=payload["to"],
            from_=payload["from"],
            message=payload["message"],
            attempt=job.attempts,
        )
        try:
            route = await self._routes.route(job.application_id, job.channel)
            outcome = await send_along(route, message, self.clock)
        except DatabaseUnavailable:
            raise  # nothing can be recorded; the store has said why
        except Exception as exc:  # a provider bug must not lose the message
            log.exception("sending %s failed unexpectedly", job.message_uuid)
            outcome = RouteOutcome(
                provider=job.provider,
                result=Unavailable(reason=f"provider error: {type(exc).__name__}"),
            )
        if outcome.result is not None:  # a provider was tried
            self._count(job, outcome.provider, outcome.result, started_ms)
        await self._record(job, outcome)

    def _count(self, job: SendJob, provider: str, result: SendResult, started_ms: int) -> None:
        self._metrics.sent(job.channel, provider or "none", _RESULT_LABELS[type(result)])
        if job.step > 0 and job.attempts == 1:  # the first try of a failover's next step
            self._metrics.failed_over(started_ms - job.created_at_ms)

    async def _record(self, job: SendJob, outcome: RouteOutcome) -> None:
        now = self.clock.now_ms()
        result, provider = outcome.result, outcome.provider
        if result is None:  # nothing could be tried: not an attempt
            due = outcome.retry_at_ms if outcome.retry_at_ms is not None else now + 1_000
            await self._store.defer_send(
                job.message_uuid,
                next_attempt_at_ms=max(due, now + 10),
                reason="waiting for a provider of the route to be free",
            )
            event_log.send_deferred(job, provider=provider, retry_in_ms=max(due, now + 10) - now)
            self.notify()
            return
        if isinstance(result, Unknown):
            event_log.send_outcome_unknown(job, provider=provider, reason=result.reason)
            await self._store.send_outcome_unknown(
                job.message_uuid, provider=provider, error=f"outcome unknown: {result.reason}"
            )
            return
        if isinstance(result, Unavailable):
            retry_at = next_attempt_at(
                self._retry,
                attempts=job.attempts,
                first_attempt_at_ms=job.created_at_ms,
                now_ms=now,
                jitter=self._random.random(),
            )
            if retry_at is not None:
                if result.retry_after_ms is not None:
                    retry_at = max(retry_at, now + result.retry_after_ms)
                await self._store.retry_send(
                    job.message_uuid,
                    next_attempt_at_ms=retry_at,
                    error=result.reason,
                    provider=provider,
                )
                event_log.send_attempt_failed(
                    job,
                    provider=provider,
                    attempt=job.attempts,
                    reason=result.reason,
                    retry_in_ms=retry_at - now,
                )
                self.notify()
                return
            event_log.send_given_up(
                job, provider=provider, attempts=job.attempts, reason=result.reason
            )
            result = Rejected(error=PROVIDER_UNAVAILABLE)
        if isinstance(result, Accepted):
            events = [
                StatusReported(
                    message_uuid=job.message_uuid,
                    status=MessageStatus.SUBMITTED,
                    at_ms=now,
                    price=result.price,
                    provider=provider,
                ),
                # Statuses the answer already reports are applied with it, in the same
                # transaction, rather than stored and picked up again (the sandbox at zero
                # delay), in the order they happened.
                *(
                    StatusReported(
                        message_uuid=reached.message_uuid,
                        status=reached.status,
                        at_ms=reached.occurred_at_ms,
                        error=reached.error,
                        price=reached.price,
                    )
                    for reached in sorted(result.statuses, key=lambda s: s.occurred_at_ms)
                ),
            ]
            side = SideWrites(
                complete_send=SendCompletion(
                    message_uuid=job.message_uuid,
                    send_state="sent",
                    provider=provider,
                    provider_message_id=result.provider_message_id or None,
                )
            )
        else:
            events = [
                StatusReported(
                    message_uuid=job.message_uuid,
                    status=MessageStatus.REJECTED,
                    at_ms=now,
                    error=result.error,
                    provider=provider or None,
                )
            ]
            side = SideWrites(
                complete_send=SendCompletion(
                    message_uuid=job.message_uuid,
                    send_state="failed",
                    provider=provider,
                    error=result.error.reason,
                )
            )
        transition = await self._store.apply(
            message_uuid=job.message_uuid,
            transition=self._shell.transition_for(*events, now_ms=now),
            side=side,
        )
        # Before `_after`, which logs the failover a rejection brings: cause, then effect.
        event_log.step_sent(
            job,
            provider=provider,
            error=None if isinstance(result, Accepted) else result.error,
        )
        self._after(transition)


class TimerWorker(EventWorker):
    """Fires each workflow's deadline (`due_at_ms`) as a `TimerFired` event."""

    name = "timers"

    async def run_once(self) -> bool:
        now = self.clock.now_ms()
        due = await self._store.due_timers(now_ms=now, limit=self._batch)
        if not due:
            return False
        fire = self._shell.transition_for(TimerFired(), now_ms=now)
        await self._apply_all(
            self._store.apply(dispatch_uuid=dispatch_uuid, transition=fire) for dispatch_uuid in due
        )
        return True

    async def next_due_ms(self) -> int | None:
        return await self._store.next_timer_due_ms()


class InboxWorker(EventWorker):
    """Applies provider statuses once they are due (callbacks at once; the sandbox's when
    they would arrive). Applying one applies every status of its workflow that has arrived,
    in the order they happened (see `Shell.transition_for`)."""

    name = "inbox"

    async def run_once(self) -> bool:
        now = self.clock.now_ms()
        events = await self._store.claim_due_inbox(
            now_ms=now, limit=self._batch, lease_ms=self._lease_ms
        )
        if not events:
            return False
        self._on_queue_delay(max(self.waited_ms(event.due_at_ms, now) for event in events) / 1000)
        arrived = self._shell.transition_for(now_ms=now)
        await self._apply_all(
            self._store.apply(
                message_uuid=event.message_uuid,
                transition=arrived,
                side=SideWrites(inbox_done=event.id),  # consumed, even with no workflow
            )
            for event in events
        )
        return True

    async def next_due_ms(self) -> int | None:
        return await self._store.next_inbox_due_ms()
