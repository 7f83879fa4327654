"""A fake of Meta's WhatsApp Business Cloud API: one business phone number of one Meta app.

It speaks what `opendispatch.providers.whatsapp_cloud` documents: `POST
/{version}/{phone_number_id}/messages` with a Bearer token, Graph errors `{"error": {message,
type, code, error_subcode?, error_data: {messaging_product, details}, fbtrace_id}}`, and status
webhooks signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>` posted to
the URL configured on the app (`fake.callback_url`: Meta has no per-message callback URL).

Recipient scripts (see `tests/fakes/base.py`): last digit 1 is refused at send with 400 code
131030 (recipient not in the allowed list, what a test number's app answers); 2 is accepted,
then `failed` with errors[0] code 131026 (message undeliverable); 3 `sent`, `delivered`; 4
silent; others `sent`, `delivered`, `read`. Faults answer as Meta does: 503 code 2, 500 code
1, 429 code 130429 with `x-business-use-case-usage` carrying `estimated_time_to_regain_access`
(minutes, rounded up) when `throttle_next` was given a hint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.base import CallbackPlan, FakeMessage, FakeProvider

__all__ = ["FakeWhatsAppCloud"]

_VERSION = re.compile(r"v[0-9]+\.[0-9]+")
_RECIPIENT = re.compile(r"\+?[0-9]{5,15}")
_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
_OTHER_TYPES = frozenset({"interactive", "contacts", "location", "reaction"})
_ERROR_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

# Meta's answer for each fault status the shared machinery asks for: (code, type, message).
_FAULTS: dict[int, tuple[int, str, str]] = {
    400: (100, "OAuthException", "(#100) Invalid parameter"),
    401: (190, "OAuthException", "Invalid OAuth access token - Cannot parse access token"),
    403: (10, "OAuthException", "(#10) Application does not have permission for this action"),
    404: (100, "GraphMethodException", "Unsupported post request."),
    429: (130429, "OAuthException", "(#130429) Rate limit hit"),
    500: (1, "OAuthException", "An unknown error occurred"),
    503: (2, "OAuthException", "An unexpected error has occurred. Please retry your request."),
}
_THROUGHPUT_DETAILS = (
    "Message failed to send because there were too many messages sent from this phone "
    "number in a short period of time"
)


class FakeWhatsAppCloud(FakeProvider):
    def __init__(
        self,
        *,
        phone_number_id: str = "106540352242922",
        display_phone_number: str = "15550783881",
        waba_id: str = "102290129340398",
    ) -> None:
        super().__init__()
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id
        self.access_token = "EAAG" + secrets.token_urlsafe(48)
        self.app_secret = secrets.token_hex(16)
        self.verify_token = secrets.token_urlsafe(16)

    def account_settings(self) -> dict[str, str]:
        """The `--set` values of an account talking to this fake (verify_token in clear)."""
        return {
            "phone_number_id": self.phone_number_id,
            "access_token": self.access_token,
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
        }

    # -- the API -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{version}/{phone_number_id}/messages", self._send)]

    async def _send(self, request: web.Request) -> web.Response:
        await self.wait_if_hanging()
        if request.headers.get("Authorization", "") != f"Bearer {self.access_token}":
            return self.error_response(401)
        if not _VERSION.fullmatch(request.match_info["version"]):
            path = request.path
            return self._graph_error(400, 2500, f"Unknown path components: {path}")
        if request.match_info["phone_number_id"] != self.phone_number_id:
            number = request.match_info["phone_number_id"]
            return self._graph_error(
                400,
                100,
                f"Unsupported post request. Object with ID '{number}' does not exist, cannot "
                "be loaded due to missing permissions, or does not support this operation.",
                kind="GraphMethodException",
                subcode=33,
            )
        fault = self.fault()
        if fault is not None:
            return fault
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._graph_error(400, 100, "(#100) Invalid JSON for postBody")
        problem = _problem(body)
        if problem is not None:
            code, details = problem
            return self._graph_error(400, code, _TITLES[code], details=details)
        to = body["to"].lstrip("+")
        if to.endswith("1"):
            return self._graph_error(
                400,
                131030,
                "(#131030) Recipient phone number not in allowed list",
                details="Recipient phone number not in allowed list: Add recipient phone "
                "number to recipient list and try again.",
            )
        message_id = "wamid." + secrets.token_urlsafe(36)
        kind = body.get("type", "text")
        text = body.get("text", {}).get("body") if kind == "text" else None
        self.accept_send(
            FakeMessage(
                provider_message_id=message_id,
                channel="whatsapp",
                to=to,
                from_=self.display_phone_number,
                text=text,
                callback_url=self.callback_url,
                request=body,
                reference=body.get("biz_opaque_callback_data"),
            )
        )
        sent: dict[str, Any] = {"id": message_id}
        if kind == "template":
            sent["message_status"] = "accepted"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": to}],
                "messages": [sent],
            }
        )

    def error_response(
        self, status: int, *, code: str | None = None, text: str | None = None
    ) -> web.Response:
        default_code, kind, message = _FAULTS.get(status, _FAULTS[500 if status >= 500 else 400])
        headers: dict[str, str] = {}
        details = None
        if status == 429:
            details = _THROUGHPUT_DETAILS
            if self.retry_after_s is not None:
                minutes = math.ceil(self.retry_after_s / 60)
                usage = {
                    "type": "whatsapp",
                    "call_count": 100,
                    "total_cputime": 1,
                    "total_time": 1,
                    "estimated_time_to_regain_access": minutes,
                }
                headers["x-business-use-case-usage"] = json.dumps({self.waba_id: [usage]})
        return self._graph_error(
            status,
            int(code) if code is not None else default_code,
            text or message,
            kind=kind,
            details=details,
            headers=headers,
        )

    def _graph_error(
        self,
        status: int,
        code: int,
        message: str,
        *,
        kind: str = "OAuthException",
        subcode: int | None = None,
        details: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        error: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        if subcode is not None:
            error["error_subcode"] = subcode
        error["fbtrace_id"] = secrets.token_urlsafe(16)
        return web.json_response({"error": error}, status=status, headers=headers)

    # -- callbacks -----------------------------------------------------------------------------

    def statuses_for(self, message: FakeMessage, script: str) -> list[CallbackPlan]:
        def plan(status: str, **error: str) -> CallbackPlan:
            return CallbackPlan(message=message, status=status, **error)

        if script == "1":
            return []  # refused at send
        if script == "2":
            return [plan("failed", error_code="131026", error_text="Message undeliverable.")]
        if script == "3":
            return [plan("sent"), plan("delivered")]
        if script == "4":
            return []
        return [plan("sent"), plan("delivered"), plan("read")]

    def callback_request(self, plan: CallbackPlan) -> tuple[str, dict[str, str], bytes]:
        url = plan.message.callback_url or self.callback_url
        if url is None:
            raise RuntimeError("set fake.callback_url: Meta posts to the app's webhook URL")
        return url, *self.signed(self.status_payload(plan))

    def status_payload(self, plan: CallbackPlan) -> dict[str, Any]:
        """The `messages` webhook of one status, as Meta posts it."""
        message = plan.message
        status: dict[str, Any] = {
            "id": message.provider_message_id,
            "status": plan.status,
            "timestamp": str(int(time.time())),
            "recipient_id": message.to,
        }
        if message.reference is not None:
            status["biz_opaque_callback_data"] = message.reference
        if plan.status in ("sent", "delivered", "read"):
            status["pricing"] = {
                "billable": True,
                "pricing_model": "PMP",
                "category": "utility",
                "type": "regular",
            }
        if plan.status == "failed":
            title = plan.error_text or "Message undeliverable."
            status["errors"] = [
                {
                    "code": int(plan.error_code or 131026),
                    "title": title,
                    "message": title,
                    "error_data": {"details": title},
                    "href": _ERROR_HREF,
                }
            ]
        return self.envelope({"statuses": [status]})

    def envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        """A `messages` change of this number, around `value` (statuses, messages...)."""
        metadata = {
            "display_phone_number": self.display_phone_number,
            "phone_number_id": self.phone_number_id,
        }
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {"messaging_product": "whatsapp", "metadata": metadata}
                            | value,
                        }
                    ],
                }
            ],
        }

    def signed(self, payload: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        """(headers, body) as Meta posts a webhook: escaped-unicode JSON, HMAC over the bytes."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        digest = hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}, body

    # -- the verification handshake ------------------------------------------------------------

    def verify_webhook(
        self,
        url: str,
        *,
        verify_token: str | None = None,
        mode: str = "subscribe",
        challenge: str | None = None,
    ) -> tuple[int, bytes, str]:
        """Run Meta's GET handshake against `url`: (status, body, the challenge sent)."""
        sent = challenge if challenge is not None else str(secrets.randbelow(2**31))
        query = {"hub.mode": mode, "hub.challenge": sent}
        query["hub.verify_token"] = self.verify_token if verify_token is None else verify_token
        if not sent:
            del query["hub.challenge"]
        status, body = self.get_raw(f"{url}?{urlencode(query)}")
        return status, body, sent


_TITLES = {
    100: "(#100) Invalid parameter",
    131008: "(#131008) Required parameter is missing",
    131009: "(#131009) Parameter value is not valid",
    131051: "(#131051) Unsupported message type",
}


def _problem(body: object) -> tuple[int, str] | None:
    """What Meta would refuse in a send request: (code, details), or None."""
    if not isinstance(body, dict):
        return 100, "The request body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return 100, "The parameter messaging_product is required and must be whatsapp"
    to = body.get("to")
    if not isinstance(to, str) or not to:
        return 131008, "The parameter to is required"
    if not _RECIPIENT.fullmatch(to):
        return 131009, "The parameter to is not a valid phone number"
    if body.get("recipient_type", "individual") not in ("individual", "group"):
        return 131009, "recipient_type must be individual or group"
    reference = body.get("biz_opaque_callback_data")
    if reference is not None and (not isinstance(reference, str) or len(reference) > 512):
        return 131009, "biz_opaque_callback_data must be a string of at most 512 characters"
    kind = body.get("type", "text")
    if not isinstance(kind, str) or kind not in _MEDIA_TYPES | _OTHER_TYPES | {"text", "template"}:
        return 131051, f"Message type {kind} is not supported"
    content = body.get(kind)
    if not isinstance(content, dict):
        return 131008, f"The parameter {kind} is required"
    if kind == "text":
        text = content.get("body")
        if not isinstance(text, str) or not text or len(text) > 4096:
            return 131009, "text.body must be 1 to 4096 characters"
    elif kind in _MEDIA_TYPES:
        link = content.get("link")
        if not (isinstance(link, str) and link.startswith(("http://", "https://"))) and not (
            isinstance(content.get("id"), str)
        ):
            return 131008, f"{kind} needs an http(s) link or a media id"
        if "caption" in content and kind in ("audio", "sticker"):
            return 100, f"caption is not allowed on {kind}"
    elif kind == "template":
        language = content.get("language")
        if not isinstance(content.get("name"), str) or not content["name"]:
            return 131008, "template.name is required"
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            return 131008, "template.language.code is required"
        components = content.get("components", [])
        if not isinstance(components, list):
            return 100, "template.components must be an array"
    return None
