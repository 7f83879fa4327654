"""Vonage Messages API v1: one request per message, RFC 7807 errors, HS256-signed callbacks.

Dispatch is Vonage's own API, so its messages map almost field for field: the channel
`viber_service_msg` becomes `viber_service`, the content object moves to the top level with
`message_type`, a WhatsApp template's parameters become plain strings and its BCP 47 locale
(`en-GB`) Vonage's underscore form (`en_GB`). Our `message_uuid` travels as `client_ref`,
which Vonage echoes in every status callback, so a callback is matched without a lookup.

Authentication is the application's JWT (RS256 over `application_id`, `iat`, `jti`, `exp`)
when `application_id` and `private_key` are set, else Basic `api_key:api_secret`, as the
official SDK chooses. An RS256 signature costs 0.6 ms of CPU (2048-bit key, measured), so
one token is kept and reused until it is within a minute of its 15-minute expiry (the SDK's
lifetime); a cached request then takes 3 us.

Callbacks carry `Authorization: Bearer <JWT>`, HS256 with the account's signature secret and
a `payload_hash` claim (SHA-256 hex of the body). Vonage's one exception, an unsigned
callback after an internal error, is answered 503: Vonage retries after a 5xx, signed.

Sources (read for this module): github.com/Vonage/vonage-python-sdk @b308cb1e
(messages/src/vonage_messages/{messages.py,models/*.py}, messages/tests/data/*.json,
jwt/src/vonage_jwt/{jwt.py,verify_jwt.py}, http_client/src/vonage_http_client/auth.py,
http_client/tests/data/*.json); developer.vonage.com/en/api-errors (generic RFC 7807 codes)
and /en/api-errors/messages (codes 1000-1160); Nexmo/station signed-webhooks.md; the SMS
delivery-receipt words of developer.vonage.com/en/messages/concepts/sms-status-callbacks;
the 30 requests/s per API key of api.support.vonage.com/hc/en-us/articles/203993598. The
summary with the rest of the sources is `shared/research/providers.md` section 1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import uuid
from collections.abc import Mapping
from datetime import UTC
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, Final

import jwt
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import Accepted, OutboundMessage, Rejected, Unavailable
from opendispatch.providers.kinds import (
    AccountConfig,
    CallbackRefused,
    CallbackRequest,
    CallbackStatus,
    HttpAnswer,
    HttpRequest,
    ProviderKind,
    Setting,
    cannot_carry,
)
from opendispatch.timefmt import parse_iso_ms_or

__all__ = ["KIND", "VonageAdapter", "check_settings"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# -- settings ----------------------------------------------------------------------------------

SETTINGS: Final = (
    Setting(key="application_id", description="The Vonage application's id (JWT auth)."),
    Setting(
        key="private_key",
        description="The application's RSA private key, PEM (JWT auth).",
        secret=True,
    ),
    Setting(key="api_key", description="The account's API key (Basic auth)."),
    Setting(key="api_secret", description="The account's API secret (Basic auth).", secret=True),
    Setting(
        key="signature_secret",
        description="The account's signature secret: verifies Vonage's signed callbacks.",
        secret=True,
        required=True,
    ),
)


def check_settings(values: Mapping[str, str]) -> None:
    """Refuse settings with no way to authenticate, no way to verify callbacks, or a bad key."""
    present = {key for key, value in values.items() if value.strip()}
    if "signature_secret" not in present:
        raise ValueError("vonage needs signature_secret (it verifies Vonage's callbacks)")
    if ("application_id" in present) != ("private_key" in present):
        raise ValueError("vonage needs application_id and private_key together")
    if "application_id" not in present and not {"api_key", "api_secret"} <= present:
        raise ValueError("vonage needs application_id and private_key, or api_key and api_secret")
    if "application_id" in present:
        try:
            uuid.UUID(values["application_id"].strip())
        except ValueError:
            raise ValueError("vonage application_id must be a UUID") from None
        _load_private_key(values["private_key"])


def _load_private_key(pem: str, *, check: bool = True) -> rsa.RSAPrivateKey:
    """The RSA key; `check` runs cryptography's consistency checks (65 ms for 2048 bits,
    measured), done once by `check_settings` and skipped for an already registered key."""
    try:
        key = serialization.load_pem_private_key(
            pem.strip().encode(), password=None, unsafe_skip_rsa_key_validation=not check
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        # Never the library's message: it may quote the key.
        raise ValueError("vonage private_key is not an unencrypted RSA private key in PEM")
    return key


# -- the request -------------------------------------------------------------------------------

_SEND_PATH: Final = "/v1/messages"
_VONAGE_CHANNELS: Final = {
    "sms": "sms",
    "mms": "mms",
    "whatsapp": "whatsapp",
    "viber_service_msg": "viber_service",
    "messenger": "messenger",
}
# The content types each Vonage channel takes (the SDK's message models per channel).
_CONTENT_TYPES: Final = {
    "sms": frozenset({"text"}),
    "mms": frozenset({"image", "audio", "video"}),
    "whatsapp": frozenset({"text", "image", "audio", "video", "file", "template"}),
    # Viber video also needs thumb_url, duration and file_size, which Dispatch cannot give.
    "viber_service": frozenset({"text", "image", "file"}),
    "messenger": frozenset({"text", "image", "audio", "video", "file"}),
}
_MEDIA: Final = frozenset({"image", "audio", "video", "file"})
# Where Vonage's media object has a caption. Dispatch documents captions as shown by WhatsApp
# and MMS only, so elsewhere a caption is left out, as Dispatch itself would.
_CAPTIONED: Final = frozenset(
    {("mms", "image"), ("whatsapp", "image"), ("whatsapp", "file"), ("viber_service", "image")}
)
# Dispatch option objects and the Vonage objects they become, with the keys carried over.
_CHANNEL_OPTIONS: Final = {
    "viber_service": ("viber_service_msg", ("category", "ttl")),
    "messenger": ("messenger", ("category", "tag")),
}
_JWT_LIFETIME_S: Final = 15 * 60  # the SDK's default `exp`
_JWT_RENEW_BEFORE_S: Final = 60
_MISSING_PARAMS: Final = 1010  # Vonage's "Missing params", for a message we cannot build


class _Unbuildable(Exception):
    """The message lacks a field the request needs (the API's validation should prevent it)."""


def _address(address: Mapping[str, Any]) -> str:
    value = address.get("number") or address.get("id")
    if not isinstance(value, str) or not value:
        raise _Unbuildable("an address has neither number nor id")
    return value


def _content(channel: str, kind: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """The content fields of the body for one Dispatch content object."""
    if kind == "text":
        text = content.get("text")
        if not isinstance(text, str):
            raise _Unbuildable("text content without text")
        return {"text": text}
    if kind in _MEDIA:
        media = content.get(kind)
        if not isinstance(media, Mapping) or not isinstance(media.get("url"), str):
            raise _Unbuildable(f"{kind} content without {kind}.url")
        carried: dict[str, Any] = {"url": media["url"]}
        if media.get("caption") and (channel, kind) in _CAPTIONED:
            carried["caption"] = media["caption"]
        return {kind: carried}
    template = content.get("template")
    if not isinstance(template, Mapping) or not isinstance(template.get("name"), str):
        raise _Unbuildable("template content without template.name")
    carried = {"name": template["name"]}
    if template.get("parameters") is not None:
        carried["parameters"] = [parameter["default"] for parameter in template["parameters"]]
    return {"template": carried}


def _whatsapp_template_settings(options: Mapping[str, Any] | None) -> dict[str, str]:
    """Vonage takes only the `deterministic` policy (Dispatch's `fallback` is deprecated by
    WhatsApp) and the locale with an underscore; without one, Vonage's default `en_US`."""
    locale = (options or {}).get("locale") or "en_US"
    return {"policy": "deterministic", "locale": locale.replace("-", "_")}


def _message_body(message: OutboundMessage, *, callback_url: str | None) -> dict[str, Any]:
    """The JSON object of `POST /v1/messages` (raises `_Unbuildable`, KeyError, TypeError)."""
    channel = _VONAGE_CHANNELS[message.channel]
    content = message.message["content"]
    kind = content["type"]
    body: dict[str, Any] = {
        "to": _address(message.to),
        "from": _address(message.from_),
        "channel": channel,
        "message_type": kind,
        **_content(channel, kind, content),
    }
    if kind == "template":
        body["whatsapp"] = _whatsapp_template_settings(message.message.get("whatsapp"))
    if channel in _CHANNEL_OPTIONS:
        dispatch_key, keys = _CHANNEL_OPTIONS[channel]
        options = message.message.get(dispatch_key) or {}
        carried = {key: options[key] for key in keys if options.get(key) is not None}
        if carried:
            body[channel] = carried
    body["client_ref"] = message.message_uuid
    if callback_url is not None:
        body["webhook_url"] = callback_url
    body["webhook_version"] = "v1"
    return body


# -- the answer --------------------------------------------------------------------------------

# Messages API codes (developer.vonage.com/en/api-errors/messages) that say nothing about the
# recipient or the message: the account, its credit, its sender or its provisioning. 1030
# (internal error) and 1100 (communication failed) are Vonage's own failures: another provider
# may well succeed. Every other code is the message's or the recipient's, final.
_THROTTLED_CODES: Final = frozenset({1000})
_PROVIDER_SIDE_CODES: Final = frozenset({1030, 1060, 1070, 1080, 1100, 1120, 1140, 1160})
_PROVIDER_SIDE_STATUSES: Final = frozenset({401, 402, 403, 404})
# The generic RFC 7807 types (developer.vonage.com/en/api-errors) about credentials and account.
_PROVIDER_SIDE_TYPES: Final = frozenset(
    {
        "unauthorized",
        "forbidden",
        "low-balance",
        "not-found",
        "unprovisioned",
        "account-suspended",
        "jwt-expired",
        "jwt-revoked",
        "invalid-api-key",
        "invalid-signature",
    }
)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        decoded = _decode(body)
    except msgspec.DecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _problem_type(problem: Mapping[str, Any]) -> str:
    """The part of an RFC 7807 `type` after `#`: "1020", "low-balance", "" when none."""
    kind = problem.get("type")
    return kind.rpartition("#")[2] if isinstance(kind, str) and "#" in kind else ""


def _problem_text(problem: Mapping[str, Any]) -> str:
    parts = (problem.get("title"), problem.get("detail"))
    return ": ".join(part for part in parts if isinstance(part, str) and part)


def _retry_after_ms(headers: Mapping[str, str], now_ms: int) -> int | None:
    """`Retry-After` as seconds or an HTTP date; Vonage documents none, but honour one."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0, int(when.timestamp() * 1000) - now_ms)
    return max(0, int(seconds * 1000)) if math.isfinite(seconds) else None


def _classify_answer(answer: HttpAnswer, *, now_ms: int) -> Accepted | Rejected | Unavailable:
    problem = _json_object(answer.body)
    if 200 <= answer.status < 300:
        # An unreadable 2xx still means sent; its callbacks carry our client_ref.
        message_id = problem.get("message_uuid")
        return Accepted(provider_message_id=message_id if isinstance(message_id, str) else "")
    fragment = _problem_type(problem)
    code = int(fragment) if fragment.isdigit() else answer.status
    text = _problem_text(problem) or f"Vonage answered HTTP {answer.status}"
    if answer.status == 429 or code in _THROTTLED_CODES:
        retry_after_ms = _retry_after_ms(answer.headers, now_ms)
        return Unavailable(reason=text, throttled=True, retry_after_ms=retry_after_ms)
    if answer.status >= 500 or answer.status < 400:
        return Unavailable(reason=f"HTTP {answer.status}: {text}")
    provider_side = (
        answer.status in _PROVIDER_SIDE_STATUSES
        or code in _PROVIDER_SIDE_CODES
        or fragment in _PROVIDER_SIDE_TYPES
    )
    return Rejected(error=MessageError(code=code, reason=text), provider_side=provider_side)


# -- callbacks ---------------------------------------------------------------------------------

_STATUSES: Final[dict[str, MessageStatus | None]] = {
    "submitted": MessageStatus.SUBMITTED,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "rejected": MessageStatus.REJECTED,
    "undeliverable": MessageStatus.UNDELIVERABLE,
    # SMS delivery-receipt words, mapped as Vonage's SMS status-callback guide does.
    "accepted": MessageStatus.SUBMITTED,
    "buffered": None,  # still trying: no Dispatch meaning
    "expired": MessageStatus.REJECTED,
    "failed": MessageStatus.REJECTED,
    "unknown": MessageStatus.REJECTED,
}
# The codes that guide gives the receipts that come without an error object.
_RECEIPT_ERRORS: Final = {
    "expired": MessageError(code=1360, reason="Expired: no delivery within the validity period"),
    "unknown": MessageError(code=1330, reason="Unknown: the carrier did not confirm delivery"),
}
# An error object without a numeric code: recorded as Vonage's "unknown" failure.
_UNCODED_FAILURE: Final = 1330
_FAILED: Final = frozenset({MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE})
_MAX_CLOCK_SKEW_S: Final = 300


def _callback_error(status: str, body: Mapping[str, Any]) -> MessageError | None:
    """v1 `error: {type, title, detail}` (title sometimes the bare code), or v0.1's
    `{code, reason}`; the receipts' codes when there is none."""
    error = body.get("error")
    if not isinstance(error, Mapping):
        return _RECEIPT_ERRORS.get(status)
    candidates = (_problem_type(error), error.get("title"), error.get("code"))
    codes = [code for code in map(_as_code, candidates) if code is not None]
    text = _problem_text(error) or str(error.get("reason") or error.get("detail") or status)
    return MessageError(code=codes[0] if codes else _UNCODED_FAILURE, reason=text)


def _as_code(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _eur_price(usage: object) -> str | None:
    """Vonage's `usage.price` when, and only when, it is stated in euros (never converted)."""
    if not isinstance(usage, Mapping) or usage.get("currency") != "EUR":
        return None
    price = usage.get("price")
    if isinstance(price, bool) or not isinstance(price, str | int | float):
        return None
    try:
        amount = Decimal(str(price))
    except InvalidOperation:
        return None
    return format(amount, "f") if amount.is_finite() else None


def _read_status_callback(request: CallbackRequest) -> list[CallbackStatus]:
    body = _json_object(request.body)
    provider_id, word = body.get("message_uuid"), body.get("status")
    if not isinstance(provider_id, str) or not provider_id:
        raise CallbackRefused("the callback has no message_uuid", status_code=400)
    if word is None and "message_type" in body:
        return []  # an inbound message, not a status
    if not isinstance(word, str):
        raise CallbackRefused("the callback has no status", status_code=400)
    status = _STATUSES.get(word)
    reference = body.get("client_ref")
    return [
        CallbackStatus(
            provider_message_id=provider_id,
            message_uuid=reference if isinstance(reference, str) and reference else None,
            status=status,
            occurred_at_ms=parse_iso_ms_or(body.get("timestamp"), request.received_at_ms),
            error=_callback_error(word, body) if status in _FAILED else None,
            price=_eur_price(body.get("usage")),
            raw_status=word,
        )
    ]


# -- the adapter -------------------------------------------------------------------------------


class VonageAdapter:
    """One Vonage account. Keeps only its current application JWT between calls."""

    def __init__(self, config: AccountConfig) -> None:
        settings = config.settings
        self._url = config.base_url + _SEND_PATH
        self._signature_secret = settings["signature_secret"]
        self._application_id = settings.get("application_id", "").strip()
        private_key = settings.get("private_key", "")
        self._private_key = (
            _load_private_key(private_key, check=False)
            if self._application_id and private_key
            else None
        )
        self._basic = ""
        if self._private_key is None:
            pair = f"{settings.get('api_key', '')}:{settings.get('api_secret', '')}"
            self._basic = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self._token = ""
        self._token_iat_s = 0
        self._token_exp_s = 0

    # -- sending -----------------------------------------------------------------------

    def send_request(
        self, message: OutboundMessage, *, callback_url: str | None, now_ms: int
    ) -> HttpRequest | Rejected:
        channel = _VONAGE_CHANNELS.get(message.channel)
        if channel is None:
            return cannot_carry(f"Vonage does not carry the {message.channel} channel")
        content = message.message.get("content")
        kind = content.get("type") if isinstance(content, Mapping) else None
        if isinstance(kind, str) and kind not in _CONTENT_TYPES[channel]:
            return cannot_carry(f"Vonage {channel} does not carry {kind} content")
        try:
            body = _message_body(message, callback_url=callback_url)
        except (_Unbuildable, KeyError, TypeError) as exc:
            reason = f"Missing params: the message cannot be built ({exc})"
            return Rejected(error=MessageError(code=_MISSING_PARAMS, reason=reason))
        headers = {
            "Authorization": self._authorization(now_ms),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        return HttpRequest(method="POST", url=self._url, headers=headers, body=_encode(body))

    def _authorization(self, now_ms: int) -> str:
        if self._private_key is None:
            return self._basic
        now_s = now_ms // 1000
        if now_s >= self._token_exp_s - _JWT_RENEW_BEFORE_S or now_s < self._token_iat_s:
            self._token_iat_s, self._token_exp_s = now_s, now_s + _JWT_LIFETIME_S
            claims = {
                "application_id": self._application_id,
                "iat": self._token_iat_s,
                "jti": str(uuid.uuid4()),
                "exp": self._token_exp_s,
            }
            self._token = jwt.encode(
                claims, self._private_key, algorithm="RS256", headers={"typ": "JWT"}
            )
        return "Bearer " + self._token

    def read_answer(
        self, message: OutboundMessage, answer: HttpAnswer, *, now_ms: int
    ) -> Accepted | Rejected | Unavailable:
        return _classify_answer(answer, now_ms=now_ms)

    # -- callbacks ---------------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> None:
        authorization = request.headers.get("authorization")
        if authorization is None:
            raise CallbackRefused(
                "unsigned callback: Vonage sends it again, signed, after a 5xx", status_code=503
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise CallbackRefused("the Authorization header is not a Bearer token")
        try:
            claims = jwt.decode(
                token.strip(),
                self._signature_secret,
                algorithms=["HS256"],
                # Times are judged against the request's arrival, not this process's clock.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "require": ["iat", "payload_hash"],
                },
            )
        except jwt.InvalidTokenError:
            raise CallbackRefused("the callback's token does not verify") from None
        claimed = claims["payload_hash"]
        actual = hashlib.sha256(request.body).hexdigest()
        if not isinstance(claimed, str) or not hmac.compare_digest(
            claimed.lower().encode(), actual.encode()
        ):
            raise CallbackRefused("payload_hash does not match the callback's body")
        issued_at = claims["iat"]
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            raise CallbackRefused("the callback's token has no valid iat")
        if abs(request.received_at_ms / 1000 - issued_at) > _MAX_CLOCK_SKEW_S:
            raise CallbackRefused("the callback's token is stale (iat more than 300 s away)")

    def read_callback(self, request: CallbackRequest) -> list[CallbackStatus]:
        return _read_status_callback(request)

    def handshake(self, request: CallbackRequest) -> bytes:
        raise CallbackRefused("Vonage callbacks have no handshake", status_code=405)


KIND: Final = ProviderKind(
    name="vonage",
    default_base_url="https://api.nexmo.com",
    # "30 API requests per second" per API key (api.support.vonage.com article 203993598).
    default_rate_per_s=30.0,
    channels=frozenset(_VONAGE_CHANNELS),
    settings=SETTINGS,
    check_settings=check_settings,
    adapter=VonageAdapter,
    notes=(
        "Authenticates with the application's JWT when application_id and private_key are "
        "set (private_key_file=PATH reads the key), else with api_key and api_secret.",
        "Callbacks go to --public-url per message (webhook_url, v1 shape); they are verified "
        "with signature_secret, and unsigned ones are answered 503 so Vonage resends them "
        "signed.",
        "US long numbers and 10DLC campaigns have lower per-number limits: set rate=N.",
    ),
)
