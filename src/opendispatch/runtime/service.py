"""The runtime: the engine's shell and its workers, started and stopped with the server.

It is also the one door for events from outside the workers: the API accepts workflows,
cancels them and injects sandbox statuses through it. After every transaction it wakes the
workers that have new work sooner than they planned to look, so a rejection reaches the next
send in milliseconds, not after a polling interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opendispatch import event_log
from opendispatch.engine.model import MessageError, MessageStatus, StatusReported
from opendispatch.ids import is_uuid
from opendispatch.metrics.instruments import Metrics
from opendispatch.providers.base import Provider
from opendispatch.retry import RetryPolicy
from opendispatch.runtime.admission import AdmissionControl
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.inbox import ProviderInbox
from opendispatch.runtime.retention import Expire, RetentionWorker
from opendispatch.runtime.routing import Routes, StaticRoutes
from opendispatch.runtime.shell import CancelOutcome, Shell
from opendispatch.runtime.webhook_worker import WebhookPoster, WebhookWorker
from opendispatch.runtime.workers import InboxWorker, SendWorker, TimerWorker, Worker
from opendispatch.store.protocol import Store
from opendispatch.store.records import (
    ApplicationCredentials,
    EarlierRequest,
    NewWorkflow,
    Transition,
)
from opendispatch.webhooks.signing import Signer

if TYPE_CHECKING:
    from opendispatch.runtime.callbacks import CallbackIntake

__all__ = ["CancelOutcome", "Runtime", "RuntimeSettings"]

log = logging.getLogger(__name__)


# A provider that answers "try later" is retried for up to an hour (a step's own deadline
# usually ends the wait sooner).
_SEND_RETRY = RetryPolicy(first_delay_ms=1_000, max_delay_ms=60_000, give_up_after_ms=3_600_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    final_status_timeout_s: int = 86_400
    send_retry: RetryPolicy = field(default_factory=lambda: _SEND_RETRY)
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)
    webhook_concurrency: int = 256
    webhook_per_application: int = 64
    webhook_timeout_ms: int = 5_000
    send_concurrency: int = 64
    # How long a claimed send, webhook or status stays with the process that claimed it; a
    # process that dies loses its claims after this, and another finishes the work.
    lease_ms: int = 30_000
    # PostgreSQL: how long a woken worker waits for more work before claiming (see Worker).
    batch_window_ms: int = 5
    # Admission control (see `admission`): limits of 0 switch a signal off.
    max_queue_delay_ms: int = 250
    max_webhook_delay_ms: int = 1000
    max_loop_lag_ms: int = 100
    # Ended workflows and settled webhooks older than this are deleted; None keeps them.
    retention_ms: int | None = 30 * 86_400_000


class Runtime:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        providers: Mapping[str, Provider],
        provider_for_channel: Mapping[str, str] | None = None,
        routes: Routes | None = None,
        webhook_client: WebhookPoster,
        signer: Signer,
        settings: RuntimeSettings,
        inbox: ProviderInbox | None = None,
        expire_also: Sequence[Expire] = (),
        metrics: Metrics | None = None,
    ) -> None:
        """`routes`: which providers carry each application's channels (default: one provider
        per channel, `provider_for_channel`, for every application). `providers`: all of
        them, closed at stop. `inbox`: where the providers' statuses land (the runtime wakes
        its worker when they do). `expire_also`: more retention, of what providers keep (the
        sandbox's log). `metrics`: what it counts as it goes (default: a registry of its own)."""
        self.store = store
        self.metrics = metrics or Metrics()
        self.admission = AdmissionControl(
            max_queue_delay_s=settings.max_queue_delay_ms / 1000,
            max_webhook_delay_s=settings.max_webhook_delay_ms / 1000,
            max_loop_lag_s=settings.max_loop_lag_ms / 1000,
            on_refused=self.metrics.refused,
        )
        self.metrics.watch_admission(lambda: self.admission.refused_share)
        self.status_inbox = inbox or ProviderInbox(store)
        self.status_inbox.on_landed = self._inbox_scheduled
        self.clock = clock
        self.providers = providers
        # Provider callbacks in (set by the assembly where real providers are configured).
        self.callbacks: CallbackIntake | None = None
        self.shell = Shell(final_status_timeout_s=settings.final_status_timeout_s)
        self.routes = routes or StaticRoutes(providers, provider_for_channel or {})
        self.sends = SendWorker(
            clock=clock,
            store=store,
            shell=self.shell,
            routes=self.routes,
            retry=settings.send_retry,
            after_transition=self.after_transition,
            on_queue_delay=self.admission.observe_queue_delay,
            concurrency=settings.send_concurrency,
            lease_ms=settings.lease_ms,
            metrics=self.metrics,
        )
        self.timers = TimerWorker(
            clock=clock, store=store, shell=self.shell, after_transition=self.after_transition
        )
        self.inbox = InboxWorker(
            clock=clock,
            store=store,
            shell=self.shell,
            after_transition=self.after_transition,
            lease_ms=settings.lease_ms,
            on_queue_delay=self.admission.observe_inbox_delay,
        )
        self.webhooks = WebhookWorker(
            clock=clock,
            store=store,
            client=webhook_client,
            signer=signer,
            retry=settings.webhook_retry,
            concurrency=settings.webhook_concurrency,
            per_application=settings.webhook_per_application,
            lease_ms=settings.lease_ms,
            probe_wait_ms=settings.webhook_timeout_ms + 500,
            on_queue_delay=self.admission.observe_webhook_delay,
            metrics=self.metrics,
        )
        self.retention = (
            None
            if settings.retention_ms is None
            else RetentionWorker(
                clock=clock,
                store=store,
                retention_ms=settings.retention_ms,
                expire_also=expire_also,
            )
        )
        self.workers: tuple[Worker, ...] = (
            self.sends,
            self.timers,
            self.inbox,
            self.webhooks,
            *((self.retention,) if self.retention is not None else ()),
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Several processes may serve one database (PostgreSQL): work one of them creates is
        # announced to the others, so a process sleeping until a later deadline wakes for it.
        self._shared = store.dialect != "sqlite"
        if self._shared:
            # Each claim and each record is a round trip and a commit: gather a few ms' worth.
            for worker in self.workers:
                worker.batch_window_s = settings.batch_window_ms / 1000
        self._announcements: dict[str, int | None] = {}
        self._announcing = False
        # Told when another process announces that an application changed (its id), or that
        # announcements may have been missed (None): whoever caches credentials forgets them.
        self.on_application_changed: list[Callable[[str | None], None]] = [
            self.webhooks.forget_application
        ]

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.routes.start()
        await self.store.release_leases()  # only where this process owns the database
        # Other processes announce work: servers on PostgreSQL, commands beside the server
        # (`opendispatch send`) on either database. Where they cannot be heard, the send
        # worker looks for what they create every second.
        if not await self.store.listen(self._heard):
            self.sends.look_again_ms = 1_000
        await self._start_unstarted()
        self.admission.start()
        self._tasks = [
            asyncio.create_task(worker.run(), name=f"opendispatch-{worker.name}")
            for worker in self.workers
        ]

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop claiming work, then let sends and deliveries in flight finish, so a graceful
        restart sends no step twice. What does not finish in time is not lost: its claim is
        released at the next start (or its lease expires) and it is performed again; a live
        provider's send is settled `unknown` instead (it may have gone out)."""
        await self.admission.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await asyncio.gather(*(worker.drain(drain_timeout_s) for worker in self.workers))

    async def close(self) -> None:
        """Release the providers' and the webhook client's connections."""
        for provider in self.providers.values():
            await provider.close()
        await self.routes.close()
        await self.webhooks.client.close()

    async def _start_unstarted(self) -> None:
        """Workflows accepted before this version had an engine: start them now."""
        while batch := await self.store.unstarted_workflows(500):
            for dispatch_uuid in batch:
                transition = await self.store.apply(
                    dispatch_uuid=dispatch_uuid,
                    transition=self.shell.start_unstarted(self.clock.now_ms()),
                )
                self.after_transition(transition)
            log.info("started %d workflows accepted before the engine existed", len(batch))

    # -- the API's door ----------------------------------------------------------------------

    async def accept(
        self, workflow: NewWorkflow, credentials: ApplicationCredentials
    ) -> EarlierRequest | Transition:
        """Store the workflow with its first step; returns its first transition once both are
        durable. Or, if its idempotency key was used already, store nothing and return that
        earlier request."""
        app = credentials.application
        transition = self.shell.accept(
            workflow,
            status_url=app.status_url,
            final_report_url=app.final_report_url,
            now_ms=self.clock.now_ms(),
        )
        earlier = await self.store.create_workflow(workflow, transition)
        if earlier is not None:  # a repeat of an earlier request: nothing was accepted
            return earlier
        self.metrics.accepted()
        self.after_transition(transition)
        return transition

    async def cancel(self, application_id: str, dispatch_uuid: str) -> CancelOutcome:
        """Stop one of the application's workflows if it is running (the rule is the engine's:
        `engine.failover`); durable once this returns, its final report then on its way.
        Racing a deadline or a status, it is applied in turn like any event of the workflow,
        so exactly one of them ends it."""
        if not is_uuid(dispatch_uuid):
            return CancelOutcome.NOT_FOUND
        cancellation = self.shell.cancel(application_id, now_ms=self.clock.now_ms())
        transition = await self.store.apply(
            dispatch_uuid=dispatch_uuid, transition=cancellation.transition
        )
        self.after_transition(transition)
        return cancellation.outcome

    async def report_status(
        self,
        message_uuid: str,
        status: MessageStatus,
        *,
        at_ms: int | None = None,
        error: MessageError | None = None,
        price: str | None = None,
    ) -> Transition | None:
        """A status from outside (the sandbox's injection endpoint, later real providers)."""
        now = self.clock.now_ms()
        event = StatusReported(
            message_uuid=message_uuid,
            status=status,
            at_ms=now if at_ms is None else at_ms,
            error=error,
            price=price,
        )
        transition = await self.store.apply(
            message_uuid=message_uuid, transition=self.shell.transition_for(event, now_ms=now)
        )
        self.after_transition(transition)
        return transition

    def webhooks_replayed(self) -> None:
        """Webhooks were put back in the queue (a replay): deliver them now."""
        self.webhooks.notify()
        self._announce("webhooks", None)

    # -- wake-ups ------------------------------------------------------------------------------

    def after_transition(self, transition: Transition | None) -> None:
        """Every committed transition passes here: its failover or end is logged, what it
        did is counted (the metrics), and the workers it gave work are woken."""
        if transition is None:
            return
        event_log.transition_committed(transition)
        self.metrics.transition(transition)
        if transition.sends:
            self.sends.notify()
            self._announce("sends", None)
        if transition.webhooks:
            self.webhooks.notify()
            self._announce("webhooks", None)
        due = transition.due_at_ms
        if due is not None:
            if _sooner(due, self.timers):
                self.timers.notify()
            self._announce("timers", due)

    def _inbox_scheduled(self, due_at_ms: int) -> None:
        if _sooner(due_at_ms, self.inbox):
            self.inbox.notify()
        self._announce("inbox", due_at_ms)

    def _announce(self, kind: str, due_at_ms: int | None) -> None:
        """Coalesced: at most one NOTIFY round trip per 10 ms, with each kind's earliest due."""
        if not self._shared:
            return
        known = self._announcements.get(kind, -1)
        if kind not in self._announcements or (
            due_at_ms is not None and known is not None and due_at_ms < known
        ):
            self._announcements[kind] = due_at_ms
        if not self._announcing:
            self._announcing = True
            asyncio.get_running_loop().call_later(0.01, self._send_announcements)

    def _send_announcements(self) -> None:
        self._announcing = False
        payloads = [
            kind if due is None else f"{kind}:{due}" for kind, due in self._announcements.items()
        ]
        self._announcements = {}
        task = asyncio.ensure_future(self.store.notify(payloads))
        task.add_done_callback(_log_failure)

    def _heard(self, payload: str) -> None:
        """Another process announced work (wake the worker if it is due sooner than planned),
        or a changed application (`applications:<id>`, from `opendispatch apps ...`)."""
        kind, _, due = payload.partition(":")
        if kind in ("applications", "*"):
            for forget in self.on_application_changed:
                forget(due if kind == "applications" else None)
        workers = {"sends": self.sends, "webhooks": self.webhooks, "timers": self.timers,
                   "inbox": self.inbox}  # fmt: skip
        targets = (
            list(workers.values()) if kind == "*" else [workers[kind]] if kind in workers else []
        )
        for worker in targets:
            if not due or _sooner(int(due), worker):
                worker.notify()

    async def settled(self, timeout_s: float = 10.0) -> None:
        """Wait until nothing is due now and nothing is in flight (tests drive time with it)."""
        async with asyncio.timeout(timeout_s):
            quiet_rounds = 0
            while quiet_rounds < 3:
                await asyncio.sleep(0)
                if all(worker.idle.is_set() and not worker.busy for worker in self.workers):
                    quiet_rounds += 1
                else:
                    quiet_rounds = 0
                    await asyncio.sleep(0.001)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not notify the other processes: %s", task.exception())


def _sooner(due_at_ms: int, worker: Worker) -> bool:
    """Wake a sleeping worker only if this is earlier than it planned to look."""
    planned = worker.sleeping_until
    return not worker.idle.is_set() or planned is None or due_at_ms < planned
