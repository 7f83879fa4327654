"""A fake Twilio Programmable Messaging API: `POST /2010-04-01/Accounts/{sid}/Messages.json`.

It checks what Twilio checks before creating a message (sources: the OpenAPI
`twilio_api_v2010.yaml` and the error pages at twilio.com/docs/api/errors):

    401 20003  Basic credentials that are neither account_sid:auth_token nor
               api_key_sid:api_key_secret, or the path's AccountSid is another account's
               ("subaccount credentials to access master account" is a documented cause)
    400 21604  no To                       400 21211  To not +E.164 (whatsapp:+E.164)
    400 21603  neither From nor MessagingServiceSid
    400 21212  From not +E.164 (whatsapp:+E.164)
    400 21701  a MessagingServiceSid that is not this account's
    400 21910  To and From of different channels (one whatsapp:, the other not)
    400 21602  neither Body nor MediaUrl   400 21617  Body over 1600 characters
    400 21620  a MediaUrl that is not an absolute http(s) URL
    400 21609  a StatusCallback that is not an absolute http(s) URL, or whose hostname has
               an underscore
    429 20429  throttled (with `Retry-After` when the test asks for a hint: Twilio documents
               none, the adapter honours one)

Recipient scripts (`tests/fakes/base.py`): 1 is refused with 400 21610 ("Attempt to send to
unsubscribed recipient": documented, synchronous, and the recipient's own doing on every
channel), 2 is sent then `undelivered` 30003 (SMS, MMS) or `failed` 63016 (WhatsApp),
3 `sent` then `delivered`, 4 nothing, other digits `sent`, `delivered` and, for `whatsapp:`
recipients only, `read`. No callback for the initial status (`queued`, `accepted`), as Twilio.

Callbacks are form-encoded and signed as Twilio signs them, computed here independently of
the adapter: base64(HMAC-SHA1(auth token, url + sorted names each followed by its sorted
values)).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import hashlib
import hmac
import math
import re
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from tests.fakes.base import CallbackPlan, FakeMessage, FakeProvider

__all__ = ["FakeTwilio", "twilio_signature"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_MESSAGES_PATH = "/2010-04-01/Accounts/{account_sid}/Messages.json"
_BODY_LIMIT = 1600
_REFUSED_RECIPIENT = (21610, "Attempt to send to unsubscribed recipient")
_FAILURE_CALLBACK = {"whatsapp": ("failed", "63016"), "sms": ("undelivered", "30003")}

_ERROR_TEXTS = {
    401: (20003, "Authenticate"),
    403: (20403, "Forbidden"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature as Twilio computes it."""
    names = sorted({name for name, _ in params})
    signed = url
    for name in names:
        for value in sorted({value for key, value in params if key == name}):
            signed += name + value
    mac = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class FakeTwilio(FakeProvider):
    """Twilio's Messages resource, one account (with an API key and a messaging service)."""

    reads_on_channels = frozenset({"whatsapp"})

    def __init__(self) -> None:
        super().__init__()
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.api_key_sid = "SK" + secrets.token_hex(16)
        self.api_key_secret = secrets.token_urlsafe(24)
        self.messaging_service_sid = "MG" + secrets.token_hex(16)

    def account_settings(
        self, *, api_key: bool = False, messaging_service: bool = False
    ) -> dict[str, str]:
        """The `--set` values of an account talking to this fake (auth token by default)."""
        settings = {"account_sid": self.account_sid, "auth_token": self.auth_token}
        if api_key:
            settings |= {"api_key_sid": self.api_key_sid, "api_key_secret": self.api_key_secret}
        if messaging_service:
            settings["messaging_service_sid"] = self.messaging_service_sid
        return settings

    # -- the API ------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post(_MESSAGES_PATH, self._create_message)]

    def error_response(
        self, status: int, *, code: str | None = None, text: str | None = None
    ) -> web.Response:
        default_code, default_text = _ERROR_TEXTS.get(status, (20001, "Bad request"))
        number = int(code) if code is not None else default_code
        body = {
            "code": number,
            "message": text or default_text,
            "more_info": f"https://www.twilio.com/docs/errors/{number}",
            "status": status,
        }
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        if status == 429 and self.retry_after_s is not None:
            headers["Retry-After"] = str(math.ceil(self.retry_after_s))
        return web.json_response(body, status=status, headers=headers)

    async def _create_message(self, request: web.Request) -> web.Response:
        await self.wait_if_hanging()
        if not self._authenticated(request):
            return self.error_response(401)
        fault = self.fault()
        if fault is not None:
            return fault
        form = parse_qsl((await request.read()).decode(), keep_blank_values=True)
        fields = {name: value for name, value in reversed(form)}
        media_urls = [value for name, value in form if name == "MediaUrl"]
        refused = self._refusal(fields, media_urls)
        if refused is not None:
            return refused
        to = fields["To"]
        if to[-1:] == "1":
            return self.error_response(
                400, code=str(_REFUSED_RECIPIENT[0]), text=_REFUSED_RECIPIENT[1]
            )
        return self._created(fields, media_urls)

    def _authenticated(self, request: web.Request) -> bool:
        if request.match_info["account_sid"] != self.account_sid:
            return False
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        valid = {self.account_sid: self.auth_token, self.api_key_sid: self.api_key_secret}
        expected = valid.get(user)
        return expected is not None and hmac.compare_digest(password, expected)

    def _refusal(self, fields: dict[str, str], media_urls: list[str]) -> web.Response | None:
        """The first check Twilio would fail, as its error."""
        to, sender = fields.get("To"), fields.get("From")
        service = fields.get("MessagingServiceSid")
        body = fields.get("Body")
        if not to:
            return self._invalid(21604, "A 'To' phone number is required.")
        if not _is_address(to):
            return self._invalid(21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return self._invalid(
                21603, "A 'From' phone number or a 'MessagingServiceSid' is required."
            )
        if sender and not _is_address(sender):
            return self._invalid(
                21212,
                f"The 'From' number {sender} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID.",
            )
        if service and service != self.messaging_service_sid:
            return self._invalid(21701, "The Messaging Service does not exist")
        if sender and to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
            return self._invalid(
                21910,
                "Invalid 'From' and 'To' pair. 'From' and 'To' should be of the same channel",
            )
        if not body and not media_urls:
            return self._invalid(21602, "Message body is required.")
        if body and len(body) > _BODY_LIMIT:
            return self._invalid(
                21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if any(not _is_public_url(url) for url in media_urls):
            return self._invalid(21620, "Invalid media URL(s).")
        callback = fields.get("StatusCallback")
        if callback is not None and not _is_public_url(callback):
            return self._invalid(21609, "Invalid 'StatusCallback'")
        return None

    def _invalid(self, code: int, text: str) -> web.Response:
        return self.error_response(400, code=str(code), text=text)

    def _created(self, fields: dict[str, str], media_urls: list[str]) -> web.Response:
        sid = "SM" + secrets.token_hex(16)
        to, sender = fields["To"], fields.get("From")
        service = fields.get("MessagingServiceSid")
        now = email.utils.format_datetime(datetime.datetime.now(datetime.UTC))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": fields.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(media_urls)),
            "num_segments": "0" if service else "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # A messaging service takes the message first, choosing the sender after.
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        channel = "whatsapp" if to.startswith("whatsapp:") else "mms" if media_urls else "sms"
        self.accept_send(
            FakeMessage(
                provider_message_id=sid,
                channel=channel,
                to=to,
                from_=sender or service or "",
                text=fields.get("Body"),
                callback_url=fields.get("StatusCallback"),
                request={**fields, "MediaUrl": media_urls},
            )
        )
        return web.json_response(resource, status=201)

    # -- callbacks ----------------------------------------------------------------------------

    def statuses_for(self, message: FakeMessage, script: str) -> list[CallbackPlan]:
        if (message.callback_url or self.callback_url) is None:
            return []
        if script == "2":
            status, code = _FAILURE_CALLBACK.get(message.channel, _FAILURE_CALLBACK["sms"])
            words = [("sent", None), (status, code)]
        elif script == "3":
            words = [("sent", None), ("delivered", None)]
        elif script == "4":
            words = []
        else:
            words = [("sent", None), ("delivered", None)]
            if message.to.startswith("whatsapp:"):
                words.append(("read", None))
        return [CallbackPlan(message=message, status=word, error_code=code) for word, code in words]

    def callback_request(self, plan: CallbackPlan) -> tuple[str, dict[str, str], bytes]:
        message = plan.message
        url = message.callback_url or self.callback_url
        assert url is not None
        params = [
            ("ApiVersion", "2010-04-01"),
            ("AccountSid", self.account_sid),
            ("SmsSid", message.provider_message_id),
            ("SmsStatus", plan.status),
            ("MessageStatus", plan.status),
            ("To", message.to),
            ("MessageSid", message.provider_message_id),
            ("From", message.request.get("From") or "+15005550006"),
        ]
        service = message.request.get("MessagingServiceSid")
        if service:
            params.append(("MessagingServiceSid", service))
        if message.channel == "whatsapp":
            params += [("ChannelPrefix", "whatsapp"), ("ChannelToAddress", message.to[10:])]
        if plan.error_code is not None:
            params.append(("ErrorCode", plan.error_code))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(self.auth_token, url, params),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
        }
        return url, headers, urlencode(params).encode()


def _is_address(value: str) -> bool:
    return _E164.fullmatch(value.removeprefix("whatsapp:")) is not None


def _is_public_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and "_" not in (host or "")
