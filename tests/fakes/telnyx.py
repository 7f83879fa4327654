"""A fake Telnyx Messaging v2 API: `POST /v2/messages` and Ed25519-signed status webhooks.

It checks what Telnyx checks, in its error shape (`{"errors": [{"code", "title", "detail",
"source"}]}`): the Bearer API key (401, 10009), a JSON body (415 10014, 400 10023), `to` in
+E.164 (400 40310), `from` in +E.164 or an alphanumeric sender ID (400 40305, required
unless a messaging profile is named), `text` or `media_urls` (400 10004; MMS needs
`media_urls`), URLs (400 10003). A success is 200 `{"data": <message>}` with a uuid4 `id`
and `to[0].status` "queued". A 429 carries code 10011 and `x-ratelimit-limit/-remaining/
-reset` (the reset in seconds until the window ends, as documented).

Recipient scripts (the last digit of `to`): 1 is refused at send with 40310 "Invalid 'to'
address", HTTP 400 (Telnyx's code for a `to` it cannot send to); 2 sends `message.sent`
then `message.finalized` with `delivery_failed` and error 40008 "Undeliverable"; 4 sends
nothing; any other sends `message.sent` then `message.finalized` with `delivered` (SMS and
MMS report no reads). Webhooks go to the message's `webhook_url`, else (unless
`use_profile_webhooks` is false) to `fake.callback_url`, the messaging profile's webhook.
They are signed as Telnyx signs: `telnyx-signature-ed25519` = base64 Ed25519 signature over
`f"{telnyx-timestamp}|"` + body, with a key pair the fake generates; `account_settings()`
gives its public key. The finalized event's cost is `cost_amount` in `cost_currency` (USD by
default, as Telnyx bills most accounts).
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fakes.base import CallbackPlan, FakeMessage, FakeProvider

__all__ = ["FakeTelnyx"]

_PLUS_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SENT_WORDS = frozenset({"queued", "sending", "sent"})

# Default titles and details, from developers.telnyx.com's API error reference.
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("10015", "Bad Request", "The request failed because it was not well-formed."),
    401: (
        "10009",
        "Authentication failed",
        "The required authentication headers were either invalid or not included in the request.",
    ),
    403: (
        "10010",
        "Authorization failed",
        "You do not have permission to perform the requested action on the specified "
        "resource or resources.",
    ),
    404: ("10005", "Resource not found", "The requested resource or URL could not be found."),
    429: (
        "10011",
        "Too many requests",
        "You have exceeded the maximum number of allowed requests.",
    ),
}
_UNEXPECTED = ("10007", "Unexpected error", "An unexpected error occured.")


def _error_body(code: str, title: str, detail: str, pointer: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "title": title, "detail": detail}
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    error["meta"] = {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"}
    return {"errors": [error]}


def _is_web_url(value: Any) -> bool:
    if not isinstance(value, str) or not 0 < len(value) <= 2000:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class FakeTelnyx(FakeProvider):
    reads_on_channels = frozenset()

    def __init__(self, *, messaging_profile_id: str | None = None) -> None:
        super().__init__()
        self.api_key = "KEY" + secrets.token_hex(16).upper()
        self.messaging_profile_id = messaging_profile_id or str(uuid.uuid4())
        self._signing_key = Ed25519PrivateKey.generate()
        raw = self._signing_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = base64.b64encode(raw).decode()
        self.cost_amount = "0.0040"
        self.cost_currency = "USD"
        self.rate_limit = 100  # what x-ratelimit-limit says

    def account_settings(self) -> dict[str, str]:
        return {
            "api_key": self.api_key,
            "public_key": self.public_key,
            "messaging_profile_id": self.messaging_profile_id,
        }

    def signed_headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The headers Telnyx sends with `body`, signed now (or at `timestamp`)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._signing_key.sign(stamp.encode() + b"|" + body)
        return {
            "Content-Type": "application/json",
            "Telnyx-Signature-Ed25519": base64.b64encode(signature).decode(),
            "Telnyx-Timestamp": stamp,
        }

    # -- the API ---------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v2/messages", self._send)]

    def error_response(
        self, status: int, *, code: str | None = None, text: str | None = None
    ) -> web.Response:
        default_code, title, detail = _ERRORS.get(status, _UNEXPECTED)
        return self._error(status, code or default_code, text or title, detail)

    def _error(
        self, status: int, code: str, title: str, detail: str, pointer: str | None = None
    ) -> web.Response:
        headers = {}
        if status == 429:
            hint = self.retry_after_s
            headers = {
                "x-ratelimit-limit": str(self.rate_limit),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(math.ceil(hint) if hint is not None else 1),
            }
        return web.json_response(
            _error_body(code, title, detail, pointer), status=status, headers=headers
        )

    async def _send(self, request: web.Request) -> web.Response:
        presented = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(presented, f"Bearer {self.api_key}".encode()):
            return self.error_response(401)
        fault = self.fault()
        if fault is not None:
            return fault
        await self.wait_if_hanging()
        if request.content_type != "application/json":
            return self._error(
                415,
                "10014",
                "Unsupported Media Type",
                "The request failed because the server does not support the media type.",
            )
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return self._error(400, "10023", "Invalid JSON", "The supplied JSON is invalid.")
        refusal = self._invalid(body)
        if refusal is not None:
            return refusal
        if body["to"].endswith("1"):
            return self._invalid_to()
        message = self._accept(body)
        record = self._resource(message, status="queued", at=datetime.now(UTC))
        self.accept_send(message)
        return web.json_response({"data": record})

    def _invalid_to(self) -> web.Response:
        return self._error(
            400,
            "40310",
            "Invalid 'to' address",
            "The 'to' address should be a single valid number.",
            "/to",
        )

    def _invalid(self, body: dict[str, Any]) -> web.Response | None:
        """Telnyx's checks of a send request, in its error shape; None when it is valid."""
        missing = "A required parameter was missing."
        if "to" not in body:
            return self._error(400, "10004", "Missing required parameter", missing, "/to")
        if not isinstance(body["to"], str) or not _PLUS_E164.match(body["to"]):
            return self._invalid_to()
        sender = body.get("from")
        if sender is None and "messaging_profile_id" not in body:
            return self._error(400, "10004", "Missing required parameter", missing, "/from")
        if sender is not None and not (
            isinstance(sender, str)
            and (_PLUS_E164.match(sender) or _ALPHANUMERIC_SENDER.match(sender))
        ):
            return self._error(
                400,
                "40305",
                "Invalid 'from' address",
                "The 'from' address should be a valid number or alphanumeric sender ID.",
                "/from",
            )
        if body.get("type", "SMS") not in ("SMS", "MMS"):
            return self._error(400, "10015", "Bad Request", "'type' must be SMS or MMS.", "/type")
        text, media = body.get("text"), body.get("media_urls")
        if text is not None and (not isinstance(text, str) or not text):
            return self._error(
                400, "10015", "Bad Request", "'text' must be a non-empty string.", "/text"
            )
        if media is not None and (
            not isinstance(media, list) or not media or not all(map(_is_web_url, media))
        ):
            return self._error(
                400,
                "10003",
                "Invalid URL",
                "The URL provided was invalid, malformed, or too long.",
                "/media_urls",
            )
        if body.get("type") == "MMS" and media is None:
            return self._error(400, "10004", "Missing required parameter", missing, "/media_urls")
        if text is None and media is None:
            return self._error(400, "10004", "Missing required parameter", missing, "/text")
        for field in ("webhook_url", "webhook_failover_url"):
            if field in body and not _is_web_url(body[field]):
                return self._error(
                    400,
                    "10003",
                    "Invalid URL",
                    "The URL provided was invalid, malformed, or too long.",
                    f"/{field}",
                )
        if not isinstance(body.get("use_profile_webhooks", True), bool):
            return self._error(
                400,
                "10015",
                "Bad Request",
                "'use_profile_webhooks' must be a boolean.",
                "/use_profile_webhooks",
            )
        return None

    def _accept(self, body: dict[str, Any]) -> FakeMessage:
        callback_url = body.get("webhook_url")
        if callback_url is None and body.get("use_profile_webhooks", True):
            callback_url = self.callback_url
        return FakeMessage(
            provider_message_id=str(uuid.uuid4()),
            channel="mms" if body.get("type") == "MMS" or "media_urls" in body else "sms",
            to=body["to"],
            from_=body.get("from", "+15550000000"),
            text=body.get("text"),
            callback_url=callback_url,
            request=body,
        )

    def _resource(
        self,
        message: FakeMessage,
        *,
        status: str,
        at: datetime,
        errors: list[dict[str, Any]] | None = None,
        finalized: bool = False,
    ) -> dict[str, Any]:
        """The message resource as Telnyx returns it and puts in an event's payload."""
        request = message.request
        stamp = at.isoformat(timespec="milliseconds")
        return {
            "record_type": "message",
            "direction": "outbound",
            "id": message.provider_message_id,
            "type": "MMS" if message.channel == "mms" else "SMS",
            "messaging_profile_id": request.get("messaging_profile_id", self.messaging_profile_id),
            "organization_id": "b448f9cc-a842-4784-98e9-03c1a5872950",
            "from": {"phone_number": message.from_, "carrier": "Telnyx", "line_type": "VoIP"},
            "to": [
                {
                    "phone_number": message.to,
                    "status": status,
                    "carrier": "T-MOBILE USA, INC.",
                    "line_type": "Wireless",
                }
            ],
            "cc": [],
            "text": message.text,
            "media": [{"url": url} for url in request.get("media_urls", [])],
            "webhook_url": request.get("webhook_url"),
            "webhook_failover_url": request.get("webhook_failover_url"),
            "encoding": "GSM-7",
            "parts": 1,
            "tags": [],
            "cost": (
                {"amount": self.cost_amount, "currency": self.cost_currency} if finalized else None
            ),
            "received_at": stamp,
            "sent_at": None if status == "queued" else stamp,
            "completed_at": stamp if finalized else None,
            "valid_until": None,
            "errors": errors or [],
        }

    # -- callbacks -------------------------------------------------------------------------

    def statuses_for(self, message: FakeMessage, script: str) -> list[CallbackPlan]:
        if message.callback_url is None or script == "4":
            return []
        sent = CallbackPlan(message=message, status="sent")
        if script == "2":
            return [
                sent,
                CallbackPlan(
                    message=message,
                    status="delivery_failed",
                    error_code="40008",
                    error_text="Undeliverable",
                ),
            ]
        return [sent, CallbackPlan(message=message, status="delivered")]

    def callback_request(self, plan: CallbackPlan) -> tuple[str, dict[str, str], bytes]:
        url = plan.message.callback_url
        assert url is not None  # statuses_for plans none without a URL
        finalized = plan.status not in _SENT_WORDS
        errors = (
            [
                {
                    "code": plan.error_code,
                    "title": plan.error_text or "Undeliverable",
                    "detail": "The recipient carrier did not accept the message.",
                }
            ]
            if plan.error_code is not None
            else []
        )
        now = datetime.now(UTC)
        envelope = {
            "data": {
                "event_type": "message.finalized" if finalized else "message.sent",
                "id": str(uuid.uuid4()),
                "occurred_at": now.isoformat(timespec="milliseconds"),
                "payload": self._resource(
                    plan.message, status=plan.status, at=now, errors=errors, finalized=finalized
                ),
                "record_type": "event",
            },
            "meta": {"attempt": 1, "delivered_to": url},
        }
        body = json.dumps(envelope).encode()
        return url, self.signed_headers(body), body
