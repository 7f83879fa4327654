"""`/v0.1/dispatch`: create a workflow, read one, list them, cancel one.

The order of checks is part of the contract: the route (404/405) is known before anything
else, credentials are checked before the body is read (401), then the body's size (413), its
presence (400) and media type (415), its JSON (400) and every validation rule (400). Only a
request that passed all of them is stored, and the 202 is sent only once it is durable. A
field that is valid but can never take effect is accepted, and the 202 says so in `warnings`.
An `Idempotency-Key` is checked with the credentials (400), and claimed only with the
workflow it stores (see `idempotency`): a request refused before that leaves the key unused.

Cancel is OpenDispatch's extension (Vonage's Dispatch API has none): `POST .../cancel` stops
a running workflow and answers 200 once that is durable; 409 if it has already ended.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opendispatch import event_log
from opendispatch.api.http import Request, Response, json_response
from opendispatch.api.idempotency import REPLAYED, idempotency_key, same_request, with_body
from opendispatch.api.routes import AuthenticatedRoutes, is_json_media_type
from opendispatch.api.validation import condition_warnings, validate_create_workflow_json
from opendispatch.api.views import message_view, workflow_page, workflow_view
from opendispatch.api.workflow_query import read_workflow_query
from opendispatch.auth.authenticator import Principal
from opendispatch.errors import (
    ApplicationDeleted,
    Conflict,
    InvalidParameter,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from opendispatch.ids import is_uuid, uuid7
from opendispatch.runtime.admission import AdmissionControl
from opendispatch.runtime.shell import CancelOutcome
from opendispatch.runtime.submission import require_routes
from opendispatch.store.records import LoadedWorkflow, NewWorkflow

__all__ = ["DispatchRoutes"]


class DispatchRoutes(AuthenticatedRoutes):
    def __init__(self, *, admission: AdmissionControl, **routes: Any) -> None:
        super().__init__(**routes)
        self._admission = admission

    async def create(self, request: Request) -> Response:
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
                "The request has no body: send the workflow as JSON.",
                invalid_parameters=(InvalidParameter("body", "is required"),),
            )
        if not is_json_media_type(request.header(b"content-type")):
            raise UnsupportedMediaType("Send the workflow as application/json.")
        valid = validate_create_workflow_json(body, max_messages=self._settings.max_messages)
        if principal.credentials.application.live:
            await require_routes(self._runtime.routes, principal.application_id, valid.messages)
        created_at_ms = self._clock_ms()
        dispatch_uuid = uuid7(created_at_ms)
        keyed = None if key is None else with_body(key, body)
        try:
            earlier = await self._runtime.accept(
                NewWorkflow(
                    dispatch_uuid=dispatch_uuid,
                    application_id=principal.application_id,
                    template=valid.template,
                    request_json=body.decode(),  # as submitted, byte for byte
                    created_at_ms=created_at_ms,
                    channels=tuple(message.to.type.value for message in valid.messages),
                    idempotency_key=keyed,
                ),
                principal.credentials,
            )
        except ApplicationDeleted:  # `apps delete` ran while this request was under way
            raise self._authenticator.refuse_deleted(principal.application_id) from None
        warnings = condition_warnings(valid.messages)
        if earlier is not None and keyed is not None:  # nothing stored: nothing to log
            same_request(earlier, keyed)
            return _accepted(earlier.dispatch_uuid, warnings, REPLAYED)  # the first answer
        if event_log.enabled():  # the request id may cost a uuid4: only when it is written
            event_log.workflow_accepted(
                dispatch_uuid=dispatch_uuid,
                application_id=principal.application_id,
                request_id=request.request_id,
                steps=len(valid.messages),
            )
        return _accepted(dispatch_uuid, warnings)

    async def get(self, request: Request) -> Response:
        principal = await self._principal(request)
        loaded = await self._owned_workflow(principal, request.path_params["dispatch_uuid"])
        webhooks = await self._store.list_webhooks(loaded.record.dispatch_uuid)
        sends = await self._store.send_records(loaded.record.dispatch_uuid)
        return json_response(200, workflow_view(loaded, webhooks, sends))

    async def cancel(self, request: Request) -> Response:
        principal = await self._principal(request)
        dispatch_uuid = request.path_params["dispatch_uuid"]
        outcome = await self._runtime.cancel(principal.application_id, dispatch_uuid)
        if outcome is CancelOutcome.NOT_FOUND:
            raise NotFound(f"No workflow {dispatch_uuid} for this application.")
        if outcome is CancelOutcome.ENDED:
            raise Conflict(
                f"Workflow {dispatch_uuid} has already ended; only a running workflow can be "
                "cancelled."
            )
        event_log.workflow_cancelled(
            dispatch_uuid=dispatch_uuid,
            application_id=principal.application_id,
            by="application",
            request_id=request.request_id,
        )
        return json_response(
            200, b'{"dispatch_uuid":"' + dispatch_uuid.encode() + b'","status":"cancelled"}'
        )

    async def get_message(self, request: Request) -> Response:
        principal = await self._principal(request)
        loaded = await self._owned_workflow(principal, request.path_params["dispatch_uuid"])
        sends = await self._store.send_records(loaded.record.dispatch_uuid)
        body = message_view(loaded, request.path_params["message_uuid"], sends)
        if body is None:
            raise NotFound("No such message in this workflow.")
        return json_response(200, body)

    async def _owned_workflow(self, principal: Principal, dispatch_uuid: str) -> LoadedWorkflow:
        loaded = await self._store.load_workflow(dispatch_uuid) if is_uuid(dispatch_uuid) else None
        if loaded is None or loaded.record.application_id != principal.application_id:
            raise NotFound(f"No workflow {dispatch_uuid} for this application.")
        return loaded

    async def list(self, request: Request) -> Response:
        principal = await self._principal(request)
        query = read_workflow_query(request, self._page_size)
        # One more than asked tells whether a next page exists without a COUNT.
        records = await self._store.list_workflows(
            principal.application_id,
            limit=query.page_size + 1,
            before=query.cursor,
            where=query.where,
        )
        has_next = len(records) > query.page_size
        records = records[: query.page_size]
        body = workflow_page(
            records,
            page_size=query.page_size,
            self_href=query.href(query.cursor),
            next_href=query.href(records[-1].dispatch_uuid) if has_next else None,
        )
        return json_response(200, body)


def _accepted(
    dispatch_uuid: str, warnings: list[InvalidParameter], *headers: tuple[bytes, bytes]
) -> Response:
    """The 202 of a stored workflow: the first answer, and a repeat's (the same body, so the
    same warnings)."""
    body = b'{"dispatch_uuid":"' + dispatch_uuid.encode() + b'"}'
    if warnings:  # rare: the usual body stays exactly as it was
        body = msgspec.json.encode(
            {
                "dispatch_uuid": dispatch_uuid,
                "warnings": [{"name": w.name, "reason": w.reason} for w in warnings],
            }
        )
    location = (b"location", f"/v0.1/dispatch/{dispatch_uuid}".encode())
    return json_response(202, body, location, *headers)
