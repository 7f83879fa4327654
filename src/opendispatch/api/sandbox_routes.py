"""`POST /v0.1/sandbox/messages/{message_uuid}/status`: inject any status by hand.

For developers trying their receivers and their failover logic: the injected status is an
engine event like any provider's, so it is forwarded as a webhook, counted in the usage, and
moves the workflow exactly as a real one would. Its `timestamp` may not precede the
message's submission (a history would show `read` before `submitted`), nor be more than
five minutes ahead of the server's clock.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opendispatch.api.http import Request, Response, json_response
from opendispatch.api.json_body import read_json
from opendispatch.api.response_models import InjectedStatusAccepted
from opendispatch.api.routes import AuthenticatedRoutes, invalid_request_from, is_json_media_type
from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.errors import (
    Forbidden,
    InvalidParameter,
    InvalidRequest,
    NotFound,
    UnsupportedMediaType,
)
from opendispatch.ids import is_uuid
from opendispatch.runtime.shell import decode_state
from opendispatch.timefmt import iso_ms, parse_iso_ms

__all__ = ["InjectedStatus", "SandboxRoutes"]


# A status may say it happened this long after the server's now (clocks differ a little);
# later than that, or before this, it is a mistake, not a status.
_FUTURE_SKEW_MS: Final = 5 * 60 * 1000
_EARLIEST_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z


class _ErrorBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    code: Annotated[int, Field(ge=0, le=2_147_483_647)]  # what a provider's codes fit in
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class _UsageBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    # ASCII digits only: `\d` would also take other scripts' digits, which no price uses.
    price: Annotated[str, Field(pattern=r"^[0-9]{1,10}(\.[0-9]{1,10})?$")]
    currency: Literal["EUR"] = "EUR"


class InjectedStatus(BaseModel):
    """A status to report for a message, as a provider would."""

    model_config = ConfigDict(strict=True, extra="forbid")
    status: MessageStatus
    error: _ErrorBody | None = None
    usage: _UsageBody | None = None
    timestamp: str | None = Field(
        default=None, description="ISO 8601; when the status happened (default: now)."
    )


class SandboxRoutes(AuthenticatedRoutes):
    async def inject_status(self, request: Request) -> Response:
        principal = await self._principal(request)
        if not self._settings.sandbox_injection:
            raise Forbidden(
                "Sandbox status injection is switched off on this server (--no-sandbox-injection)."
            )
        if principal.credentials.application.live:
            raise Forbidden(
                "Sandbox statuses cannot be injected into a live application's messages: "
                "their statuses come from the providers that carried them."
            )
        message_uuid = request.path_params["message_uuid"]
        owner = await self._store.message_owner(message_uuid) if is_uuid(message_uuid) else None
        if owner is None or owner.application_id != principal.application_id:
            raise NotFound(f"No message {message_uuid} for this application.")
        if not is_json_media_type(request.header(b"content-type")):
            raise UnsupportedMediaType("Send the status as application/json.")
        body = await request.body(64 * 1024) or b"null"
        read_json(body)  # the same reading of JSON as every other body (depth, NaN)
        try:
            injected = InjectedStatus.model_validate_json(body)
        except ValidationError as exc:
            raise invalid_request_from(exc, "The status did not validate.") from None
        at_ms = None
        if injected.timestamp is not None:
            at_ms = self._timestamp_ms(injected.timestamp)
            submitted_ms = await self._submitted_at_ms(owner.dispatch_uuid, message_uuid)
            if at_ms < submitted_ms:
                raise InvalidRequest(
                    "The status is stamped before its message was submitted.",
                    invalid_parameters=(
                        InvalidParameter(
                            "timestamp",
                            "must not be before the message was submitted "
                            f"({iso_ms(submitted_ms)})",
                        ),
                    ),
                )
        await self._runtime.report_status(
            message_uuid,
            injected.status,
            at_ms=at_ms,
            error=None
            if injected.error is None
            else MessageError(code=injected.error.code, reason=injected.error.reason),
            price=None if injected.usage is None else injected.usage.price,
        )
        answer = InjectedStatusAccepted(
            message_uuid=message_uuid, dispatch_uuid=owner.dispatch_uuid, status=injected.status
        )
        return json_response(202, answer.model_dump_json().encode())

    async def _submitted_at_ms(self, dispatch_uuid: str, message_uuid: str) -> int:
        """When the message was submitted: its `submitted` status, or (none yet, or rejected
        at once) when the workflow asked for it to be sent. A status stamped earlier would
        show in its history before the message existed."""
        loaded = await self._store.load_workflow(dispatch_uuid)
        message = (
            None
            if loaded is None or loaded.state_json is None
            else decode_state(loaded.state_json).message(message_uuid)
        )
        if message is None:  # its row exists, so its state does: deleted meanwhile
            raise NotFound(f"No message {message_uuid} for this application.")
        submitted = [r.at_ms for r in message.history if r.status is MessageStatus.SUBMITTED]
        return submitted[0] if submitted else message.sent_at_ms

    def _timestamp_ms(self, text: str) -> int:
        try:
            at_ms = parse_iso_ms(text)
        except (ValueError, OverflowError):
            raise InvalidRequest(
                "The timestamp is not ISO 8601.",
                invalid_parameters=(InvalidParameter("timestamp", "must be ISO 8601"),),
            ) from None
        if not _EARLIEST_MS <= at_ms <= self._clock_ms() + _FUTURE_SKEW_MS:
            raise InvalidRequest(
                "The timestamp is out of range.",
                invalid_parameters=(
                    InvalidParameter(
                        "timestamp", "must be after 2000-01-01 and at most 5 minutes from now"
                    ),
                ),
            )
        return at_ms
