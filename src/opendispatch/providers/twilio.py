"""Twilio Programmable Messaging (REST API 2010-04-01): SMS, MMS and WhatsApp.

Sources: the OpenAPI `twilio_api_v2010.yaml` (twilio/twilio-oai @d50069b4, copied to
`shared/spec/providers/`), the SDK twilio/twilio-python @306691e7 (`request_validator.py`
and its tests, `base/version.py`, `base/client_base.py`), Twilio's error pages
(twilio.com/docs/api/errors/<code>) and messaging guides; `research/providers.md` section 2.

Request. `POST /2010-04-01/Accounts/{account_sid}/Messages.json`, form-encoded, Basic auth
with the API key when one is set (Twilio's advice: revocable), else the auth token. `To` and
`From` are `+<digits>`, prefixed `whatsapp:` on WhatsApp; `MessagingServiceSid` replaces `From`
when the account has one (Twilio then picks the sender from the service's pool). Media go as
`MediaUrl` (MMS and WhatsApp), their caption as `Body`. A WhatsApp template cannot be sent by
name: Twilio wants the `ContentSid` of a template registered in its Content API, so
templates are refused as `cannot_carry` and the route's next provider takes them. No
idempotency key exists on this endpoint, so a retry after a lost answer could send twice (the
runtime never retries an `Unknown`).

Our reference. Status callbacks carry no client reference, so `StatusCallback` is the
account's callback URL plus `message_uuid=<uuid>` in its query. The signature covers the URL
with its query, so the reference cannot be altered. (Twilio forbids underscores in the
callback's *hostname* only, error 21609; a query key may have them.)

Answers. 201 with the message resource: `Accepted(sid)`; a price only when `price_unit` is
EUR (Twilio writes charges negative: "-0.0075"; we store the cost, "0.0075"). Errors are the
legacy JSON `{code, message, more_info, status}` (the SDK also reads RFC 9457 `{type, title,
status, code, detail}`, and so do we). 429 or code 20429 (API concurrency, "safe to retry
after backing off") is throttling; Twilio documents no `Retry-After`, but one is honoured if
present. 5xx is `Unavailable`. Other 4xx: `Rejected`, provider-side by this table, which
follows each code's page on twilio.com/docs/api/errors:

    provider-side (another provider or account may succeed)
    10001, 20005        account not active (suspended, out of funds)
    20003               authentication failed (also: subaccount credentials on another account)
    20403, 20404        permission denied; the account path (or resource) not found
    21408               destination disabled in the account's Geo Permissions: a setting of
                        this account, not a property of the recipient
    21601, 21606, 21659, 21660, 21661, 21212
                        `From` not a message-capable Twilio number of this account, not a
                        Twilio number, not SMS-capable, or malformed (sender configuration)
    21607, 21608        trial account: only its trial number, only verified recipients
    21609               our StatusCallback URL refused (our configuration, not the message)
    21611, 30001        the sender's queue is full (more than its validity period of traffic)
    21701, 21705, 21711 the messaging service is unknown, invalid, or not the sender's
    63007               no WhatsApp sender (Channel) for `From` in this account
    63017, 63038        account rate or daily limit exceeded
    recipient- or message-side (final): everything else, notably
    21211, 21614, 21635 `To` invalid, not mobile, a landline
    21610               the recipient opted out (STOP); sending elsewhere would ignore it
    21612, 63003        `To` unreachable on this channel
    21602, 21617, 21619, 21620, 21910
                        body or media missing, too long, invalid; To/From channel mismatch
    Whatever their code, 401, 403 and 404 are provider-side (credentials, permissions, the
    account's path); a 4xx without a readable code takes its HTTP status as its code.

Callbacks. A form-encoded POST (`MessageSid`, `MessageStatus`, `ErrorCode`, `AccountSid`,
`From`, `To`, and fields Twilio adds without notice), never for the initial status, in no
order, at least once. `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, url + each param
name, sorted, followed by each of its values, sorted, duplicates dropped)), checked against the
URL as received and with its port stripped or the default port added (the SDK's two variants:
"sig generation on back end is inconsistent"). A JSON body instead carries `bodySHA256` (hex
SHA-256 of the body) in the query, and the HMAC covers the URL alone. Only the auth token
signs: an account set up with an API key alone cannot verify, so refuses, every callback.
Callbacks carry no timestamp: a status happened when it arrived. Their error is a bare code
(no text), so its reason reads "Twilio error 30003".

Rate. Twilio accepts API requests faster than senders send: each sender has its own rate
(1 segment/s for a US long code, 10 messages/s by default for a WhatsApp sender, up to 50 on
request, over 100 for short codes) and Twilio queues the excess for up to the validity
period (10 hours; 4 for WhatsApp), failing what overflows (21611, 30001). The API itself
limits concurrency, not rate (20429), and an account to 2000 messages/s (63017). The default
of 10/s is the WhatsApp sender's default: a burst then queues for seconds, not hours, on a
single sender; an account with one US long code should set `rate=1`.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

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

__all__ = ["KIND", "TwilioAdapter", "check_settings"]

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_REFERENCE_PARAMETER: Final = "message_uuid"
_MEDIA_CONTENT: Final = ("image", "audio", "video", "file")
_MEDIA_CHANNELS: Final = frozenset({"mms", "whatsapp"})
_THROTTLING_CODE: Final = 20429

_PROVIDER_SIDE_CODES: Final = frozenset(
    {
        10001, 20003, 20005, 20403, 20404, 21212, 21408, 21601, 21606, 21607, 21608, 21609,
        21611, 21659, 21660, 21661, 21701, 21705, 21711, 30001, 63007, 63017, 63038,
    }
)  # fmt: skip
_PROVIDER_SIDE_STATUSES: Final = frozenset({401, 403, 404})

_STATUSES: Final[Mapping[str, MessageStatus | None]] = {
    "accepted": MessageStatus.SUBMITTED,  # a messaging service took it
    "scheduled": MessageStatus.SUBMITTED,
    "queued": MessageStatus.SUBMITTED,
    "sending": MessageStatus.SUBMITTED,
    "sent": MessageStatus.SUBMITTED,  # handed to the carrier or WhatsApp
    "delivered": MessageStatus.DELIVERED,
    "partially_delivered": MessageStatus.DELIVERED,  # some segments of a long message
    "read": MessageStatus.READ,  # WhatsApp only
    "undelivered": MessageStatus.UNDELIVERABLE,  # the carrier or WhatsApp could not deliver
    "failed": MessageStatus.REJECTED,  # never sent (queue overflow, account, content)
    "canceled": MessageStatus.REJECTED,  # a scheduled message canceled before sending
    "receiving": None,  # inbound messages: no Dispatch meaning
    "received": None,
}
_FAILURES: Final = frozenset({MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE})


# -- settings ---------------------------------------------------------------------------------


def check_settings(values: Mapping[str, str]) -> None:
    """Refuse settings that cannot authenticate, or SIDs Twilio would refuse."""
    account_sid = values.get("account_sid", "")
    if not account_sid:
        raise ValueError("twilio needs account_sid")
    if _ACCOUNT_SID.fullmatch(account_sid) is None:
        raise ValueError("twilio account_sid must be AC followed by 32 hexadecimal digits")
    has_key_sid = bool(values.get("api_key_sid"))
    has_key_secret = bool(values.get("api_key_secret"))
    if has_key_sid != has_key_secret:
        raise ValueError("twilio needs api_key_sid and api_key_secret together")
    if not values.get("auth_token") and not has_key_sid:
        raise ValueError("twilio needs auth_token, or api_key_sid and api_key_secret")
    if has_key_sid and _API_KEY_SID.fullmatch(values["api_key_sid"]) is None:
        raise ValueError("twilio api_key_sid must be SK followed by 32 hexadecimal digits")
    service = values.get("messaging_service_sid", "")
    if service and _MESSAGING_SERVICE_SID.fullmatch(service) is None:
        raise ValueError(
            "twilio messaging_service_sid must be MG followed by 32 hexadecimal digits"
        )


class TwilioAdapter:
    """One Twilio account's wire contract (pure: no I/O, no clock)."""

    __slots__ = ("_auth_token", "_authorization", "_messages_url", "_messaging_service_sid")

    def __init__(self, config: AccountConfig) -> None:
        settings = config.settings
        account_sid = settings["account_sid"]
        if settings.get("api_key_sid") and settings.get("api_key_secret"):
            user, password = settings["api_key_sid"], settings["api_key_secret"]
        else:
            user, password = account_sid, settings.get("auth_token", "")
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._authorization = f"Basic {credentials}"
        self._messages_url = f"{config.base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._messaging_service_sid = settings.get("messaging_service_sid") or None
        token = settings.get("auth_token")
        self._auth_token = token.encode() if token else None

    def __repr__(self) -> str:  # the credentials stay out of logs and tracebacks
        return f"TwilioAdapter({self._messages_url!r})"

    # -- the request --------------------------------------------------------------------------

    def send_request(
        self, message: OutboundMessage, *, callback_url: str | None, now_ms: int
    ) -> HttpRequest | Rejected:
        channel = message.channel
        if channel not in KIND.channels:
            return cannot_carry(f"twilio does not carry {channel}")
        to_number, from_number = message.to.get("number"), message.from_.get("number")
        if not to_number or (not from_number and self._messaging_service_sid is None):
            return cannot_carry(f"twilio needs phone numbers to send on {channel}")
        content = _content_fields(channel, message.message.get("content") or {})
        if isinstance(content, Rejected):
            return content
        fields = [("To", _address(channel, to_number))]
        if self._messaging_service_sid is not None:
            fields.append(("MessagingServiceSid", self._messaging_service_sid))
        else:
            fields.append(("From", _address(channel, str(from_number))))
        fields.extend(content)
        if callback_url is not None:
            fields.append(("StatusCallback", _with_reference(callback_url, message)))
        return HttpRequest(
            method="POST",
            url=self._messages_url,
            headers={
                "Authorization": self._authorization,
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            body=urlencode(fields).encode(),
        )

    # -- the answer ---------------------------------------------------------------------------

    def read_answer(
        self, message: OutboundMessage, answer: HttpAnswer, *, now_ms: int
    ) -> Accepted | Rejected | Unavailable:
        body = _json_object(answer.body)
        status = answer.status
        if 200 <= status < 300:
            # Without a sid the message still exists; its callbacks carry our reference.
            sid = body.get("sid")
            return Accepted(
                provider_message_id=sid if isinstance(sid, str) else "",
                price=_eur_price(body),
            )
        code = body.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else status
        reason = _error_text(body) or f"HTTP {status} from Twilio"
        if status == 429 or code == _THROTTLING_CODE:
            retry_after_ms = _retry_after_ms(answer.headers.get("retry-after"), now_ms)
            return Unavailable(reason=reason, throttled=True, retry_after_ms=retry_after_ms)
        if status >= 500:
            return Unavailable(reason=reason)
        if not 400 <= status < 500:  # a redirect or the like: nothing was created here
            return Rejected(
                error=MessageError(code=status, reason=f"unexpected HTTP {status} from Twilio"),
                provider_side=True,
            )
        provider_side = code in _PROVIDER_SIDE_CODES or status in _PROVIDER_SIDE_STATUSES
        return Rejected(error=MessageError(code=code, reason=reason), provider_side=provider_side)

    # -- callbacks ----------------------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> None:
        if self._auth_token is None:
            raise CallbackRefused(
                "twilio callbacks are signed with the auth token, and this account has no "
                "auth_token: set it to accept callbacks"
            )
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            raise CallbackRefused("unsigned Twilio callback (no X-Twilio-Signature)")
        body_hash = _first(request.query, "bodySHA256")
        params: Sequence[tuple[str, str]] = ()
        if body_hash is not None:
            actual = hashlib.sha256(request.body).hexdigest()
            if not hmac.compare_digest(actual.encode(), body_hash.encode()):
                raise CallbackRefused("Twilio callback body does not match its bodySHA256")
        else:
            params = _form(request.body)
        presented = signature.encode()
        matched = False
        for url in _url_variants(request.url):
            expected = _signature(self._auth_token, url, params).encode()
            matched |= hmac.compare_digest(expected, presented)
        if not matched:
            raise CallbackRefused("X-Twilio-Signature does not match")

    def read_callback(self, request: CallbackRequest) -> list[CallbackStatus]:
        fields = _callback_fields(request)
        sid = fields.get("MessageSid") or fields.get("SmsSid")
        raw_status = fields.get("MessageStatus") or fields.get("SmsStatus")
        if not sid or not raw_status:
            raise CallbackRefused(
                "Twilio callback without MessageSid or MessageStatus", status_code=400
            )
        status = _STATUSES.get(raw_status)
        error = None
        error_code = fields.get("ErrorCode")
        if status in _FAILURES and error_code:
            if not error_code.isdigit():
                raise CallbackRefused("Twilio callback ErrorCode is not a number", status_code=400)
            error = MessageError(code=int(error_code), reason=f"Twilio error {error_code}")
        return [
            CallbackStatus(
                provider_message_id=sid,
                message_uuid=_first(request.query, _REFERENCE_PARAMETER),
                status=status,
                occurred_at_ms=request.received_at_ms,  # Twilio sends no timestamp
                error=error,
                raw_status=raw_status,
            )
        ]

    def handshake(self, request: CallbackRequest) -> bytes:
        raise CallbackRefused("twilio callbacks have no handshake", status_code=405)


# -- request helpers --------------------------------------------------------------------------


def _address(channel: str, number: str) -> str:
    return f"whatsapp:+{number}" if channel == "whatsapp" else f"+{number}"


def _content_fields(channel: str, content: Mapping[str, Any]) -> list[tuple[str, str]] | Rejected:
    """`Body` and `MediaUrl` for one Dispatch content, or why Twilio cannot carry it."""
    kind = content.get("type")
    if kind == "text":
        return [("Body", str(content.get("text") or ""))]
    if kind in _MEDIA_CONTENT:
        if channel not in _MEDIA_CHANNELS:
            return cannot_carry(f"twilio sends {kind} only on mms and whatsapp, not {channel}")
        media = content.get(kind) or {}
        fields = [("Body", str(media["caption"]))] if media.get("caption") else []
        return [*fields, ("MediaUrl", str(media.get("url") or ""))]
    if kind == "template":
        return cannot_carry(
            "twilio sends WhatsApp templates by ContentSid only, not by template name"
        )
    return cannot_carry(f"twilio cannot send {kind} content")


def _with_reference(callback_url: str, message: OutboundMessage) -> str:
    separator = "&" if "?" in callback_url else "?"
    return f"{callback_url}{separator}{urlencode({_REFERENCE_PARAMETER: message.message_uuid})}"


# -- answer helpers ---------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _error_text(body: Mapping[str, Any]) -> str | None:
    """Legacy `message`; RFC 9457 `detail`, else `title`."""
    for key in ("message", "detail", "title"):
        text = body.get(key)
        if isinstance(text, str) and text:
            return text
    return None


def _eur_price(body: Mapping[str, Any]) -> str | None:
    unit, price = body.get("price_unit"), body.get("price")
    if not isinstance(unit, str) or unit.upper() != "EUR" or not isinstance(price, str):
        return None
    try:
        amount = Decimal(price)
    except InvalidOperation:
        return None
    return str(abs(amount)) if amount.is_finite() else None


def _retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """`Retry-After` as delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0, int(moment.timestamp() * 1000) - now_ms)


# -- callback helpers -------------------------------------------------------------------------


def _first(pairs: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in pairs if key == name), None)


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise CallbackRefused("Twilio callback body is not a form", status_code=400) from None


def _callback_fields(request: CallbackRequest) -> dict[str, str]:
    """The callback's fields, first value of each: from the form, or the JSON object of the
    bodySHA256 variant."""
    if _first(request.query, "bodySHA256") is None:
        return dict(reversed(_form(request.body)))
    decoded = _json_object(request.body)
    if not decoded:
        raise CallbackRefused("Twilio callback body is not a JSON object", status_code=400)
    return {key: str(value) for key, value in decoded.items() if value is not None}


def _signature(auth_token: bytes, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature (twilio-python `RequestValidator.compute_signature`)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    digest = hmac.new(auth_token, signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URL as received, without its port, and with the scheme's default port added: the
    forms the SDK accepts."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return [url]
    prefix = f"{parts.scheme}://{parts.netloc}"
    if not parts.netloc or not url.startswith(prefix):
        return [url]
    rest = url[len(prefix) :]
    if port is not None:
        without_port = parts.netloc.rsplit(":", 1)[0]
        return [url, f"{parts.scheme}://{without_port}{rest}"]
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    if default_port is None:
        return [url]
    return [url, f"{parts.scheme}://{parts.netloc}:{default_port}{rest}"]


KIND: Final = ProviderKind(
    name="twilio",
    default_base_url="https://api.twilio.com",
    default_rate_per_s=10.0,
    channels=frozenset({"sms", "mms", "whatsapp"}),
    settings=(
        Setting(
            key="account_sid",
            description="Account SID (AC followed by 32 hex digits): the account messages "
            "are sent from, in every request's path",
            required=True,
        ),
        Setting(
            key="auth_token",
            description="Auth token: authenticates requests when no API key is set, and "
            "is the only key that verifies Twilio's callbacks",
            secret=True,
        ),
        Setting(
            key="api_key_sid",
            description="API key SID (SK followed by 32 hex digits), used with "
            "api_key_secret to authenticate requests instead of the auth token",
        ),
        Setting(key="api_key_secret", description="API key secret", secret=True),
        Setting(
            key="messaging_service_sid",
            description="Messaging service SID (MG followed by 32 hex digits): send from "
            "its sender pool instead of the message's `from` number",
        ),
    ),
    check_settings=check_settings,
    adapter=TwilioAdapter,
    notes=(
        "Callbacks are verified with auth_token only; without it every callback is refused.",
        "WhatsApp templates need a Twilio ContentSid and are passed to the next provider.",
    ),
)
