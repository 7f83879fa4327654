"""Plain records that cross the storage boundary. No behaviour, no database types; statuses
are the engine's vocabulary (`StrEnum`s, stored as text)."""

from __future__ import annotations

from dataclasses import dataclass

from opendispatch.engine.model import Effect, MessageStatus, WorkflowStatus

__all__ = [
    "EVERY_WORKFLOW",
    "IDEMPOTENCY_WINDOW_MS",
    "NO_SIDE_WRITES",
    "Application",
    "ApplicationChange",
    "ApplicationCredentials",
    "DeletedApplication",
    "EarlierRequest",
    "Expired",
    "IdempotencyKey",
    "InboxEvent",
    "LoadedWorkflow",
    "MessageForCallback",
    "MessageOwner",
    "NewInboxEvent",
    "NewSend",
    "NewWebhook",
    "NewWorkflow",
    "ProviderAccountRecord",
    "ProviderRoute",
    "QueueCounts",
    "SendCompletion",
    "SendJob",
    "SendRecord",
    "SideWrites",
    "Transition",
    "UpdatedApplication",
    "WebhookAttempt",
    "WebhookDeferral",
    "WebhookFilter",
    "WebhookJob",
    "WebhookRecord",
    "WorkflowFilter",
    "WorkflowRecord",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Application:
    """What anyone may see of an application: `apps list` prints exactly this."""

    application_id: str
    name: str
    api_key: str
    status_url: str
    final_report_url: str | None
    created_at_ms: int
    # Live applications send through their provider routes; the others to the sandbox.
    live: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationCredentials:
    """An application with what verifying and signing need. Never printed or logged.

    `api_secret_hash` is a salted hash (see `auth.secrets`); the signature secret is kept as is
    because signing webhooks needs the secret itself, and the server keeps only the public
    half of the application's RSA key pair. After `apps rotate-secret --grace`, the secret it
    replaced (hashed too) is still good until `previous_secret_expires_at_ms`.
    """

    application: Application
    api_secret_hash: str
    signature_secret: str
    public_key_pem: str
    previous_secret_hash: str | None = None
    previous_secret_expires_at_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationChange:
    """What `apps update` changes: None leaves a setting as it is."""

    name: str | None = None
    status_url: str | None = None
    final_report_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatedApplication:
    """An application as `apps update` left it, and how many of its webhooks not delivered
    yet now go to its new URLs."""

    application: Application
    webhooks_moved: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletedApplication:
    """What deleting an application did (`purged`: its rows are gone, not only ended)."""

    application_id: str
    purged: bool
    workflows_ended: int
    sends_cancelled: int
    webhooks_dropped: int


# How long an `Idempotency-Key` is remembered, from the request that first used it.
IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyKey:
    """A client's `Idempotency-Key` (per application) and the SHA-256, in hex, of the exact
    body it came with: a later request with the key is the same request only if its body
    has the same bytes."""

    key: str
    request_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlierRequest:
    """What an idempotency key was first used for, within `IDEMPOTENCY_WINDOW_MS`: the
    workflow it created and the hash of that request's body."""

    dispatch_uuid: str
    request_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewWorkflow:
    """`request_json` is the request body exactly as the client sent it. `idempotency_key`:
    store it with the workflow, unless a request with the same key came first."""

    dispatch_uuid: str
    application_id: str
    template: str
    request_json: str
    created_at_ms: int
    # The channels of its steps, reached or not (for the list's `channel` filter).
    channels: tuple[str, ...]
    idempotency_key: IdempotencyKey | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRecord:
    dispatch_uuid: str
    application_id: str
    template: str
    status: WorkflowStatus
    request_json: str
    created_at_ms: int
    updated_at_ms: int


# -- the engine's transitions, as the store writes them -----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSend:
    """A message to hand to a provider (the engine's `SendMessage`, made concrete)."""

    message_uuid: str
    dispatch_uuid: str
    step: int
    channel: str
    provider: str
    payload_json: str
    next_attempt_at_ms: int
    # When its step was called for (default: the transition's time). A failover's next step
    # was called for at the earlier of the failed step's deadline and the arrival of the
    # status that failed it, a little before the transition that applied it:
    # `opendispatch_failover_seconds` is measured from here to the send starting.
    created_at_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewWebhook:
    event_id: str
    dispatch_uuid: str
    application_id: str
    kind: str  # "message_status" | "final_report"
    message_uuid: str | None
    status: MessageStatus | WorkflowStatus  # the message's, or the workflow's outcome
    url: str
    payload: str
    next_attempt_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """Everything one event changes, written in one transaction with the new state."""

    state_json: str
    status: WorkflowStatus
    due_at_ms: int | None
    updated_at_ms: int
    sends: tuple[NewSend, ...] = ()
    cancel_sends: tuple[str, ...] = ()
    webhooks: tuple[NewWebhook, ...] = ()
    consumed_inbox: tuple[int, ...] = ()  # provider statuses applied from the inbox
    # Not written: whose workflow, and what the engine decided, for the event log once the
    # transition is committed (a failover, the end of the workflow; see `event_log`).
    dispatch_uuid: str = ""
    application_id: str = ""
    effects: tuple[Effect, ...] = ()
    # Not written, for the metrics (read once the transition is committed): the (channel,
    # status) of each message status it applied, and, if it ended the workflow, the time
    # from the workflow's creation to its final report.
    applied_statuses: tuple[tuple[str, MessageStatus], ...] = ()
    ended_after_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedWorkflow:
    """A workflow as an event finds it, with what rendering its effects needs, and the
    provider statuses of its messages waiting in the inbox (applied first, in the order they
    happened: see `Shell.transition_for`)."""

    record: WorkflowRecord
    state_json: str | None
    api_key: str
    status_url: str
    final_report_url: str | None
    inbox: tuple[InboxEvent, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SendCompletion:
    """How a send ended, written with the event it produced."""

    message_uuid: str
    send_state: str  # "sent" | "failed"
    provider: str = ""  # the one that answered: "sandbox", or a provider account's name
    provider_message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewInboxEvent:
    """A provider status landing in the inbox: it happened at `occurred_at_ms` (default: when
    it is due) and is applied from `due_at_ms` on (a callback: at once; the sandbox's
    simulated ones: when they would arrive)."""

    message_uuid: str
    status: MessageStatus
    due_at_ms: int
    error_code: int | None = None
    error_reason: str | None = None
    price: str | None = None
    occurred_at_ms: int | None = None
    # A provider callback's own id for the message: a status lands once per (this, status).
    provider_message_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEvent(NewInboxEvent):
    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SideWrites:
    """Writes that must commit with the event's transition (exactly-once bookkeeping), even
    when the workflow is unknown or nothing changes (the event is consumed either way)."""

    complete_send: SendCompletion | None = None
    inbox_done: int | None = None  # the inbox row this event came from


NO_SIDE_WRITES = SideWrites()


@dataclass(frozen=True, slots=True, kw_only=True)
class SendJob:
    """A claimed send: the worker owns it until `lease_until_ms`."""

    message_uuid: str
    dispatch_uuid: str
    application_id: str
    step: int
    channel: str
    provider: str  # the provider tried last, if any ("" before the first attempt)
    payload_json: str
    attempts: int
    created_at_ms: int
    due_at_ms: int  # when it was due: a step's start, a retry's or a deferral's time


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRecord:
    """A message's send as `GET` shows it: who carried it, how it went."""

    message_uuid: str
    provider: str
    send_state: str  # pending | sending | sent | failed | cancelled | unknown
    attempts: int
    provider_message_id: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageForCallback:
    """What a provider callback is checked against: the message it names must have been
    sent through the account the callback came to, under the same provider id if known."""

    message_uuid: str
    provider: str
    provider_message_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderAccountRecord:
    """A provider account as stored: `settings` are the non-secret ones (and hashes of the
    compare-only ones); `sealed_secrets` is the encrypted rest (see `providers.secret_box`)."""

    name: str
    kind: str
    base_url: str
    settings: dict[str, str]
    sealed_secrets: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderRoute:
    """A live application's providers for one channel, in the order they are tried."""

    application_id: str
    channel: str
    providers: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookJob:
    id: int
    event_id: str
    dispatch_uuid: str
    application_id: str
    kind: str  # "message_status" | "final_report"
    url: str
    payload: str
    attempts: int  # including this one, since it was created or last replayed
    created_at_ms: int
    replays: int
    retry_from_ms: int  # when its retry period began: created, or last replayed


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookAttempt:
    """The outcome of one delivery attempt: delivered, to retry at a time, or dead."""

    id: int
    dispatch_uuid: str
    state: str  # "delivered" | "pending" | "dead"
    next_attempt_at_ms: int | None
    status_code: int | None
    error: str | None
    at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRecord:
    id: int  # the store's own order (newer is larger): list cursors are made of it
    event_id: str
    dispatch_uuid: str
    application_id: str
    kind: str
    message_uuid: str | None
    status: MessageStatus | WorkflowStatus  # the message's, or the workflow's outcome
    url: str
    state: str
    attempts: int
    next_attempt_at_ms: int | None
    last_status_code: int | None
    last_error: str | None
    created_at_ms: int
    delivered_at_ms: int | None
    replays: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDeferral:
    """A claimed webhook handed back without an attempt, to be tried at `until_ms`."""

    id: int
    until_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookFilter:
    """Which webhooks a list or a replay is about; None means any."""

    application_id: str | None = None
    state: str | None = None
    dispatch_uuid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFilter:
    """Which of an application's workflows a list shows; empty or None means any."""

    statuses: frozenset[WorkflowStatus] = frozenset()
    channel: str | None = None  # a step on this channel, whether or not it was reached
    created_after_ms: int | None = None  # inclusive
    created_before_ms: int | None = None  # exclusive: consecutive ranges never overlap


EVERY_WORKFLOW = WorkflowFilter()


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    """What one retention batch deleted."""

    webhooks: int = 0
    workflows: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCounts:
    """What waits in the database's queues (the metrics' queue depths), as of `now_ms`."""

    sends_pending: int  # to hand to a provider, due now or retrying later
    sends_due: int  # of those, due now
    sends_in_flight: int  # with a provider now
    timers_pending: int  # open workflows waiting on a deadline
    timers_due: int  # of those, past their deadline
    webhooks_due: int  # due for delivery now, not under way
    webhooks_dead: int  # given up on, until replayed or expired


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageOwner:
    """Which workflow and application a message belongs to."""

    message_uuid: str
    dispatch_uuid: str
    application_id: str
