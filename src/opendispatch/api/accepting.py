"""Accepting a workflow over HTTP, whichever API it comes by (`POST /v0.1/dispatch`,
`POST /v1/messages`): the same checks in the same order, the same durable store, the same
idempotency and the same log line. Each API brings only its own reading of the body
(`Submission`) and its own 202.

The order of checks is part of the contract: admission control first (refusing must cost
little), then credentials (401) and the `Idempotency-Key`'s syntax, before the body is read;
then the body's size (413), its presence and media type (400, 415), its JSON and every
validation rule. Only a request that passed all of them is stored, and the 202 is sent only
once it is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opendispatch import event_log
from opendispatch.api.http import Request
from opendispatch.api.idempotency import idempotency_key, same_request, with_body
from opendispatch.api.routes import AuthenticatedRoutes, is_json_media_type
from opendispatch.errors import (
    ApplicationDeleted,
    InvalidParameter,
    InvalidRequest,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from opendispatch.ids import uuid7
from opendispatch.runtime.admission import AdmissionControl
from opendispatch.runtime.submission import require_routes
from opendispatch.store.records import EarlierRequest, NewWorkflow

__all__ = ["Accepted", "AcceptingRoutes", "Submission"]


@dataclass(frozen=True, slots=True)
class Submission:
    """A valid request body, read by its API: what to store and what to answer with."""

    template: str
    request_json: str  # as stored: the body itself (Dispatch), or its steps (v1)
    # Each step's channel (Dispatch's name), with the request field that chose it.
    channels: tuple[tuple[str, str], ...]
    warnings: tuple[InvalidParameter, ...] = ()


@dataclass(frozen=True, slots=True)
class Accepted:
    dispatch_uuid: str
    submission: Submission
    # The first step's message, when this request stored the workflow; None when it is an
    # Idempotency-Key's repeat, answered with the first request's workflow.
    first_message_uuid: str | None

    @property
    def replayed(self) -> bool:
        return self.first_message_uuid is None


class AcceptingRoutes(AuthenticatedRoutes):
    def __init__(self, *, admission: AdmissionControl, **routes: Any) -> None:
        super().__init__(**routes)
        self._admission = admission

    async def _accept(
        self, request: Request, read: Callable[[bytes], Submission], *, noun: str
    ) -> Accepted:
        """Check, read and store the request's workflow; durable once this returns.
        `noun`: what the body holds, for the errors ("workflow", "message")."""
        if not self._admission.admit():  # before anything else: refusing must cost little
            raise ServiceUnavailable(
                "The server is at capacity; retry in a second.",
                headers=((b"retry-after", b"1"),),
            )
        principal = await self._principal(request)
        key = idempotency_key(request)
        body = await request.body(self._settings.max_body_bytes)
        if not body.strip():
            raise InvalidRequest(
                f"The request has no body: send the {noun} as JSON.",
                invalid_parameters=(InvalidParameter("body", "is required"),),
            )
        if not is_json_media_type(request.header(b"content-type")):
            raise UnsupportedMediaType(f"Send the {noun} as application/json.")
        submission = read(body)
        if principal.credentials.application.live:
            await require_routes(
                self._runtime.routes, principal.application_id, submission.channels
            )
        created_at_ms = self._clock_ms()
        dispatch_uuid = uuid7(created_at_ms)
        keyed = None if key is None else with_body(key, body)
        try:
            stored = await self._runtime.accept(
                NewWorkflow(
                    dispatch_uuid=dispatch_uuid,
                    application_id=principal.application_id,
                    template=submission.template,
                    request_json=submission.request_json,
                    created_at_ms=created_at_ms,
                    channels=tuple(channel for _, channel in submission.channels),
                    idempotency_key=keyed,
                ),
                principal.credentials,
            )
        except ApplicationDeleted:  # `apps delete` ran while this request was under way
            raise self._authenticator.refuse_deleted(principal.application_id) from None
        if isinstance(stored, EarlierRequest):  # nothing stored: nothing to log
            assert keyed is not None  # only a key finds an earlier request
            same_request(stored, keyed)
            return Accepted(stored.dispatch_uuid, submission, None)
        if event_log.enabled():  # the request id may cost a uuid4: only when it is written
            event_log.workflow_accepted(
                dispatch_uuid=dispatch_uuid,
                application_id=principal.application_id,
                request_id=request.request_id,
                steps=len(submission.channels),
            )
        return Accepted(dispatch_uuid, submission, stored.sends[0].message_uuid)
