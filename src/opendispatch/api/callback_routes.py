"""`POST /v0.1/providers/{name}/callbacks` (and the `GET` handshake WhatsApp Cloud requires):
where each provider account's status callbacks come in.

Not authenticated with an application's credentials: each provider signs its callbacks its own
way, and the account's adapter checks that signature (`runtime.callbacks`). A signature that
covers the URL covers the address the provider used, which is `--public-url` joined with the
path and the query as they arrived, never the Host header (behind a proxy they differ).
A callback is answered 200 only once what it reports is stored.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import msgspec

from opendispatch.api.http import Request, Response, json_response
from opendispatch.errors import (
    ApiError,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from opendispatch.providers.kinds import CallbackRefused, CallbackRequest
from opendispatch.runtime.callbacks import CallbackIntake
from opendispatch.runtime.clock import Clock

__all__ = ["CallbackRoutes"]

log = logging.getLogger(__name__)

# Providers' callbacks are small (a WhatsApp batch of statuses is a few kB).
_MAX_CALLBACK_BYTES = 1024 * 1024

_REFUSALS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    405: MethodNotAllowed,
    503: ServiceUnavailable,
}


class CallbackRoutes:
    def __init__(
        self, *, intake: CallbackIntake | None, public_url: str | None, clock: Clock
    ) -> None:
        self._intake = intake
        self._public_url = public_url
        self._clock = clock
        self._warned_no_public_url = False

    async def receive(self, request: Request) -> Response:
        intake = self._require_intake()
        callback = await self._callback(request)
        try:
            receipt = await intake.receive(request.path_params["name"], callback)
        except CallbackRefused as refused:
            raise _refusal(refused) from None
        body = msgspec.json.encode({"landed": receipt.landed, "ignored": receipt.ignored})
        return json_response(200, body)

    async def handshake(self, request: Request) -> Response:
        intake = self._require_intake()
        callback = await self._callback(request)
        try:
            challenge = await intake.handshake(request.path_params["name"], callback)
        except CallbackRefused as refused:
            raise _refusal(refused) from None
        return Response(200, challenge, content_type=b"text/plain")

    def _require_intake(self) -> CallbackIntake:
        if self._intake is None:
            raise NotFound("This server has no provider accounts.")
        return self._intake

    async def _callback(self, request: Request) -> CallbackRequest:
        query = request.scope.get("query_string", b"").decode("latin-1")
        headers: dict[str, str] = {}
        for raw_name, raw_value in request.scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = await request.body(_MAX_CALLBACK_BYTES) if request.method == "POST" else b""
        return CallbackRequest(
            method=request.method,
            url=self._base(request, headers) + request.path + (f"?{query}" if query else ""),
            query=parse_qsl(query, keep_blank_values=True),
            headers=headers,
            body=body,
            received_at_ms=self._clock.now_ms(),
        )

    def _base(self, request: Request, headers: dict[str, str]) -> str:
        if self._public_url is not None:
            return self._public_url
        if not self._warned_no_public_url:
            self._warned_no_public_url = True
            log.warning(
                "a provider callback arrived and --public-url is not set: signatures that "
                "cover the URL are checked against the Host header, which a proxy changes"
            )
        scheme = request.scope.get("scheme", "http")
        return f"{scheme}://{headers.get('host', 'localhost')}"


def _refusal(refused: CallbackRefused) -> ApiError:
    error = _REFUSALS.get(refused.status_code, Unauthorized)
    return error(f"The callback was refused: {refused.reason}")
