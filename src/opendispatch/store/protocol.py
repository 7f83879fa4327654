"""The storage protocol: the domain operations handlers and workers depend on.

One implementation, `DatabaseStore`, over a connector per database (see `database`);
`tests/integration/test_store_contract.py` runs one suite against both databases.

Two kinds of operation matter most:

- `create_workflow` and `apply` are the engine's transactions: load a workflow (with the
  provider statuses of its messages waiting in the inbox), run a transition function on it
  (the pure engine plus the rendering of its effects), write the new state and every effect
  (sends, webhooks, inbox rows consumed) together. A caller's future resolves only once that
  is durable.
- `claim_due_*` hand out due work with a lease; whoever holds the lease performs it and
  records the result, which makes the work idempotent across crashes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from opendispatch.store.records import (
    EVERY_WORKFLOW,
    NO_SIDE_WRITES,
    Application,
    ApplicationChange,
    ApplicationCredentials,
    DeletedApplication,
    EarlierRequest,
    Expired,
    InboxEvent,
    LoadedWorkflow,
    MessageForCallback,
    MessageOwner,
    NewInboxEvent,
    NewWorkflow,
    SendJob,
    SendRecord,
    SideWrites,
    Transition,
    UpdatedApplication,
    WebhookAttempt,
    WebhookDeferral,
    WebhookFilter,
    WebhookJob,
    WebhookRecord,
    WorkflowFilter,
    WorkflowRecord,
)

__all__ = ["Store", "TransitionFunction"]

# Runs inside the transaction, on the loaded workflow; None means "nothing changes".
TransitionFunction = Callable[[LoadedWorkflow], Transition | None]


class Store(Protocol):
    dialect: str

    async def open(self) -> None:
        """Connect and bring the schema up to date (safe to run from several processes)."""

    async def close(self) -> None:
        """Commit what is pending, then release connections."""

    # -- applications ----------------------------------------------------------------------

    async def create_application(self, credentials: ApplicationCredentials) -> None: ...

    async def list_applications(self) -> list[Application]: ...

    async def get_application(self, application_id: str) -> Application | None:
        """None if there is none, or it was deleted."""

    async def update_application(
        self, application_id: str, change: ApplicationChange, *, now_ms: int
    ) -> UpdatedApplication | None:
        """Change its settings; its webhooks not delivered yet go to its new URLs."""

    async def rotate_api_secret(
        self, application_id: str, api_secret_hash: str, *, previous_expires_at_ms: int | None
    ) -> bool:
        """A new API secret; the one replaced stays good until `previous_expires_at_ms`."""

    async def delete_application(
        self, application_id: str, *, purge: bool, now_ms: int
    ) -> DeletedApplication | None:
        """Credentials refused, running workflows ended, undelivered webhooks dropped; its
        rows kept, or deleted with `purge`."""

    async def find_credentials_by_api_key(self, api_key: str) -> ApplicationCredentials | None: ...

    async def find_credentials(self, application_id: str) -> ApplicationCredentials | None: ...

    # -- workflows -------------------------------------------------------------------------

    async def create_workflow(
        self, workflow: NewWorkflow, transition: Transition
    ) -> EarlierRequest | None:
        """Store a workflow with its first transition; returns only once it is durable. With
        an idempotency key that a request of the application used within the window: store
        nothing, and return that request (in one transaction with the key's claim, so two
        requests with one key never both store a workflow, whichever processes they reach)."""

    async def apply(
        self,
        *,
        transition: TransitionFunction,
        dispatch_uuid: str | None = None,
        message_uuid: str | None = None,
        side: SideWrites = NO_SIDE_WRITES,
    ) -> Transition | None:
        """One event, one transaction (see the module docstring). `side` commits with it even
        when the workflow is unknown or nothing changes (the event is consumed either way)."""

    async def get_workflow(self, application_id: str, dispatch_uuid: str) -> WorkflowRecord | None:
        """The workflow, if it exists and belongs to this application."""

    async def load_workflow(self, dispatch_uuid: str) -> LoadedWorkflow | None: ...

    async def list_workflows(
        self,
        application_id: str,
        *,
        limit: int,
        before: str | None = None,
        where: WorkflowFilter = EVERY_WORKFLOW,
    ) -> list[WorkflowRecord]:
        """Newest first; `before` is the last `dispatch_uuid` of the previous page."""

    async def unstarted_workflows(self, limit: int) -> list[str]:
        """Workflows stored before the engine existed (schema version 1): to be started."""

    async def message_owner(self, message_uuid: str) -> MessageOwner | None: ...

    # -- sends -----------------------------------------------------------------------------

    async def claim_due_sends(self, *, now_ms: int, limit: int, lease_ms: int) -> list[SendJob]: ...

    async def retry_send(
        self, message_uuid: str, *, next_attempt_at_ms: int, error: str, provider: str = ""
    ) -> None:
        """Put a claimed send back, due again at `next_attempt_at_ms` (`provider`: the one
        tried last, shown by `GET`)."""

    async def send_outcome_unknown(self, message_uuid: str, *, provider: str, error: str) -> None:
        """The request reached `provider` and no answer came: never sent again."""

    async def defer_send(self, message_uuid: str, *, next_attempt_at_ms: int, reason: str) -> None:
        """Put a claimed send back untried (not counted as an attempt)."""

    async def send_records(self, dispatch_uuid: str) -> list[SendRecord]: ...

    async def message_for_callback(self, message_uuid: str) -> MessageForCallback | None: ...

    async def application_is_live(self, application_id: str) -> bool | None: ...

    async def next_send_due_ms(self) -> int | None: ...

    # -- timers ----------------------------------------------------------------------------

    async def due_timers(self, *, now_ms: int, limit: int) -> list[str]: ...

    async def next_timer_due_ms(self) -> int | None: ...

    # -- provider statuses waiting to be applied (the inbox) ----------------------------------

    async def receive_statuses(self, events: Sequence[NewInboxEvent]) -> None:
        """Land provider statuses durably; each is applied once due (a callback at once, the
        sandbox's simulated ones when they would arrive), in the order they happened."""

    async def claim_due_inbox(
        self, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[InboxEvent]: ...

    async def next_inbox_due_ms(self) -> int | None: ...

    # -- webhooks --------------------------------------------------------------------------

    async def claim_due_webhooks(
        self, *, now_ms: int, limit: int, lease_ms: int, exclude_applications: frozenset[str]
    ) -> list[WebhookJob]: ...

    async def next_webhook_due_ms(self) -> int | None:
        """When the next webhook is due; it may belong to an application at its limit."""

    async def record_webhook_attempts(self, attempts: Sequence[WebhookAttempt]) -> None: ...

    async def release_settled_final_reports(self) -> None:
        """Release held final reports whose workflow has nothing left to deliver (a sweep)."""

    async def defer_webhooks(self, deferrals: Sequence[WebhookDeferral]) -> None:
        """Hand claimed webhooks back unattempted, due at each one's `until_ms` (the claim is
        not counted as an attempt): their endpoint is backing off."""

    async def wake_webhooks(self, *, application_id: str, url: str, now_ms: int) -> int:
        """Make this application's pending webhooks to `url` due now (its endpoint is back)."""

    async def list_webhooks(self, dispatch_uuid: str) -> list[WebhookRecord]:
        """A workflow's webhooks, oldest first."""

    async def list_webhooks_page(
        self, which: WebhookFilter, *, limit: int, before_id: int | None = None
    ) -> list[WebhookRecord]:
        """Webhooks matching `which`, newest first; `before_id` is the previous page's last."""

    async def find_webhook(self, event_id: str) -> WebhookRecord | None: ...

    async def replay_webhook(self, webhook_id: int, *, now_ms: int) -> bool:
        """Deliver a delivered or dead webhook again (same body and `webhook-id`, a new retry
        period); False, changing nothing, if it is pending or held."""

    async def replay_webhooks(self, which: WebhookFilter, *, now_ms: int, limit: int) -> int:
        """Replay up to `limit` webhooks in `which.state` (dead or delivered); how many."""

    # -- JWTs seen -------------------------------------------------------------------------

    async def remember_token(
        self, application_id: str, jti: str, *, expires_at_ms: int, now_ms: int
    ) -> bool:
        """Note a JWT's `jti` until `expires_at_ms`; False if it is already noted (a replay)."""

    async def forget_expired_tokens(self, *, now_ms: int, limit: int) -> int:
        """Delete one batch of noted `jti`s whose token expired before `now_ms`; how many."""

    # -- idempotency keys ------------------------------------------------------------------

    async def forget_idempotency_keys(self, *, before_ms: int, limit: int) -> int:
        """Delete one batch of idempotency keys first used before `before_ms`; how many."""

    # -- retention -------------------------------------------------------------------------

    async def delete_expired(self, *, before_ms: int, limit: int) -> Expired:
        """Delete one batch of webhooks settled before `before_ms` and of workflows ended
        before it with no webhook left (with their messages and statuses)."""

    # -- recovery --------------------------------------------------------------------------

    async def release_leases(self) -> None:
        """At start, where one process owns the database: free a dead predecessor's claims."""

    # -- waking the other processes that serve the same database ----------------------------

    async def notify(self, payloads: Iterable[str]) -> None:
        """Tell the other processes that work is due (on SQLite: a command such as
        `opendispatch send` tells the serving process)."""

    async def listen(self, callback: Callable[[str], None]) -> bool:
        """Call `callback(payload)` for every other process's `notify` (`"*"`: re-check all);
        False if other processes cannot be heard (then whoever waits must look by itself)."""
