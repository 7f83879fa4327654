"""Telnyx Messaging v2: SMS and MMS through `POST /v2/messages`, statuses by signed webhooks.

Telnyx carries SMS and MMS only (its WhatsApp and RCS are other APIs), so `whatsapp`,
`viber_service_msg` and `messenger` are `cannot_carry`, as is any content the channel cannot
express: SMS takes `text`, MMS takes an `image` (its caption becomes `text`).

Our reference. Telnyx has no client-reference field, so each message's `webhook_url` is the
account's callback URL plus `?message_uuid=<ours>`, with `use_profile_webhooks: false` so its
statuses come only there. The Ed25519 signature covers the timestamp and the body, not the
URL: a callback replayed to another message's URL verifies. That is caught by the core, which
checks the callback's provider message id (`data.payload.id`, signed) against the one it
stored for that `message_uuid`. Without `--public-url` no `webhook_url` is sent, and the
messaging profile's webhook (if any) gets the statuses without our reference.

Answers. Errors are `{"errors": [{"code": "40310", "title", "detail", "source", "meta"}]}`;
the code is a numeric string, kept as the error's code (the HTTP status when it is missing).
Which codes are the provider's own (credentials, sender and profile set-up, account limits)
is a table below; codes not in it are judged by the HTTP status (401, 402, 403, 404: the
account's; 400, 409, 422: the message's). Throttling is 429 or code 10011 (and 40318, the
account's send queue full); the hint is `Retry-After` (seconds or an HTTP date) when present,
else `x-ratelimit-reset`, documented as "the time in seconds until the rate limit resets" (a
value too large to be a delay, over 10^9, is read as a Unix time instead).

Callbacks. `telnyx-signature-ed25519` is the base64 of an Ed25519 signature over
`f"{telnyx-timestamp}|"` followed by the raw body, checked with the account's public key
(base64 of the 32 raw bytes, from the portal); a timestamp more than 300 s from when the
callback arrived is refused, as the SDK does. Statuses come in `message.sent` and
`message.finalized` events, one recipient each (`payload.to[0].status`); other events
(`message.received`, inbound) are acknowledged and ignored. `delivery_unconfirmed` has no
Dispatch meaning; `expired` (listed by the SDK's `To.status`, and on the error-code page as a
v2 failure status) is undeliverable. Telnyx bills in the account's currency: a price is
returned only when `cost.currency` is EUR.

Default rate: 15 messages/s. Telnyx documents no request limit for `POST /v2/messages` (only
the `x-ratelimit-*` headers); it documents delivery limits per account (SMS 50/s, MMS 15/s)
and per sender (long code 0.1/s per number, toll-free 20/s, short code 1,000/s), and queues
what exceeds them (up to 4 h, then rejects) rather than refusing it. One rate covers both
channels here, so it is the lower account limit: beyond it, sends are accepted and wait in
Telnyx's queue, and the statuses (and failover deadlines) measure the queue. An account
sending from a single long code should set `rate=0.1`.

Sources: team-telnyx/telnyx-python @6d68c8ca, src/telnyx/lib/webhook_verification.py (signed
bytes, headers, 300 s tolerance), src/telnyx/types/{message_send_params.py,
outbound_message_payload.py, outbound_message.py, delivery_update_webhook_event.py,
shared/messaging_error.py} (request, answer, event and error shapes, status words);
developers.telnyx.com: /docs/messaging/messages/rate-limiting (limits above),
/development/api-fundamentals/reliability/rate-limiting (429, 10011, x-ratelimit-reset),
/development/api-fundamentals/api-errors (10xxx), /docs/messaging/messages/error-codes
(40xxx delivery errors), /api/errors/40310 (400), /api/errors/40300 (409), /api/errors/10039
(403); team-telnyx/telnyx-skills @070acafc,
skills/telnyx-twilio-migration/references/error-code-mapping.md (40305, 40309, 40321);
research/providers.md section 4a.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import Accepted, OutboundMessage, Rejected, Unavailable
from opendispatch.providers.kinds import (
    AccountAdapter,
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

__all__ = ["KIND", "TelnyxAdapter"]

SEND_PATH: Final = "/v2/messages"
REFERENCE_PARAMETER: Final = "message_uuid"
SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TIMESTAMP_HEADER: Final = "telnyx-timestamp"
TIMESTAMP_TOLERANCE_MS: Final = 300_000

# -- settings ----------------------------------------------------------------------------------

SETTINGS: Final = (
    Setting(
        key="api_key",
        description="An API key from the Telnyx portal (Mission Control), sent as a Bearer token.",
        secret=True,
        required=True,
    ),
    Setting(
        key="public_key",
        description="The account's Ed25519 public key from the Telnyx portal, in base64 as "
        "shown there: it checks the signature of every webhook.",
        required=True,
    ),
    Setting(
        key="messaging_profile_id",
        description="The messaging profile to send with; needed for a number pool or an "
        "alphanumeric sender ID, else the profile of the `from` number applies.",
    ),
)


def _public_key(encoded: str) -> Ed25519PublicKey:
    """The portal's key: base64 of the 32 raw bytes (not PEM, not DER)."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "telnyx public_key must be base64 (as the Telnyx portal shows it)"
        ) from None
    if len(raw) != 32:
        raise ValueError(
            f"telnyx public_key must be the base64 of a 32-byte Ed25519 key, not {len(raw)} bytes"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def check_settings(values: Mapping[str, str]) -> None:
    missing = [key for key in ("api_key", "public_key") if not values.get(key, "").strip()]
    if missing:
        raise ValueError(f"telnyx needs {' and '.join(missing)}")
    if any(character.isspace() for character in values["api_key"]):
        raise ValueError("telnyx api_key must not contain spaces (it is sent as a Bearer token)")
    _public_key(values["public_key"].strip())
    if "messaging_profile_id" in values and not values["messaging_profile_id"].strip():
        raise ValueError("telnyx messaging_profile_id, when given, must not be empty")


# -- the request -------------------------------------------------------------------------------


def _plus_e164(address: Mapping[str, Any]) -> str | None:
    """Dispatch numbers are E.164 digits without `+`; Telnyx wants `+` and the digits."""
    number = address.get("number")
    if isinstance(number, str) and number.isdigit():
        return f"+{number}"
    return None


def _content_fields(channel: str, content: Mapping[str, Any]) -> dict[str, Any] | str:
    """`text`/`media_urls`/`type` for this content, or why Telnyx cannot carry it."""
    kind = content.get("type")
    if channel == "sms":
        text = content.get("text")
        if kind != "text" or not isinstance(text, str):
            return f"telnyx sends only text on sms, not {kind}"
        return {"text": text, "type": "SMS"}
    image = content.get("image")
    if kind != "image" or not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
        return f"telnyx sends only an image on mms, not {kind}"
    fields: dict[str, Any] = {"media_urls": [image["url"]], "type": "MMS"}
    caption = image.get("caption")
    if isinstance(caption, str) and caption:
        fields = {"text": caption, **fields}
    return fields


def _webhook_url(callback_url: str, message_uuid: str) -> str:
    separator = "&" if "?" in callback_url else "?"
    return f"{callback_url}{separator}{urlencode({REFERENCE_PARAMETER: message_uuid})}"


# -- the answer --------------------------------------------------------------------------------

# Refusals that are the account's own, so another provider may succeed: credentials, the
# sender or messaging profile set-up, account-level limits. 4xx codes absent from both tables
# are judged by their HTTP status (`_PROVIDER_SIDE_STATUSES`).
PROVIDER_SIDE_CODES: Final[Mapping[int, str]] = {
    10005: "resource not found (a messaging profile or endpoint that does not exist)",
    10006: "invalid ID (a messaging profile the key may not use)",
    10009: "authentication failed",
    10010: "authorization failed",
    10038: "feature not permitted for this account",  # as the brief named it; not in the docs read
    10039: "feature limited at this account level (403)",
    40003: "sending number permanently blocked as spam",
    40013: "invalid source number (not active or not messaging-enabled)",
    40305: "invalid 'from' address (not on the messaging profile)",
    40309: "destination region not allowed by the messaging profile",
    40321: "no usable numbers on the messaging profile",
}
# Refusals for this recipient or this message: final, another provider would fare no better.
RECIPIENT_SIDE_CODES: Final[Mapping[int, str]] = {
    10002: "invalid phone number",
    10004: "missing required parameter",
    10015: "bad request",
    10016: "phone number must be in +E.164 format",
    40001: "not routable (landline or non-routable number)",
    40008: "undeliverable",
    40009: "invalid message body",
    40012: "invalid destination number",
    40300: "blocked: the recipient sent STOP (409)",
    40310: "invalid 'to' address (400)",
}
THROTTLING_CODES: Final = frozenset({10011, 40318})  # too many requests; send queue full
_PROVIDER_SIDE_STATUSES: Final = frozenset({401, 402, 403, 404})
_EPOCH_THRESHOLD_S: Final = 1_000_000_000  # a "reset" above this is a Unix time, not a delay


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _numeric_code(value: Any) -> int | None:
    """Telnyx codes are numeric strings ("10011"); anything else has no number."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return int(text) if text.isascii() and text.isdigit() else None


def _error_text(error: Mapping[str, Any]) -> str:
    parts = (error.get("title"), error.get("detail"))
    return ": ".join(part for part in parts if isinstance(part, str) and part)


def _first_error(body: bytes) -> tuple[int | None, str]:
    """The numeric code and text of `errors[0]`, as far as they can be read."""
    document = _json_object(body) or {}
    errors = document.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return None, ""
    return _numeric_code(first.get("code")), _error_text(first)


def _eur_price(cost: Any) -> str | None:
    """`cost.amount` when Telnyx states it in EUR; never converted."""
    if not isinstance(cost, dict) or cost.get("currency") != "EUR":
        return None
    amount = cost.get("amount")
    try:
        value = Decimal(amount) if isinstance(amount, str) else None
    except InvalidOperation:
        return None
    return str(value) if value is not None and value.is_finite() else None


def _seconds_ms(value: str) -> int | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return int(seconds * 1000) if 0 <= seconds < float("inf") else None


def retry_after_ms(headers: Mapping[str, str], now_ms: int) -> int | None:
    """How long Telnyx asked us to wait: `Retry-After`, else `x-ratelimit-reset`."""
    retry_after = headers.get("retry-after", "").strip()
    if retry_after:
        delay = _seconds_ms(retry_after)
        if delay is not None:
            return delay
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0, int(when.timestamp() * 1000) - now_ms)
    reset = _seconds_ms(headers.get("x-ratelimit-reset", "").strip())
    if reset is None:
        return None
    if reset > _EPOCH_THRESHOLD_S * 1000:
        return max(0, reset - now_ms)
    return reset


def classify_answer(answer: HttpAnswer, *, now_ms: int) -> Accepted | Rejected | Unavailable:
    if 200 <= answer.status < 300:
        data = (_json_object(answer.body) or {}).get("data")
        data = data if isinstance(data, dict) else {}
        message_id = data.get("id")
        # A 2xx means Telnyx took the message; without its id we still must not send again.
        return Accepted(
            provider_message_id=message_id if isinstance(message_id, str) else "",
            price=_eur_price(data.get("cost")),
        )
    code, text = _first_error(answer.body)
    status_text = f"telnyx answered HTTP {answer.status}"
    reason = text or status_text
    if answer.status == 429 or code in THROTTLING_CODES:
        return Unavailable(
            reason=reason, throttled=True, retry_after_ms=retry_after_ms(answer.headers, now_ms)
        )
    if not 400 <= answer.status < 500:
        return Unavailable(reason=f"{status_text}: {text}" if text else status_text)
    if code in PROVIDER_SIDE_CODES:
        provider_side = True
    elif code in RECIPIENT_SIDE_CODES:
        provider_side = False
    else:
        provider_side = answer.status in _PROVIDER_SIDE_STATUSES
    return Rejected(
        error=MessageError(code=code if code is not None else answer.status, reason=reason),
        provider_side=provider_side,
    )


# -- callbacks ---------------------------------------------------------------------------------

STATUSES: Final[Mapping[str, MessageStatus | None]] = {
    "queued": MessageStatus.SUBMITTED,
    "sending": MessageStatus.SUBMITTED,
    "sent": MessageStatus.SUBMITTED,
    "delivered": MessageStatus.DELIVERED,
    "sending_failed": MessageStatus.REJECTED,
    "delivery_failed": MessageStatus.UNDELIVERABLE,
    "expired": MessageStatus.UNDELIVERABLE,
    "delivery_unconfirmed": None,
}
STATUS_EVENTS: Final = frozenset({"message.sent", "message.finalized"})


def verify_signature(public_key: Ed25519PublicKey, request: CallbackRequest) -> None:
    signature_b64 = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature_b64 or not timestamp:
        raise CallbackRefused("telnyx callback is not signed")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise CallbackRefused("telnyx callback timestamp is not a Unix time")
    if abs(request.received_at_ms - int(timestamp) * 1000) > TIMESTAMP_TOLERANCE_MS:
        raise CallbackRefused("telnyx callback timestamp is more than 300 s away")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRefused("telnyx callback signature is not base64") from None
    if len(signature) != 64:
        raise CallbackRefused("telnyx callback signature is not 64 bytes")
    try:
        public_key.verify(signature, f"{timestamp}|".encode() + request.body)
    except InvalidSignature:
        raise CallbackRefused("telnyx callback signature does not match") from None


def _callback_error(errors: Any) -> MessageError | None:
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return None
    code = _numeric_code(first.get("code"))
    # Telnyx's codes are all numeric; a code that is not keeps its text, with code 0.
    return MessageError(
        code=code if code is not None else 0,
        reason=_error_text(first) or f"telnyx error {first.get('code')}",
    )


def read_statuses(request: CallbackRequest) -> list[CallbackStatus]:
    document = _json_object(request.body)
    data = document.get("data") if document is not None else None
    if not isinstance(data, dict):
        raise CallbackRefused("telnyx callback has no data object", status_code=400)
    if data.get("event_type") not in STATUS_EVENTS:
        return []
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise CallbackRefused("telnyx callback has no payload object", status_code=400)
    message_id = payload.get("id")
    recipients = payload.get("to")
    first = recipients[0] if isinstance(recipients, list) and recipients else None
    raw_status = first.get("status") if isinstance(first, dict) else None
    if not isinstance(message_id, str) or not message_id or not isinstance(raw_status, str):
        raise CallbackRefused("telnyx callback lacks payload.id or to[0].status", status_code=400)
    references = [value for name, value in request.query if name == REFERENCE_PARAMETER]
    return [
        CallbackStatus(
            provider_message_id=message_id,
            message_uuid=references[0] if references else None,
            status=STATUSES.get(raw_status),
            occurred_at_ms=parse_iso_ms_or(data.get("occurred_at"), request.received_at_ms),
            error=_callback_error(payload.get("errors")),
            price=_eur_price(payload.get("cost")),
            raw_status=raw_status,
        )
    ]


# -- the adapter -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelnyxAdapter:
    send_url: str
    api_key: str
    public_key: Ed25519PublicKey
    messaging_profile_id: str | None

    def send_request(
        self, message: OutboundMessage, *, callback_url: str | None, now_ms: int
    ) -> HttpRequest | Rejected:
        if message.channel not in ("sms", "mms"):
            return cannot_carry(f"telnyx carries sms and mms, not {message.channel}")
        sender, recipient = _plus_e164(message.from_), _plus_e164(message.to)
        if sender is None or recipient is None:
            return cannot_carry("telnyx needs from.number and to.number")
        content = message.message.get("content")
        fields = _content_fields(message.channel, content if isinstance(content, dict) else {})
        if isinstance(fields, str):
            return cannot_carry(fields)
        body: dict[str, Any] = {"from": sender, "to": recipient, **fields}
        if self.messaging_profile_id is not None:
            body["messaging_profile_id"] = self.messaging_profile_id
        if callback_url is not None:
            body["webhook_url"] = _webhook_url(callback_url, message.message_uuid)
            body["use_profile_webhooks"] = False
        return HttpRequest(
            method="POST",
            url=self.send_url,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        )

    def read_answer(
        self, message: OutboundMessage, answer: HttpAnswer, *, now_ms: int
    ) -> Accepted | Rejected | Unavailable:
        return classify_answer(answer, now_ms=now_ms)

    def verify_callback(self, request: CallbackRequest) -> None:
        verify_signature(self.public_key, request)

    def read_callback(self, request: CallbackRequest) -> list[CallbackStatus]:
        return read_statuses(request)

    def handshake(self, request: CallbackRequest) -> bytes:
        raise CallbackRefused("telnyx callbacks have no handshake", status_code=405)


def build_adapter(config: AccountConfig) -> AccountAdapter:
    profile = config.settings.get("messaging_profile_id", "").strip()
    return TelnyxAdapter(
        send_url=config.base_url + SEND_PATH,
        api_key=config.settings["api_key"],
        public_key=_public_key(config.settings["public_key"].strip()),
        messaging_profile_id=profile or None,
    )


KIND: Final = ProviderKind(
    name="telnyx",
    default_base_url="https://api.telnyx.com",
    default_rate_per_s=15.0,
    channels=frozenset({"sms", "mms"}),
    settings=SETTINGS,
    check_settings=check_settings,
    adapter=build_adapter,
    notes=(
        "Statuses need --public-url: each message names its own webhook_url (with our "
        "message_uuid) and Telnyx signs it with Ed25519 (set public_key).",
        "The default rate, 15/s, is Telnyx's account MMS limit (SMS: 50/s); Telnyx queues "
        "what exceeds a sender's limit (a long code: 0.1/s per number): set rate to match.",
        "Prices are kept only when Telnyx states the cost in EUR.",
    ),
)
