"""`/v0.1/dispatch`: create a workflow, read one, list them, cancel one.

The route (404/405) is known before anything else; then come the checks every accepting API
makes in the same order (`api.accepting`), ending with every validation rule (400). A field
that is valid but can never take effect is accepted, and the 202 says so in `warnings`. An
`Idempotency-Key` is checked with the credentials (400), and claimed only with the workflow
it stores (see `idempotency`): a request refused before that leaves the key unused.

Cancel is OpenDispatch's extension (Vonage's Dispatch API has none): `POST .../cancel` stops
a running workflow and answers 200 once that is durable; 409 if it has already ended.
"""

from __future__ import annotations

import msgspec

from opendispatch import event_log
from opendispatch.api.accepting import AcceptingRoutes, Submission
from opendispatch.api.http import Request, Response, json_response
from opendispatch.api.idempotency import REPLAYED
from opendispatch.api.validation import condition_warnings, validate_create_workflow_json
from opendispatch.api.views import message_view, workflow_page, workflow_view
from opendispatch.api.workflow_query import read_workflow_query
from opendispatch.auth.authenticator import Principal
from opendispatch.errors import Conflict, InvalidParameter, NotFound
from opendispatch.ids import is_uuid
from opendispatch.runtime.shell import CancelOutcome
from opendispatch.runtime.submission import dispatch_channels
from opendispatch.store.records import LoadedWorkflow

__all__ = ["DispatchRoutes"]


class DispatchRoutes(AcceptingRoutes):
    async def create(self, request: Request) -> Response:
        accepted = await self._accept(request, self._read, noun="workflow")
        headers = (REPLAYED,) if accepted.replayed else ()
        return _accepted(accepted.dispatch_uuid, accepted.submission.warnings, *headers)

    def _read(self, body: bytes) -> Submission:
        valid = validate_create_workflow_json(body, max_messages=self._settings.max_messages)
        return Submission(
            template=valid.template,
            request_json=body.decode(),  # as submitted, byte for byte
            channels=tuple(dispatch_channels(valid.messages)),
            warnings=tuple(condition_warnings(valid.messages)),
        )

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
    dispatch_uuid: str, warnings: tuple[InvalidParameter, ...], *headers: tuple[bytes, bytes]
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
