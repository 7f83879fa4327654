"""Meta's WhatsApp Business Cloud API, direct: one business phone number per account.

Sources, read for this module:
- Meta's OpenAPI `business-messaging-api_v23.0.yaml` (facebook/openapi @ecba623b, copied in
  `shared/spec/providers/`): `POST /{Version}/{Phone-Number-ID}/messages`, the `Message`
  schemas (text `{body, preview_url}`, media `{link}`, template `{name, language: {policy,
  code}, components}`), the 200 answer (`messages[0].id`), the Graph error shape and its
  examples (401 code 190, 429 code 4), the `x-business-use-case-usage` header.
- Meta's error code reference (developers.facebook.com/documentation/business-messaging/
  whatsapp/support/error-codes): "build your app's error handling logic around `code` values
  and `details`", not HTTP statuses or subcodes. The tables below follow it.
- The status webhook reference (…/whatsapp/webhooks/reference/messages/status) and
  WhatsApp/WhatsApp-Nodejs-SDK @58ca3d5f `src/api/webhooks.ts`, `src/utils.ts`,
  `src/types/webhooks.ts`: the envelope, `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app
  secret, raw body)>`, and the GET handshake (`hub.mode`, `hub.verify_token`,
  `hub.challenge`). The SDK compares with `==`; we use `hmac.compare_digest`.
- Throughput (…/whatsapp/throughput): 80 messages/s per business number by default.

What differs from the other kinds:
- The callback URL is configured once per Meta app (App Dashboard, Webhooks, field
  `messages`), never per message, so `callback_url` is not used by the request. Our reference
  travels as `biz_opaque_callback_data` (max 512 characters), which Meta echoes in every
  status of the message.
- The webhook of one app receives the statuses of every number it serves: only those whose
  `metadata.phone_number_id` is this account's are read.
- No timestamp in the signature, so there is no staleness rule: Meta redelivers for up to
  7 days, at least once, and the inbox dedupes.
- Meta states no price per message in the answer or the status (`pricing` carries a category,
  not an amount), so no price is reported.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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
    matches_hashed,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "KIND",
    "PROVIDER_SIDE_CODES",
    "PROVIDER_SIDE_SUBCODES",
    "SETTINGS",
    "STATUSES",
    "THROTTLING_CODES",
    "TRANSIENT_CODES",
    "WhatsAppCloudAccount",
    "check_settings",
]

DEFAULT_API_VERSION: Final = "v23.0"
_PHONE_NUMBER_ID = re.compile(r"[0-9]{1,32}")
_API_VERSION = re.compile(r"v[0-9]{1,3}\.[0-9]{1,2}")
_NO_SPACE = re.compile(r"[^\s]+")  # tokens go into a header: no whitespace, no line breaks


# -- settings ----------------------------------------------------------------------------------

SETTINGS: Final = (
    Setting(
        key="phone_number_id",
        description="The business phone number's id (digits) from WhatsApp Manager; "
        "messages are sent from this number.",
        required=True,
    ),
    Setting(
        key="access_token",
        description="A system user access token with whatsapp_business_messaging.",
        secret=True,
        required=True,
    ),
    Setting(
        key="app_secret",
        description="The Meta app's App Secret: verifies X-Hub-Signature-256 on callbacks.",
        secret=True,
        required=True,
    ),
    Setting(
        key="verify_token",
        description="The Verify Token entered with the callback URL in the App Dashboard; "
        "Meta's GET handshake must present it.",
        required=True,
        hashed=True,
    ),
    Setting(
        key="api_version",
        description=f"The Graph API version, like {DEFAULT_API_VERSION} (the default).",
    ),
)


def check_settings(values: Mapping[str, str]) -> None:
    missing = [s.key for s in SETTINGS if s.required and not values.get(s.key)]
    if missing:
        raise ValueError("whatsapp-cloud needs " + ", ".join(missing))
    if not _PHONE_NUMBER_ID.fullmatch(values["phone_number_id"]):
        raise ValueError("whatsapp-cloud phone_number_id must be digits (its id, not the number)")
    for key in ("access_token", "app_secret", "verify_token"):
        if not _NO_SPACE.fullmatch(values[key]):
            raise ValueError(f"whatsapp-cloud {key} must not contain spaces or line breaks")
    version = values.get("api_version")
    if version is not None and not _API_VERSION.fullmatch(version):
        raise ValueError(f"whatsapp-cloud api_version must look like {DEFAULT_API_VERSION}")


class WhatsAppCloudAccount:
    """One business phone number's wire contract."""

    def __init__(self, config: AccountConfig) -> None:
        settings = config.settings
        self._phone_number_id = settings["phone_number_id"]
        self._access_token = settings["access_token"]
        self._app_secret = settings["app_secret"].encode()
        self._verify_token_hash = settings["verify_token"]
        version = settings.get("api_version") or DEFAULT_API_VERSION
        self._messages_url = f"{config.base_url}/{version}/{self._phone_number_id}/messages"

    # -- the request ---------------------------------------------------------------------------

    def send_request(
        self, message: OutboundMessage, *, callback_url: str | None, now_ms: int
    ) -> HttpRequest | Rejected:
        """`callback_url` is unused: Meta posts to the URL configured on the app."""
        if message.channel != "whatsapp":
            return cannot_carry(f"whatsapp-cloud carries whatsapp only, not {message.channel}")
        to = message.to.get("number")
        if not isinstance(to, str) or not to:
            return cannot_carry("whatsapp-cloud needs to.number")
        content = message.message.get("content")
        if not isinstance(content, dict):
            return cannot_carry("whatsapp-cloud needs message.content")
        kind = content.get("type")
        envelope: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
        }
        if kind == "custom":
            custom = content.get("custom")
            if not isinstance(custom, dict):
                return cannot_carry("whatsapp-cloud needs content.custom as an object")
            # Taken as a fragment of Meta's message object (type and its object, context...),
            # laid over the envelope; the addressing and our reference stay ours.
            body = {**envelope, **custom, "messaging_product": "whatsapp", "to": to}
        else:
            built = _content(kind, content, message.message.get("whatsapp") or {})
            if isinstance(built, Rejected):
                return built
            body = {**envelope, "type": built[0], built[0]: built[1]}
        body["biz_opaque_callback_data"] = message.message_uuid
        return HttpRequest(
            method="POST",
            url=self._messages_url,
            headers={
                "Authorization": f"Bearer {self._access_token}",
                "Content-Type": "application/json",
            },
            body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        )

    # -- the answer ----------------------------------------------------------------------------

    def read_answer(
        self, message: OutboundMessage, answer: HttpAnswer, *, now_ms: int
    ) -> Accepted | Rejected | Unavailable:
        document = _json_or_none(answer.body)
        if 200 <= answer.status < 300:
            # A 2xx without an id still means sent: its callbacks carry our reference.
            return Accepted(provider_message_id=_message_id(document) or "")
        error = _graph_error(document, answer.status)
        code = error.code
        if answer.status == 429 or code in THROTTLING_CODES:
            hint = _retry_after_ms(answer.headers, now_ms)
            return Unavailable(reason=error.reason, retry_after_ms=hint, throttled=True)
        if code in TRANSIENT_CODES or (answer.status >= 500 and not _provider_side(error)):
            return Unavailable(reason=error.reason)
        provider_side = _provider_side(error) or answer.status in (401, 403)
        return Rejected(
            error=MessageError(
                code=code if code is not None else answer.status, reason=error.reason
            ),
            provider_side=provider_side,
        )

    # -- callbacks -----------------------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> None:
        presented = request.headers.get("x-hub-signature-256")
        if not presented:
            raise CallbackRefused("unsigned: no X-Hub-Signature-256")
        expected = "sha256=" + hmac.new(self._app_secret, request.body, hashlib.sha256).hexdigest()
        # Meta sends lowercase hex; compared as bytes so a non-ASCII header cannot raise.
        if not hmac.compare_digest(expected.encode(), presented.strip().lower().encode()):
            raise CallbackRefused("X-Hub-Signature-256 does not match the body")

    def read_callback(self, request: CallbackRequest) -> list[CallbackStatus]:
        document = _json_or_none(request.body)
        if not isinstance(document, dict) or not isinstance(document.get("entry"), list):
            raise CallbackRefused("not a WhatsApp webhook: no entry list", status_code=400)
        if document.get("object") != "whatsapp_business_account":
            return []
        statuses: list[CallbackStatus] = []
        for entry in document["entry"]:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(changes, list):
                raise CallbackRefused("an entry without a changes list", status_code=400)
            for change in changes:
                if not isinstance(change, dict):
                    raise CallbackRefused("a change that is not an object", status_code=400)
                value = change.get("value")
                if change.get("field") != "messages" or not isinstance(value, dict):
                    continue
                metadata = value.get("metadata")
                if not isinstance(metadata, dict) or (
                    metadata.get("phone_number_id") != self._phone_number_id
                ):
                    continue  # another number of the same app
                for item in value.get("statuses") or []:  # inbound `messages` are not ours
                    statuses.append(_status(item, request.received_at_ms))
        return statuses

    def handshake(self, request: CallbackRequest) -> bytes:
        """Meta's subscription check: echo `hub.challenge` when `hub.verify_token` matches."""
        query: dict[str, str] = {}
        for name, value in request.query:
            query.setdefault(name, value)
        if query.get("hub.mode") != "subscribe":
            raise CallbackRefused("hub.mode must be subscribe", status_code=400)
        challenge = query.get("hub.challenge")
        if not challenge:
            raise CallbackRefused("no hub.challenge", status_code=400)
        # The cheap checks first: the scrypt comparison costs tens of milliseconds.
        token = query.get("hub.verify_token")
        if not token or not matches_hashed(token, self._verify_token_hash):
            raise CallbackRefused("hub.verify_token does not match", status_code=403)
        return challenge.encode()


# -- building the content ----------------------------------------------------------------------

# Dispatch content type -> Meta message type, for those sent by link.
_MEDIA: Final = {"image": "image", "audio": "audio", "video": "video", "file": "document"}
_CAPTIONED: Final = frozenset({"image", "video", "file"})  # Meta refuses a caption on audio
_HSM_PREFIX: Final = "whatsapp:hsm:"
_DEFAULT_LOCALE: Final = "en_US"  # Vonage's default for WhatsApp templates


def _content(
    kind: object, content: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | Rejected:
    """(Meta type, its object) for one Dispatch content."""
    if kind == "text":
        text = content.get("text")
        if not isinstance(text, str):
            return cannot_carry("whatsapp-cloud needs content.text")
        return "text", {"body": text, "preview_url": False}
    if isinstance(kind, str) and kind in _MEDIA:
        media = content.get(kind)
        if not isinstance(media, dict) or not isinstance(media.get("url"), str):
            return cannot_carry(f"whatsapp-cloud needs content.{kind}.url")
        sent: dict[str, Any] = {"link": media["url"]}
        if kind in _CAPTIONED and isinstance(media.get("caption"), str):
            sent["caption"] = media["caption"]
        if kind == "file" and isinstance(media.get("name"), str):
            sent["filename"] = media["name"]  # Vonage's `file.name`
        return _MEDIA[kind], sent
    if kind == "template":
        template = content.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            return cannot_carry("whatsapp-cloud needs content.template.name")
        return "template", _template(template, options)
    return cannot_carry(f"whatsapp-cloud cannot send content type {kind}")


def _template(template: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    name: str = template["name"]
    if name.startswith(_HSM_PREFIX):  # Vonage's `whatsapp:hsm:<namespace>:<name>`
        name = name.rsplit(":", 1)[-1]
    locale = options.get("locale")
    code = locale.replace("-", "_") if isinstance(locale, str) and locale else _DEFAULT_LOCALE
    # Meta's only policy: `fallback` (Dispatch's other choice) was withdrawn by WhatsApp.
    built: dict[str, Any] = {"name": name, "language": {"code": code, "policy": "deterministic"}}
    parameters = [
        {"type": "text", "text": str(parameter.get("default", ""))}
        for parameter in template.get("parameters") or []
        if isinstance(parameter, dict)
    ]
    if parameters:  # a template without placeholders is sent without components
        built["components"] = [{"type": "body", "parameters": parameters}]
    return built


# -- reading answers ---------------------------------------------------------------------------

# Meta's throttling codes: 4 app call rate, 80007 WABA rate, 130429 number throughput,
# 131048 spam rate limit (quality), 131056 business-to-one-recipient pair rate.
THROTTLING_CODES: Final = frozenset({4, 80007, 130429, 131048, 131056})

# Worth the same request again later: 1 unknown (possible server error), 2 service
# temporarily down, 131000 something went wrong, 131016 service unavailable, 131057 account
# in maintenance mode (a throughput upgrade), 133004 server temporarily unavailable.
TRANSIENT_CODES: Final = frozenset({1, 2, 131000, 131016, 131057, 133004})

# The account's own problem, so another provider may succeed. Codes 200-299 (API permission)
# are provider-side too (`_provider_side`).
PROVIDER_SIDE_CODES: Final[Mapping[int, str]] = {
    0: "authentication failed (AuthException)",
    3: "capability or permission missing (API Method)",
    10: "permission denied",
    33: "the business phone number was deleted",
    190: "access token invalid or expired",
    368: "temporarily blocked for policy violations",
    2500: "token or path unusable (Graph: active access token required, unknown path)",
    130497: "business account restricted from messaging users in this country",
    131005: "access denied (permission)",
    131031: "business account locked",
    131037: "display name approval needed",
    131042: "business eligibility payment issue",
    131045: "incorrect certificate (number registration)",
    133000: "incomplete deregistration of the number",
    133006: "phone number re-verification needed",
    133010: "phone number not registered",
}
# Graph `(code, error_subcode)` pairs that name a configuration problem where the code alone
# does not: 100/33 is a POST to an object id (our phone_number_id) that does not exist or that
# the token cannot reach.
PROVIDER_SIDE_SUBCODES: Final[Mapping[tuple[int, int], str]] = {
    (100, 33): "phone_number_id does not exist or is not reachable with this token",
}
# Any other code is the recipient's or the message's, final (401 and 403 aside: credentials or
# permissions, whatever the code). Documented so: 100 invalid parameter, 130472 number in an
# experiment, 131008/131009 missing or invalid parameter, 131021 recipient is the sender,
# 131026 undeliverable, 131030 recipient not in the allowed list, 131047 re-engagement window
# closed, 131049/131050 marketing not delivered or stopped by the user, 131051 unsupported
# type, 131052/131053 media, 132xxx templates and flows, 135000 generic user error.


@dataclass(frozen=True, slots=True)
class _GraphError:
    code: int | None
    subcode: int | None
    reason: str


def _graph_error(document: object, status: int) -> _GraphError:
    """The Graph error of an answer; an unreadable body gives the HTTP status alone."""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return _GraphError(None, None, f"HTTP {status} without a Graph error body")
    details = error.get("error_data")
    details = details.get("details") if isinstance(details, dict) else None
    return _GraphError(
        _integer(error.get("code")),
        _integer(error.get("error_subcode")),
        _reason(error.get("message"), details) or f"HTTP {status}",
    )


def _provider_side(error: _GraphError) -> bool:
    code = error.code
    if code is None:
        return False
    if code in PROVIDER_SIDE_CODES or 200 <= code <= 299:
        return True
    return error.subcode is not None and (code, error.subcode) in PROVIDER_SIDE_SUBCODES


def _retry_after_ms(headers: Mapping[str, str], now_ms: int) -> int | None:
    """`Retry-After` (seconds or HTTP date) if given, else Meta's own estimate: the largest
    `estimated_time_to_regain_access` (minutes) in `x-business-use-case-usage`."""
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return int(retry_after) * 1000
    if retry_after:
        try:
            moment = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return max(0, int(moment.timestamp() * 1000) - now_ms)
    usage = _json_or_none(headers.get("x-business-use-case-usage", "").encode())
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else ())
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    waits = [m for m in minutes if isinstance(m, int) and not isinstance(m, bool) and m > 0]
    return max(waits) * 60_000 if waits else None


def _message_id(document: object) -> str | None:
    messages = document.get("messages") if isinstance(document, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else None
    found = first.get("id") if isinstance(first, dict) else None
    return found if isinstance(found, str) and found else None


# -- reading callbacks -------------------------------------------------------------------------

STATUSES: Final[Mapping[str, MessageStatus | None]] = {
    "sent": MessageStatus.SUBMITTED,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,  # only when the user has read receipts on
    "failed": MessageStatus.REJECTED,
    "deleted": None,  # the user deleted it: says nothing of delivery
    "warning": None,  # e.g. a catalog item unavailable: informational
}


def _status(item: object, received_at_ms: int) -> CallbackStatus:
    if not isinstance(item, dict):
        raise CallbackRefused("a status that is not an object", status_code=400)
    provider_id, raw = item.get("id"), item.get("status")
    if not isinstance(provider_id, str) or not isinstance(raw, str):
        raise CallbackRefused("a status without id or status", status_code=400)
    reference = item.get("biz_opaque_callback_data")
    timestamp = item.get("timestamp")
    occurred_at_ms = received_at_ms
    if isinstance(timestamp, str) and timestamp.isdigit():
        occurred_at_ms = int(timestamp) * 1000
    status = STATUSES.get(raw)
    return CallbackStatus(
        provider_message_id=provider_id,
        message_uuid=reference if isinstance(reference, str) and reference else None,
        status=status,
        occurred_at_ms=occurred_at_ms,
        error=_status_error(item.get("errors")) if status is MessageStatus.REJECTED else None,
        raw_status=raw,
    )


def _status_error(errors: object) -> MessageError | None:
    """`errors[0]` of a failed status: Meta's code and its message and details."""
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return None
    code = _integer(first.get("code"))
    data = first.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    reason = _reason(first.get("message") or first.get("title"), details)
    return MessageError(code=code if code is not None else 0, reason=reason or "failed")


# -- helpers -----------------------------------------------------------------------------------


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _reason(message: object, details: object) -> str:
    """Meta's message, with its details when they add something."""
    text = message if isinstance(message, str) else ""
    extra = details if isinstance(details, str) else ""
    if extra and extra not in text:
        return f"{text}: {extra}" if text else extra
    return text


KIND: Final = ProviderKind(
    name="whatsapp-cloud",
    default_base_url="https://graph.facebook.com",
    # Meta's default throughput per business phone number (80 mps; 1,000 after an upgrade).
    default_rate_per_s=80.0,
    channels=frozenset({"whatsapp"}),
    settings=SETTINGS,
    check_settings=check_settings,
    adapter=WhatsAppCloudAccount,
    notes=(
        "Callbacks: in the Meta App Dashboard, set the Webhooks callback URL to this "
        "account's callback endpoint with the same verify_token, and subscribe to the "
        "`messages` field; the URL is per app, not per message.",
        "Media goes by link (Meta fetches the URL); a file is sent as a document.",
        "content type `custom`: content.custom is laid over the request as a fragment of "
        "Meta's message object (type and its object); to, messaging_product and "
        "biz_opaque_callback_data stay ours.",
        "Templates: `whatsapp:hsm:<namespace>:<name>` is sent as <name>; the locale en-GB "
        "as en_GB (en_US when none); parameters become the body's text parameters.",
    ),
)
