"""The counters and histograms a server process keeps, for `GET /metrics`.

One registry per server (`DispatchApp`), never prometheus_client's global one: tests run
several servers in one process, and each must count only its own work.

Recording sits on the hot path (every accept, send, status and webhook), so each event costs
a dict lookup and one `inc()` or `observe()` on a prometheus_client child whose label values
were bound once and kept. Never `labels(...)` per event: measured here, `labels(...).inc()`
costs 4.5 us, a kept child's `inc()` 0.4-0.8 us and `observe()` 0.7-2 us; a workflow of the
e2e benchmark records about 20 of them, against ~1.5 ms of server CPU in all.

No label carries an application id, a recipient or anything a client chooses: a series per
tenant would grow without bound. Labels are channels, provider account names (an
operator's, few), statuses, outcomes and HTTP status codes. Per-application views are the
API's and the dashboard's business.

Counters are per process; with several processes on one PostgreSQL, Prometheus adds them up
(`sum without (instance)`). Queue depths are not kept here: they are read from the database
at each scrape (`queues`), so every process reports the same.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from opendispatch.engine.model import WorkflowStatus
from opendispatch.store.records import Transition

__all__ = ["Metrics"]

# Seconds. Failover: from milliseconds (a rejection at once) to a provider paused for a minute.
_FAILOVER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Accept to final report: a rejected last message ends in milliseconds, an unread one when its
# expiry passes (15 s to a day).
_WORKFLOW_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400,
)  # fmt: skip
# One webhook request: at most --webhook-timeout (5 s by default).
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Created (or replayed) to delivered: at once, or after retries over the retry period (a day).
_DELIVERY_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400,
)  # fmt: skip
# One write transaction: an fsync (SQLite) or a round trip and a commit (PostgreSQL).
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

_WEBHOOK_KINDS = ("message_status", "final_report")
_WEBHOOK_OUTCOMES = ("delivered", "failed", "dead")


class _Counters:
    """A labelled counter's children, each bound once (per distinct label values) and kept:
    what is kept is the child's `inc`, found again by `key` (the label values, as given)."""

    __slots__ = ("_bound", "_counter")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._bound: dict[Hashable, Callable[[], None]] = {}

    def __call__(self, key: Hashable, *labels: str) -> Callable[[], None]:
        inc = self._bound.get(key)
        if inc is None:
            inc = self._bound[key] = self._counter.labels(*labels).inc
        return inc


class _Histograms:
    """A labelled histogram's children, bound once and kept (see `_Counters`)."""

    __slots__ = ("_bound", "_histogram")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bound: dict[Hashable, Callable[[float], None]] = {}

    def __call__(self, key: Hashable, *labels: str) -> Callable[[float], None]:
        observe = self._bound.get(key)
        if observe is None:
            observe = self._bound[key] = self._histogram.labels(*labels).observe
        return observe


class Metrics:
    """Every counter and histogram of one server; the recording methods are what the runtime,
    the providers and the store call as things happen."""

    def __init__(self) -> None:
        # `_created` series (one timestamp per child) double the text for nothing an operator
        # reads; prometheus_client decides this when it renders, process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
        self._accepted = Counter(
            "opendispatch_workflows_accepted",
            "Workflows accepted (answered 202) by this process's API.",
            registry=registry,
        ).inc
        self._refused = Counter(
            "opendispatch_workflows_refused",
            "New workflows this process refused (503) because it was at capacity.",
            registry=registry,
        ).inc
        self._refused_share = Gauge(
            "opendispatch_admission_refused_share",
            "The share of new workflows admission control refuses right now (0 to 1).",
            registry=registry,
        )
        self._ended = _Counters(
            Counter(
                "opendispatch_workflows_ended",
                "Workflows ended, by outcome (their final report's status).",
                ["outcome"],
                registry=registry,
            )
        )
        self._duration = _Histograms(
            Histogram(
                "opendispatch_workflow_duration_seconds",
                "From a workflow's acceptance to its final report (when its outcome was "
                "decided, not when the report was delivered), by outcome.",
                ["outcome"],
                buckets=_WORKFLOW_BUCKETS,
                registry=registry,
            )
        )
        self._sends = _Counters(
            Counter(
                "opendispatch_sends",
                "Steps handed to a provider, by channel, provider and the provider's answer "
                "(accepted, rejected, unavailable: retried later, unknown: no answer came).",
                ["channel", "provider", "result"],
                registry=registry,
            )
        )
        self._statuses = _Counters(
            Counter(
                "opendispatch_statuses",
                "Message statuses applied to workflows (each forwarded as a webhook), by "
                "channel and status; a provider's repeats are not counted.",
                ["channel", "status"],
                registry=registry,
            )
        )
        self._failover = Histogram(
            "opendispatch_failover_seconds",
            "From a step's failover trigger (its deadline, or the arrival of the status that "
            "failed it) to the next step's send starting.",
            buckets=_FAILOVER_BUCKETS,
            registry=registry,
        ).observe
        self._webhooks = _Counters(
            Counter(
                "opendispatch_webhook_deliveries",
                "Webhook deliveries' outcomes, by kind: delivered; failed (an attempt that "
                "will be retried); dead (given up).",
                ["kind", "outcome"],
                registry=registry,
            )
        )
        self._webhook_request = Histogram(
            "opendispatch_webhook_request_seconds",
            "How long each webhook request took, whatever its outcome.",
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        ).observe
        self._webhook_delivered = Histogram(
            "opendispatch_webhook_delivery_seconds",
            "From a webhook's creation (or last replay) to its delivery, retries included.",
            buckets=_DELIVERY_BUCKETS,
            registry=registry,
        ).observe
        self._provider_requests = _Counters(
            Counter(
                "opendispatch_provider_requests",
                "HTTP requests to real providers, by provider account and status code "
                "(not_sent: it never reached the provider; no_answer: no answer came back).",
                ["provider", "code"],
                registry=registry,
            )
        )
        self.observe_commit: Callable[[float], None] = Histogram(
            "opendispatch_database_commit_seconds",
            "How long each write transaction took to commit: a group commit on SQLite, a "
            "write statement or transaction on PostgreSQL.",
            buckets=_COMMIT_BUCKETS,
            registry=registry,
        ).observe
        # Series that exist from the start (at zero), so rates and alerts need no `or`.
        for ended in WorkflowStatus:
            if ended is not WorkflowStatus.IN_PROGRESS:
                self._ended(ended, ended)
        for kind in _WEBHOOK_KINDS:
            for outcome in _WEBHOOK_OUTCOMES:
                self._webhooks((kind, outcome), kind, outcome)

    # -- recording ---------------------------------------------------------------------------

    def accepted(self) -> None:
        self._accepted()

    def refused(self) -> None:
        self._refused()

    def watch_admission(self, refused_share: Callable[[], float]) -> None:
        """Read the refused share when scraped."""
        self._refused_share.set_function(refused_share)

    def transition(self, transition: Transition) -> None:
        """A committed transition: the statuses it applied, and its outcome if it ended the
        workflow. Only ever a committed one: a transition function may run more than once
        (PostgreSQL's lost races), its result is written once."""
        for key in transition.applied_statuses:
            self._statuses(key, *key)()
        duration_ms = transition.ended_after_ms
        if duration_ms is not None:
            outcome = transition.status
            self._ended(outcome, outcome)()
            self._duration(outcome, outcome)(duration_ms / 1000)

    def sent(self, channel: str, provider: str, result: str) -> None:
        key = (channel, provider, result)
        self._sends(key, *key)()

    def failed_over(self, latency_ms: int) -> None:
        self._failover(max(0, latency_ms) / 1000)

    def webhook_attempt(
        self, *, kind: str, outcome: str, request_ms: float | None, delivered_after_ms: int | None
    ) -> None:
        """One attempt's outcome; `request_ms` None where no request was made."""
        key = (kind, outcome)
        self._webhooks(key, *key)()
        if request_ms is not None:
            self._webhook_request(request_ms / 1000)
        if delivered_after_ms is not None:
            self._webhook_delivered(max(0, delivered_after_ms) / 1000)

    def provider_answered(self, provider: str, code: int | str) -> None:
        key = (provider, code)
        self._provider_requests(key, provider, str(code))()
