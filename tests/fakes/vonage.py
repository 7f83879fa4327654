"""A local Vonage Messages API v1: `POST /v1/messages` and v1 status callbacks, signed.

What it checks, as Vonage does: the `Authorization` header (the application's RS256 JWT,
verified with the public half of a key pair made for the test, or Basic `api_key:api_secret`:
401 `#unauthorized` otherwise); the required fields `to`, `from`, `channel`, `message_type`
and the content object its `message_type` names (422 `#1010` "Missing params" with
`invalid_parameters`); numbers as E.164 digits, the channel's content types, a WhatsApp
locale in Vonage's `en_GB` form (422 `#1020` "Invalid params"). Accepted: 202
`{"message_uuid"}`. Throttled: 429 "Rate Limit Hit", the SDK's test body.

A recipient ending in 1 is refused with 422 `#1050` "Number barred" (developer.vonage.com/en/
api-errors/messages: "The number you are trying to submit to is blacklisted"): a documented
recipient-side refusal. Callbacks use the v1 shape with `client_ref` echoed, `usage` in EUR
(SMS and MMS charged at `submitted`, the others at `delivered`) and failures as
`error: {type, title, detail}` whose `title` is the bare code, as Vonage's examples show. They
are signed HS256 with the signature secret, claims `iat`, `jti`, `iss`, `payload_hash`,
`api_key`, `application_id`. `send_unsigned_callback` sends one without a signature, as
Vonage does after an internal error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.base import CallbackPlan, FakeMessage, FakeProvider

__all__ = ["FakeVonage"]

_ERRORS = "https://developer.vonage.com/api-errors"
_MESSAGES_ERRORS = "https://developer.vonage.com/api-errors/messages"
_CONTENT_TYPES = {
    "sms": {"text"},
    "mms": {"image", "audio", "video", "vcard"},
    "whatsapp": {"text", "image", "audio", "video", "file", "template", "sticker", "custom"},
    "viber_service": {"text", "image", "video", "file"},
    "messenger": {"text", "image", "audio", "video", "file"},
    "rcs": {"text", "image", "video", "file", "custom"},
}
_NUMBERED = {"sms", "mms", "whatsapp", "viber_service"}  # `to` is an E.164 number
_E164 = re.compile(r"^[1-9][0-9]{6,14}$")
_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_TITLES = {
    401: ("unauthorized", "Unauthorized", "You did not provide correct credentials."),
    402: (
        "low-balance",
        "Low balance",
        "This request could not be performed due to your account balance being low.",
    ),
    403: (
        "forbidden",
        "Forbidden",
        "Your account does not have permission to perform this action.",
    ),
    404: ("not-found", "Not Found", "The requested resource does not exist."),
    429: ("rate-limit", "Rate Limit Hit", "Please wait, then retry your request"),
}
_PRICES = {"sms": "0.0333", "mms": "0.0550", "whatsapp": "0.0120", "viber_service": "0.0100"}
_CHARGED_AT_SUBMIT = {"sms", "mms"}
_UNDELIVERED = ("1330", "Unknown - The message could not be delivered")


class FakeVonage(FakeProvider):
    """Speaks Vonage's Messages API v1 on 127.0.0.1 with credentials made for the test."""

    def __init__(
        self,
        *,
        application_id: str | None = None,
        api_key: str = "abcd1234",
        api_secret: str | None = None,
        signature_secret: str | None = None,
    ) -> None:
        super().__init__()
        self.application_id = application_id or str(uuid.uuid4())
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_key = private_key.public_key()
        self.api_key = api_key
        self.api_secret = api_secret or secrets.token_hex(8)
        self.signature_secret = signature_secret or secrets.token_urlsafe(32)

    def account_settings(self, auth: Literal["jwt", "basic"] = "jwt") -> dict[str, str]:
        """The `--set` values of an account that talks to this fake (JWT or Basic auth)."""
        if auth == "jwt":
            credentials = {
                "application_id": self.application_id,
                "private_key": self.private_key_pem,
            }
        else:
            credentials = {"api_key": self.api_key, "api_secret": self.api_secret}
        return {**credentials, "signature_secret": self.signature_secret}

    # -- the API -------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self._send)]

    async def _send(self, request: web.Request) -> web.Response:
        await self.wait_if_hanging()
        if not self._authenticated(request.headers.get("Authorization", "")):
            return self.error_response(401)
        fault = self.fault()
        if fault is not None:
            return fault
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._problem(422, "1020", "Invalid params", "The body is not valid JSON.")
        if not isinstance(body, dict):
            return self._problem(422, "1020", "Invalid params", "The body is not an object.")
        missing = _missing_fields(body)
        if missing:
            return self._invalid(422, "1010", "Missing params", missing, "is required")
        invalid = _invalid_fields(body)
        if invalid:
            return self._invalid(422, "1020", "Invalid params", invalid, "invalid value")
        if body["to"].endswith("1"):
            return self._problem(
                422,
                "1050",
                "Number barred",
                "The number you are trying to submit to is blacklisted and may not receive "
                "messages.",
            )
        message = FakeMessage(
            provider_message_id=str(uuid.uuid4()),
            channel=body["channel"],
            to=body["to"],
            from_=body["from"],
            text=body.get("text"),
            callback_url=body.get("webhook_url"),
            request=body,
            reference=body.get("client_ref"),
        )
        self.accept_send(message)
        return web.json_response({"message_uuid": message.provider_message_id}, status=202)

    def _authenticated(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.partition(" ")
        if scheme == "Bearer":
            try:
                claims = jwt.decode(
                    credentials,
                    self.public_key,
                    algorithms=["RS256"],
                    options={"require": ["application_id", "iat", "jti"]},
                )
            except jwt.InvalidTokenError:
                return False
            return bool(claims["application_id"] == self.application_id)
        if scheme == "Basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            expected = f"{self.api_key}:{self.api_secret}".encode()
            return hmac.compare_digest(decoded, expected)
        return False

    def error_response(
        self, status: int, *, code: str | None = None, text: str | None = None
    ) -> web.Response:
        if code is not None:
            return self._problem(status, code, text or "Error", text or "")
        if status in _TITLES:
            fragment, title, detail = _TITLES[status]
            headers = {}
            if status == 429 and self.retry_after_s is not None:
                # Vonage documents no Retry-After; sent only when a test asks for a hint.
                headers["Retry-After"] = f"{self.retry_after_s:g}"
            return _problem_response(status, f"{_ERRORS}#{fragment}", title, detail, headers)
        title = "Service Unavailable" if status == 503 else "Internal Server Error"
        return _problem_response(status, _ERRORS, title, None, {})

    def _problem(self, status: int, code: str, title: str, detail: str) -> web.Response:
        return _problem_response(status, f"{_MESSAGES_ERRORS}#{code}", title, detail, {})

    def _invalid(
        self, status: int, code: str, title: str, names: list[str], reason: str
    ) -> web.Response:
        detail = "The value of one or more parameters is invalid."
        if code == "1010":
            detail = "Your request is incomplete and missing some mandatory parameters."
        extra = {"invalid_parameters": [{"name": name, "reason": reason} for name in names]}
        return _problem_response(
            status, f"{_MESSAGES_ERRORS}#{code}", title, detail, {}, extra=extra
        )

    # -- callbacks -----------------------------------------------------------------------

    def statuses_for(self, message: FakeMessage, script: str) -> list[CallbackPlan]:
        if message.callback_url is None and self.callback_url is None:
            return []  # real Vonage would use the application's status URL
        if script == "4":
            return []
        plans = [CallbackPlan(message=message, status="submitted")]
        if script == "2":
            failure = "rejected" if message.channel in _CHARGED_AT_SUBMIT else "undeliverable"
            code, text = _UNDELIVERED
            plans.append(
                CallbackPlan(message=message, status=failure, error_code=code, error_text=text)
            )
            return plans
        plans.append(CallbackPlan(message=message, status="delivered"))
        if script != "3" and message.channel in self.reads_on_channels:
            plans.append(CallbackPlan(message=message, status="read"))
        return plans

    def callback_body(self, plan: CallbackPlan) -> bytes:
        """The v1 status body of one plan, as Vonage serialises it."""
        message = plan.message
        body: dict[str, Any] = {
            "message_uuid": message.provider_message_id,
            "to": message.to,
            "from": message.from_,
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "status": plan.status,
            "channel": message.channel,
        }
        if message.reference is not None:
            body["client_ref"] = message.reference
        if plan.error_code is not None:
            code = int(plan.error_code) if plan.error_code.isdigit() else plan.error_code
            body["error"] = {
                "type": f"{_MESSAGES_ERRORS}#{plan.error_code}",
                "title": code,
                "detail": plan.error_text or "",
                "instance": str(uuid.uuid4()),
            }
        charged_at = "submitted" if message.channel in _CHARGED_AT_SUBMIT else "delivered"
        if plan.status == charged_at and message.channel in _PRICES:
            body["usage"] = {"currency": "EUR", "price": _PRICES[message.channel]}
        return json.dumps(body).encode()

    def sign(self, body: bytes, *, now_s: int | None = None, secret: str | None = None) -> str:
        """`Bearer <JWT>` as Vonage signs a callback (another secret or time for forgeries)."""
        claims = {
            "iat": int(time.time()) if now_s is None else now_s,
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(body).hexdigest(),
            "api_key": self.api_key,
            "application_id": self.application_id,
        }
        key = self.signature_secret if secret is None else secret
        return "Bearer " + jwt.encode(claims, key, algorithm="HS256")

    def callback_request(self, plan: CallbackPlan) -> tuple[str, dict[str, str], bytes]:
        url = plan.message.callback_url or self.callback_url
        assert url is not None
        body = self.callback_body(plan)
        headers = {"Content-Type": "application/json", "Authorization": self.sign(body)}
        return url, headers, body

    def send_unsigned_callback(self, message: FakeMessage, status: str = "delivered") -> int:
        """Post one status callback with no `Authorization`; the answer's status."""
        url, headers, body = self.callback_request(CallbackPlan(message=message, status=status))
        del headers["Authorization"]
        return self.post_raw(url, headers, body)


def _problem_response(
    status: int,
    kind: str,
    title: str,
    detail: str | None,
    headers: dict[str, str],
    *,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    problem: dict[str, Any] = {"type": kind, "title": title}
    if detail is not None:
        problem["detail"] = detail
    problem["instance"] = secrets.token_hex(16)
    problem.update(extra or {})
    return web.Response(
        status=status,
        body=json.dumps(problem).encode(),
        headers={"Content-Type": "application/problem+json", **headers},
    )


def _missing_fields(body: dict[str, Any]) -> list[str]:
    missing = [name for name in ("to", "from", "channel", "message_type") if not body.get(name)]
    kind = body.get("message_type")
    if isinstance(kind, str) and kind and not body.get(kind):
        missing.append(kind)
    elif kind == "template" and not (body.get("template") or {}).get("name"):
        missing.append("template.name")
    elif kind in {"image", "audio", "video", "file"} and not (body.get(kind) or {}).get("url"):
        missing.append(f"{kind}.url")
    return missing


def _invalid_fields(body: dict[str, Any]) -> list[str]:
    invalid = []
    channel, kind = body["channel"], body["message_type"]
    if channel not in _CONTENT_TYPES:
        return ["channel"]
    if kind not in _CONTENT_TYPES[channel]:
        invalid.append("message_type")
    for name in ("to", "from"):
        value = body[name]
        if not isinstance(value, str) or len(value) > 50:
            invalid.append(name)
    if channel in _NUMBERED and not _E164.match(str(body["to"])):
        invalid.append("to")
    if kind == "text" and not isinstance(body.get("text"), str):
        invalid.append("text")
    settings = body.get("whatsapp")
    if kind == "template" and isinstance(settings, dict):
        if settings.get("policy", "deterministic") != "deterministic":
            invalid.append("whatsapp.policy")
        if not _LOCALE.match(str(settings.get("locale", "en_US"))):
            invalid.append("whatsapp.locale")
    if body.get("webhook_version", "v1") not in ("v0.1", "v1"):
        invalid.append("webhook_version")
    if len(str(body.get("client_ref", ""))) > 100:
        invalid.append("client_ref")
    return invalid
