"""`POST /v1/messages`: Vonage's Messages API v1, on the same engine as the Dispatch API.

A message without `failover` is a one-step workflow: `202 {"message_uuid"}`. With a
`failover` list, each entry is a complete message, sent in order when the one before it is
rejected or undeliverable: `202 {"message_uuid", "workflow_id"}`, where `message_uuid` is the
first message's and `workflow_id` is the workflow's id, which `GET /v0.1/dispatch/{id}`, the
dashboard and `opendispatch status` take. Either way the 202's `Location` names the workflow.
The same credentials, admission control, `Idempotency-Key` and durability as the Dispatch
API (`api.accepting`); errors in v1's words (`messages_v1.problems`).
"""

from __future__ import annotations

import re

import msgspec

from opendispatch.api.accepting import AcceptingRoutes, Submission
from opendispatch.api.http import Request, Response, json_response
from opendispatch.api.idempotency import REPLAYED
from opendispatch.api.messages_v1.translate import workflow_document
from opendispatch.api.messages_v1.validation import validate_send_message_json
from opendispatch.api.validation import condition_warnings
from opendispatch.errors import InvalidParameter
from opendispatch.runtime.shell import decode_state
from opendispatch.store.records import LoadedWorkflow

__all__ = ["MessagesRoutes"]

_encode = msgspec.json.Encoder().encode
_STEP = re.compile(r"^workflow\[(\d+)\]\.failover\.")


class MessagesRoutes(AcceptingRoutes):
    async def send(self, request: Request) -> Response:
        accepted = await self._accept(request, self._read, noun="message")
        workflow_id = accepted.dispatch_uuid
        message_uuid = accepted.first_message_uuid
        if message_uuid is None:  # a repeat: the first request's message
            message_uuid = _first_message_uuid(await self._store.load_workflow(workflow_id))
        body: dict[str, object] = {"message_uuid": message_uuid}
        if len(accepted.submission.channels) > 1:
            body["workflow_id"] = workflow_id
        if accepted.submission.warnings:
            body["warnings"] = [
                {"name": warning.name, "reason": warning.reason}
                for warning in accepted.submission.warnings
            ]
        headers = [(b"location", f"/v0.1/dispatch/{workflow_id}".encode())]
        if accepted.replayed:
            headers.append(REPLAYED)
        return json_response(202, _encode(body), *headers)

    def _read(self, body: bytes) -> Submission:
        valid = validate_send_message_json(body, max_messages=self._settings.max_messages)
        document = workflow_document(valid.messages)
        steps = document["workflow"]
        return Submission(
            template=document["template"],
            request_json=_encode(document).decode(),
            channels=tuple(
                ("channel" if index == 0 else f"failover[{index - 1}].channel", step["to"]["type"])
                for index, step in enumerate(steps)
            ),
            warnings=tuple(_v1_names(condition_warnings(steps))),
        )


def _v1_names(warnings: list[InvalidParameter]) -> list[InvalidParameter]:
    """Dispatch's warning names (`workflow[1].failover.condition_status`) as v1 calls the
    field (`failover[0].opendispatch.condition_status`)."""
    named = []
    for warning in warnings:
        found = _STEP.match(warning.name)
        if found is None:
            named.append(warning)
            continue
        index = int(found[1])
        prefix = "" if index == 0 else f"failover[{index - 1}]."
        rest = warning.name[found.end() :]
        named.append(InvalidParameter(f"{prefix}opendispatch.{rest}", warning.reason))
    return named


def _first_message_uuid(loaded: LoadedWorkflow | None) -> str:
    # The first request stored it, started: a repeat finds it.
    assert loaded is not None
    assert loaded.state_json is not None
    return decode_state(loaded.state_json).message_uuids[0]
