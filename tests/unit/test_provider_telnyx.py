"""The Telnyx adapter, pure: requests byte for byte, answers, signatures, statuses, settings.

Telnyx publishes no signature test vectors (its SDKs' tests generate a key pair each run), so
the fixed vector here is built on RFC 8032's first Ed25519 test key: its public key is checked
against the RFC, and the signature of a Telnyx-shaped callback made with it is pinned (Ed25519
is deterministic), so a change in what is signed or how the key is read shows.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import opendispatch.providers.telnyx as telnyx_module
from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import Accepted, OutboundMessage, Rejected, Unavailable
from opendispatch.providers.kinds import (
    CAPABILITY_CODE,
    AccountAdapter,
    AccountConfig,
    CallbackRefused,
    CallbackRequest,
    CallbackStatus,
    HttpAnswer,
    HttpRequest,
)
from opendispatch.providers.telnyx import KIND

# RFC 8032 section 7.1, TEST 1.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
PUBLIC_KEY = base64.b64encode(RFC8032_PUBLIC).decode()

PINNED_TIMESTAMP = 1_700_000_000
PINNED_BODY = (
    b'{"data":{"event_type":"message.finalized","id":"e1",'
    b'"occurred_at":"2023-11-14T22:13:20.000+00:00","payload":{"id":'
    b'"40385f64-5717-4562-b3fc-2c963f66afa6","to":[{"phone_number":"+447700900123",'
    b'"status":"delivered"}],"errors":[]},"record_type":"event"},"meta":{"attempt":1}}'
)
PINNED_SIGNATURE = (
    "NLwtXY+UKadedsCyh6WNYiFlgoqLdJr+vKnZ5pD1y3L9tCm/PttOLAJylTQE26pa5ipsHEa+viTwaQouEWR1Cg=="
)

API_KEY = "KEY0123456789ABCDEF"
BASE_URL = "https://api.telnyx.test"
UUID = "6b1b7a0e-4d1b-4a43-9d5e-3f7e0d8f2a11"
NOW_MS = 1_700_000_000_000
CALLBACK = "https://dispatch.example.com/v0.1/providers/telnyx-eu/callbacks"


def adapter(**settings: str) -> AccountAdapter:
    values = {"api_key": API_KEY, "public_key": PUBLIC_KEY, **settings}
    KIND.check_settings(values)
    return KIND.adapter(
        AccountConfig(name="telnyx-eu", kind="telnyx", base_url=BASE_URL, settings=values)
    )


def outbound(channel: str = "sms", content: dict[str, Any] | None = None) -> OutboundMessage:
    number_type = {"type": channel, "number": "447700900123"}
    return OutboundMessage(
        message_uuid=UUID,
        dispatch_uuid="0d9f1f3c-0000-4000-8000-000000000001",
        channel=channel,
        to=number_type,
        from_={"type": channel, "number": "447700900000"},
        message={"content": content or {"type": "text", "text": "Your code is 64873."}},
        attempt=1,
    )


def sent(request: HttpRequest | Rejected) -> HttpRequest:
    assert isinstance(request, HttpRequest), request
    return request


def answer(status: int, body: Any = b"", **headers: str) -> HttpAnswer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpAnswer(
        status=status, headers={k.replace("_", "-"): v for k, v in headers.items()}, body=raw
    )


def error_body(code: str, title: str, detail: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "title": title, "detail": detail}]}


def callback(
    body: bytes,
    *,
    timestamp: int = PINNED_TIMESTAMP,
    received_at_ms: int | None = None,
    key: Ed25519PrivateKey = SIGNING_KEY,
    headers: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
) -> CallbackRequest:
    signed = key.sign(f"{timestamp}|".encode() + body)
    default_headers = {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signed).decode(),
        "telnyx-timestamp": str(timestamp),
    }
    return CallbackRequest(
        method="POST",
        url=f"{CALLBACK}?message_uuid={UUID}",
        query=[("message_uuid", UUID)] if query is None else query,
        headers=default_headers if headers is None else headers,
        body=body,
        received_at_ms=timestamp * 1000 + 1500 if received_at_ms is None else received_at_ms,
    )


def event(
    status: str,
    *,
    event_type: str = "message.finalized",
    errors: list[dict[str, Any]] | None = None,
    cost: dict[str, str] | None = None,
    occurred_at: str | None = "2023-11-14T22:13:21.250+00:00",
) -> bytes:
    data: dict[str, Any] = {
        "event_type": event_type,
        "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
        "payload": {
            "record_type": "message",
            "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
            "to": [{"phone_number": "+447700900123", "status": status}],
            "errors": errors or [],
            "cost": cost,
        },
        "record_type": "event",
    }
    if occurred_at is not None:
        data["occurred_at"] = occurred_at
    return json.dumps({"data": data, "meta": {"attempt": 1}}).encode()


# -- the kind and its settings -----------------------------------------------------------------


def test_kind_carries_sms_and_mms_at_the_documented_account_rate() -> None:
    assert KIND.name == "telnyx"
    assert KIND.default_base_url == "https://api.telnyx.com"
    assert KIND.channels == frozenset({"sms", "mms"})
    assert KIND.default_rate_per_s == 15.0  # the account MMS limit; SMS is 50/s


def test_only_the_api_key_is_secret_and_both_keys_are_required() -> None:
    settings = {s.key: (s.secret, s.required) for s in KIND.settings}
    assert settings == {
        "api_key": (True, True),
        "public_key": (False, True),
        "messaging_profile_id": (False, False),
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "telnyx needs api_key and public_key"),
        ({"api_key": API_KEY}, "telnyx needs public_key"),
        ({"public_key": PUBLIC_KEY}, "telnyx needs api_key"),
        ({"api_key": "  ", "public_key": PUBLIC_KEY}, "telnyx needs api_key"),
        ({"api_key": "KEY 1", "public_key": PUBLIC_KEY}, "api_key must not contain spaces"),
        ({"api_key": API_KEY, "public_key": "not base64!"}, "public_key must be base64"),
        (
            {"api_key": API_KEY, "public_key": base64.b64encode(b"\x01" * 31).decode()},
            "32-byte Ed25519 key, not 31 bytes",
        ),
        (
            {"api_key": API_KEY, "public_key": PUBLIC_KEY, "messaging_profile_id": ""},
            "messaging_profile_id",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_the_key(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        KIND.check_settings(values)


def test_a_pem_public_key_is_refused() -> None:
    pem = (
        SIGNING_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="public_key must be base64"):
        KIND.check_settings({"api_key": API_KEY, "public_key": pem})


def test_settings_with_a_portal_key_and_a_profile_are_accepted() -> None:
    KIND.check_settings(
        {"api_key": API_KEY, "public_key": PUBLIC_KEY, "messaging_profile_id": "4001-abc"}
    )


def test_the_module_does_no_io_and_reads_no_clock() -> None:
    tree = ast.parse(Path(telnyx_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    forbidden = {"time", "socket", "asyncio", "logging", "httpx", "aiohttp", "random", "os"}
    assert imported & forbidden == set()
    calls = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert calls & {"now", "utcnow", "today", "time"} == set()


# -- the request -------------------------------------------------------------------------------


def test_sms_is_a_json_post_with_the_bearer_key_and_our_reference_in_the_webhook_url() -> None:
    request = sent(adapter().send_request(outbound(), callback_url=CALLBACK, now_ms=NOW_MS))
    assert request.method == "POST"
    assert request.url == "https://api.telnyx.test/v2/messages"
    assert request.headers == {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    assert request.body == (
        b'{"from":"+447700900000","to":"+447700900123","text":"Your code is 64873.",'
        b'"type":"SMS","webhook_url":"https://dispatch.example.com/v0.1/providers/telnyx-eu/'
        b'callbacks?message_uuid=6b1b7a0e-4d1b-4a43-9d5e-3f7e0d8f2a11",'
        b'"use_profile_webhooks":false}'
    )


def test_without_a_public_url_no_webhook_is_named() -> None:
    request = sent(adapter().send_request(outbound(), callback_url=None, now_ms=NOW_MS))
    assert request.body == (
        b'{"from":"+447700900000","to":"+447700900123","text":"Your code is 64873.","type":"SMS"}'
    )


def test_the_messaging_profile_is_sent_when_configured() -> None:
    request = sent(
        adapter(messaging_profile_id="4001a1b2-profile").send_request(
            outbound(), callback_url=None, now_ms=NOW_MS
        )
    )
    assert json.loads(request.body)["messaging_profile_id"] == "4001a1b2-profile"


def test_a_callback_url_with_a_query_gets_the_reference_appended() -> None:
    request = sent(
        adapter().send_request(outbound(), callback_url=CALLBACK + "?a=1&b", now_ms=NOW_MS)
    )
    assert json.loads(request.body)["webhook_url"] == f"{CALLBACK}?a=1&b&message_uuid={UUID}"


def test_text_is_utf8_not_escaped() -> None:
    message = outbound(content={"type": "text", "text": "Código: 64873 ✓"})
    request = sent(adapter().send_request(message, callback_url=None, now_ms=NOW_MS))
    assert '"text":"Código: 64873 ✓"'.encode() in request.body


def test_mms_image_becomes_media_urls_and_its_caption_the_text() -> None:
    message = outbound(
        "mms",
        {"type": "image", "image": {"url": "https://example.com/a.jpg", "caption": "Your pass"}},
    )
    request = sent(adapter().send_request(message, callback_url=CALLBACK, now_ms=NOW_MS))
    assert request.body == (
        b'{"from":"+447700900000","to":"+447700900123","text":"Your pass",'
        b'"media_urls":["https://example.com/a.jpg"],"type":"MMS","webhook_url":'
        b'"https://dispatch.example.com/v0.1/providers/telnyx-eu/callbacks?message_uuid='
        b'6b1b7a0e-4d1b-4a43-9d5e-3f7e0d8f2a11","use_profile_webhooks":false}'
    )


def test_mms_image_without_a_caption_has_no_text() -> None:
    message = outbound("mms", {"type": "image", "image": {"url": "https://example.com/a.png"}})
    request = sent(adapter().send_request(message, callback_url=None, now_ms=NOW_MS))
    assert request.body == (
        b'{"from":"+447700900000","to":"+447700900123",'
        b'"media_urls":["https://example.com/a.png"],"type":"MMS"}'
    )


@pytest.mark.parametrize("channel", ["whatsapp", "viber_service_msg", "messenger"])
def test_channels_telnyx_does_not_carry_are_provider_side_refusals(channel: str) -> None:
    refusal = adapter().send_request(outbound(channel), callback_url=CALLBACK, now_ms=NOW_MS)
    assert isinstance(refusal, Rejected)
    assert refusal.provider_side
    assert refusal.error.code == CAPABILITY_CODE
    assert channel in refusal.error.reason


@pytest.mark.parametrize(
    ("channel", "content"),
    [
        ("sms", {"type": "image", "image": {"url": "https://example.com/a.jpg"}}),
        ("sms", {"type": "template", "template": {"name": "otp"}}),
        ("sms", {"type": "custom", "custom": {}}),
        ("mms", {"type": "text", "text": "hello"}),
        ("mms", {"type": "video", "video": {"url": "https://example.com/a.mp4"}}),
        ("mms", {"type": "audio", "audio": {"url": "https://example.com/a.mp3"}}),
        ("mms", {"type": "file", "file": {"url": "https://example.com/a.pdf", "caption": "x"}}),
    ],
)
def test_content_the_channel_cannot_express_is_a_capability_refusal(
    channel: str, content: dict[str, Any]
) -> None:
    refusal = adapter().send_request(outbound(channel, content), callback_url=None, now_ms=NOW_MS)
    assert isinstance(refusal, Rejected)
    assert (refusal.provider_side, refusal.error.code) == (True, CAPABILITY_CODE)
    assert content["type"] in refusal.error.reason


def test_a_message_without_numbers_is_not_sent() -> None:
    message = dataclasses.replace(outbound(), from_={"type": "sms"})
    refusal = adapter().send_request(message, callback_url=None, now_ms=NOW_MS)
    assert isinstance(refusal, Rejected)
    assert refusal.error.code == CAPABILITY_CODE


# -- the answer --------------------------------------------------------------------------------


def read(reply: HttpAnswer) -> Accepted | Rejected | Unavailable:
    return adapter().read_answer(outbound(), reply, now_ms=NOW_MS)


def test_200_is_accepted_with_telnyx_message_id() -> None:
    body = {
        "data": {
            "record_type": "message",
            "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
            "to": [{"phone_number": "+447700900123", "status": "queued"}],
            "cost": None,
        }
    }
    assert read(answer(200, body)) == Accepted(
        provider_message_id="40385f64-5717-4562-b3fc-2c963f66afa6"
    )


def test_a_cost_in_eur_is_the_price_and_other_currencies_are_not_converted() -> None:
    def with_cost(currency: str) -> HttpAnswer:
        return answer(
            200, {"data": {"id": "m1", "cost": {"amount": "0.0051", "currency": currency}}}
        )

    assert read(with_cost("EUR")) == Accepted(provider_message_id="m1", price="0.0051")
    assert read(with_cost("USD")) == Accepted(provider_message_id="m1")


def test_an_unreadable_2xx_is_still_accepted_so_it_is_never_sent_twice() -> None:
    assert read(answer(200, b"<html>ok</html>")) == Accepted(provider_message_id="")


@pytest.mark.parametrize(
    ("status", "code", "title", "provider_side"),
    [
        (400, "40310", "Invalid 'to' address", False),
        (409, "40300", "Blocked due to STOP message", False),
        (400, "10016", "Phone number must be in +E.164 format", False),
        (422, "10004", "Missing required parameter", False),
        (400, "40012", "Invalid destination number", False),
        (401, "10009", "Authentication failed", True),
        (403, "10010", "Authorization failed", True),
        (403, "10039", "Feature limited", True),
        (403, "10038", "Feature not permitted", True),
        (400, "40305", "Invalid 'from' address", True),
        (400, "40309", "Invalid destination region", True),
        (400, "40013", "Invalid source number", True),
        (404, "10005", "Resource not found", True),
    ],
)
def test_4xx_is_rejected_with_telnyx_code_and_the_side_its_table_says(
    status: int, code: str, title: str, provider_side: bool
) -> None:
    result = read(answer(status, error_body(code, title, "Some detail.")))
    assert result == Rejected(
        error=MessageError(code=int(code), reason=f"{title}: Some detail."),
        provider_side=provider_side,
    )


@pytest.mark.parametrize(
    ("status", "provider_side"), [(400, False), (401, True), (402, True), (403, True), (422, False)]
)
def test_a_4xx_code_outside_the_tables_is_judged_by_its_status(
    status: int, provider_side: bool
) -> None:
    result = read(answer(status, error_body("49999", "Something new", "")))
    assert isinstance(result, Rejected)
    assert (result.error.code, result.error.reason) == (49999, "Something new")
    assert result.provider_side is provider_side


@pytest.mark.parametrize(
    ("status", "body", "provider_side"),
    [
        (401, b"Unauthorized", True),
        (400, b"", False),
        (422, {"errors": [{"code": "invalid", "title": "Nope"}]}, False),
        (403, {"errors": []}, True),
    ],
)
def test_a_4xx_without_a_numeric_code_takes_the_http_status(
    status: int, body: Any, provider_side: bool
) -> None:
    result = read(answer(status, body))
    assert isinstance(result, Rejected)
    assert result.error.code == status
    assert result.provider_side is provider_side


def test_429_with_retry_after_seconds_is_throttled_for_that_long() -> None:
    result = read(answer(429, error_body("10011", "Too many requests", ""), retry_after="3"))
    assert result == Unavailable(reason="Too many requests", throttled=True, retry_after_ms=3000)


def test_429_with_an_http_date_counts_from_now() -> None:
    # NOW_MS is 2023-11-14 22:13:20 UTC.
    result = read(answer(429, b"", retry_after="Tue, 14 Nov 2023 22:13:25 GMT"))
    assert isinstance(result, Unavailable)
    assert (result.throttled, result.retry_after_ms) == (True, 5000)


def test_429_with_a_past_http_date_waits_nothing() -> None:
    result = read(answer(429, b"", retry_after="Tue, 14 Nov 2023 22:00:00 GMT"))
    assert isinstance(result, Unavailable)
    assert result.retry_after_ms == 0


def test_429_uses_the_rate_limit_reset_as_seconds_until_the_window_ends() -> None:
    reply = answer(
        429,
        error_body("10011", "Too many requests", "You have exceeded the maximum."),
        x_ratelimit_limit="100",
        x_ratelimit_remaining="0",
        x_ratelimit_reset="7",
    )
    assert read(reply) == Unavailable(
        reason="Too many requests: You have exceeded the maximum.",
        throttled=True,
        retry_after_ms=7000,
    )


def test_a_reset_that_is_a_unix_time_counts_from_now() -> None:
    result = read(answer(429, b"", x_ratelimit_reset=str(NOW_MS // 1000 + 4)))
    assert isinstance(result, Unavailable)
    assert result.retry_after_ms == 4000


def test_retry_after_wins_over_the_rate_limit_reset() -> None:
    result = read(answer(429, b"", retry_after="1", x_ratelimit_reset="30"))
    assert isinstance(result, Unavailable)
    assert result.retry_after_ms == 1000


@pytest.mark.parametrize("headers", [{}, {"retry_after": "soon"}, {"x_ratelimit_reset": "-1"}])
def test_429_without_a_usable_hint_is_throttled_without_a_delay(headers: dict[str, str]) -> None:
    result = read(answer(429, b"not json", **headers))
    assert result == Unavailable(
        reason="telnyx answered HTTP 429", throttled=True, retry_after_ms=None
    )


@pytest.mark.parametrize("code", ["10011", "40318"])
def test_throttling_codes_on_another_status_are_throttled(code: str) -> None:
    result = read(answer(400, error_body(code, "Too many requests", ""), x_ratelimit_reset="2"))
    assert result == Unavailable(reason="Too many requests", throttled=True, retry_after_ms=2000)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable_not_throttled(status: int) -> None:
    result = read(answer(status, error_body("10007", "Unexpected error", "")))
    assert isinstance(result, Unavailable)
    assert not result.throttled
    assert result.reason == f"telnyx answered HTTP {status}: Unexpected error"


def test_an_unreadable_5xx_is_unavailable() -> None:
    result = read(answer(503, b"<html>Service Unavailable</html>"))
    assert isinstance(result, Unavailable)
    assert result.reason == "telnyx answered HTTP 503"


# -- callback signatures -----------------------------------------------------------------------


def test_the_rfc8032_key_reads_as_its_published_public_key() -> None:
    raw = SIGNING_KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert raw == RFC8032_PUBLIC


def test_the_pinned_vector_verifies_and_was_signed_over_timestamp_bar_body() -> None:
    request = callback(PINNED_BODY)
    assert request.headers["telnyx-signature-ed25519"] == PINNED_SIGNATURE
    adapter().verify_callback(request)


def test_a_callback_signed_by_another_key_is_refused() -> None:
    forger = Ed25519PrivateKey.generate()
    with pytest.raises(CallbackRefused) as refused:
        adapter().verify_callback(callback(PINNED_BODY, key=forger))
    assert refused.value.status_code == 401


def test_a_tampered_body_is_refused() -> None:
    genuine = callback(PINNED_BODY)
    tampered = CallbackRequest(
        method=genuine.method,
        url=genuine.url,
        query=genuine.query,
        headers=genuine.headers,
        body=PINNED_BODY.replace(b"delivered", b"delivery_failed"),
        received_at_ms=genuine.received_at_ms,
    )
    with pytest.raises(CallbackRefused, match="does not match"):
        adapter().verify_callback(tampered)


def test_a_signature_replayed_with_another_timestamp_is_refused() -> None:
    genuine = callback(PINNED_BODY)
    replayed = dict(genuine.headers, **{"telnyx-timestamp": str(PINNED_TIMESTAMP + 1)})
    with pytest.raises(CallbackRefused, match="does not match"):
        adapter().verify_callback(callback(PINNED_BODY, headers=replayed))


@pytest.mark.parametrize("missing", ["telnyx-signature-ed25519", "telnyx-timestamp"])
def test_an_unsigned_callback_is_refused(missing: str) -> None:
    headers = dict(callback(PINNED_BODY).headers)
    del headers[missing]
    with pytest.raises(CallbackRefused, match="not signed") as refused:
        adapter().verify_callback(callback(PINNED_BODY, headers=headers))
    assert refused.value.status_code == 401


@pytest.mark.parametrize("offset_ms", [300_001, -300_001, 86_400_000])
def test_a_timestamp_more_than_300_s_away_is_refused(offset_ms: int) -> None:
    request = callback(PINNED_BODY, received_at_ms=PINNED_TIMESTAMP * 1000 + offset_ms)
    with pytest.raises(CallbackRefused, match="300 s") as refused:
        adapter().verify_callback(request)
    assert refused.value.status_code == 401


@pytest.mark.parametrize("offset_ms", [300_000, -300_000, 0])
def test_a_timestamp_within_300_s_is_accepted(offset_ms: int) -> None:
    adapter().verify_callback(
        callback(PINNED_BODY, received_at_ms=PINNED_TIMESTAMP * 1000 + offset_ms)
    )


@pytest.mark.parametrize(
    ("signature", "timestamp", "why"),
    [
        ("not base64 at all!", str(PINNED_TIMESTAMP), "not base64"),
        (base64.b64encode(b"\x00" * 63).decode(), str(PINNED_TIMESTAMP), "not 64 bytes"),
        (base64.b64encode(b"\x00" * 64).decode(), str(PINNED_TIMESTAMP), "does not match"),
        (PINNED_SIGNATURE, "1700000000.5", "not a Unix time"),
        (PINNED_SIGNATURE, "-1700000000", "not a Unix time"),
    ],
)
def test_malformed_signature_headers_are_refused(signature: str, timestamp: str, why: str) -> None:
    headers = {"telnyx-signature-ed25519": signature, "telnyx-timestamp": timestamp}
    with pytest.raises(CallbackRefused, match=why) as refused:
        adapter().verify_callback(callback(PINNED_BODY, headers=headers))
    assert refused.value.status_code == 401


def test_refusals_never_carry_the_key() -> None:
    with pytest.raises(CallbackRefused) as refused:
        adapter().verify_callback(callback(PINNED_BODY, key=Ed25519PrivateKey.generate()))
    assert PUBLIC_KEY not in refused.value.reason
    assert API_KEY not in refused.value.reason


def test_there_is_no_handshake() -> None:
    with pytest.raises(CallbackRefused) as refused:
        adapter().handshake(callback(b""))
    assert refused.value.status_code == 405


# -- callback statuses -------------------------------------------------------------------------


def statuses(body: bytes, **kwargs: Any) -> list[CallbackStatus]:
    return adapter().read_callback(callback(body, **kwargs))


def test_the_pinned_finalized_event_reads_as_delivered() -> None:
    assert statuses(PINNED_BODY) == [
        CallbackStatus(
            provider_message_id="40385f64-5717-4562-b3fc-2c963f66afa6",
            message_uuid=UUID,
            status=MessageStatus.DELIVERED,
            occurred_at_ms=1_700_000_000_000,
            raw_status="delivered",
        )
    ]


@pytest.mark.parametrize(
    ("event_type", "word", "status"),
    [
        ("message.sent", "queued", MessageStatus.SUBMITTED),
        ("message.sent", "sending", MessageStatus.SUBMITTED),
        ("message.sent", "sent", MessageStatus.SUBMITTED),
        ("message.finalized", "delivered", MessageStatus.DELIVERED),
        ("message.finalized", "sending_failed", MessageStatus.REJECTED),
        ("message.finalized", "delivery_failed", MessageStatus.UNDELIVERABLE),
        ("message.finalized", "expired", MessageStatus.UNDELIVERABLE),
        ("message.finalized", "delivery_unconfirmed", None),
        ("message.finalized", "a_word_telnyx_adds_later", None),
    ],
)
def test_each_telnyx_status_word_maps_to_its_dispatch_status(
    event_type: str, word: str, status: MessageStatus | None
) -> None:
    [read_back] = statuses(event(word, event_type=event_type))
    assert (read_back.status, read_back.raw_status) == (status, word)
    assert read_back.occurred_at_ms == 1_700_000_001_250


def test_a_failure_carries_telnyx_error_code_and_text() -> None:
    errors = [{"code": "40008", "title": "Undeliverable", "detail": "Carrier did not accept."}]
    [failed] = statuses(event("delivery_failed", errors=errors))
    assert failed.error == MessageError(code=40008, reason="Undeliverable: Carrier did not accept.")


def test_an_error_without_a_numeric_code_keeps_its_text() -> None:
    [failed] = statuses(event("sending_failed", errors=[{"code": "x1", "title": "Odd"}]))
    assert failed.error == MessageError(code=0, reason="Odd")


def test_the_price_is_read_only_in_eur() -> None:
    [eur] = statuses(event("delivered", cost={"amount": "0.0040", "currency": "EUR"}))
    [usd] = statuses(event("delivered", cost={"amount": "0.0040", "currency": "USD"}))
    [odd] = statuses(event("delivered", cost={"amount": "n/a", "currency": "EUR"}))
    [nan] = statuses(event("delivered", cost={"amount": "NaN", "currency": "EUR"}))
    assert (eur.price, usd.price, odd.price, nan.price) == ("0.0040", None, None, None)


@pytest.mark.parametrize(
    ("occurred_at", "expected_ms"),
    [
        ("2023-11-14T22:13:21Z", 1_700_000_001_000),
        ("2023-11-14T23:13:21.5+01:00", 1_700_000_001_500),
        ("2023-11-14T22:13:21.123456", 1_700_000_001_123),  # no offset: UTC
        ("yesterday", 1_700_000_001_500),  # unreadable: when it arrived
        (None, 1_700_000_001_500),
    ],
)
def test_occurred_at_is_read_as_iso_8601_else_the_arrival_time(
    occurred_at: str | None, expected_ms: int
) -> None:
    [read_back] = statuses(event("delivered", occurred_at=occurred_at))
    assert read_back.occurred_at_ms == expected_ms


def test_without_our_reference_the_message_uuid_is_none() -> None:
    [read_back] = statuses(event("delivered"), query=[("other", "1")])
    assert read_back.message_uuid is None


def test_inbound_and_other_events_are_acknowledged_and_ignored() -> None:
    assert statuses(event("delivered", event_type="message.received")) == []
    assert statuses(b'{"data":{"event_type":"call.initiated","payload":{}}}') == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"meta":{}}',
        b'{"data":{"event_type":"message.sent"}}',
        b'{"data":{"event_type":"message.sent","payload":{"to":[{"status":"sent"}]}}}',
        b'{"data":{"event_type":"message.sent","payload":{"id":"m1","to":[]}}}',
        b'{"data":{"event_type":"message.sent","payload":{"id":"m1","to":[{"status":3}]}}}',
    ],
)
def test_an_unreadable_status_callback_is_a_400(body: bytes) -> None:
    with pytest.raises(CallbackRefused) as refused:
        statuses(body)
    assert refused.value.status_code == 400
