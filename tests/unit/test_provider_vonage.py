"""The Vonage adapter, pure: exact requests, answer classification, signed callbacks, settings."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import Accepted, OutboundMessage, Rejected, Unavailable
from opendispatch.providers.kinds import (
    CAPABILITY_CODE,
    AccountConfig,
    CallbackRefused,
    CallbackRequest,
    CallbackStatus,
    HttpAnswer,
    HttpRequest,
)
from opendispatch.providers.vonage import KIND, VonageAdapter

MESSAGE_UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
VONAGE_UUID = "d8f86df1-dec6-442f-870a-2241be27d721"  # the SDK's send_message.json
APPLICATION_ID = "11111111-2222-3333-4444-555555555555"
SIGNATURE_SECRET = "signature-secret-" + "s" * 47  # 64 bytes: long enough for HS512 too
CALLBACK_URL = "https://od.example/v0.1/providers/vonage-eu/callbacks"
NOW_MS = 1_577_887_200_000  # 2020-01-01T14:00:00.000Z

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_KEY = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
PUBLIC_KEY = _KEY.public_key()

JWT_SETTINGS = {
    "application_id": APPLICATION_ID,
    "private_key": PRIVATE_KEY,
    "signature_secret": SIGNATURE_SECRET,
}
BASIC_SETTINGS = {
    "api_key": "abcd1234",
    "api_secret": "s3cr3t",
    "signature_secret": SIGNATURE_SECRET,
}


def adapter(settings: dict[str, str] | None = None) -> VonageAdapter:
    return VonageAdapter(
        AccountConfig(
            name="vonage-eu",
            kind="vonage",
            base_url="https://api.nexmo.com",
            settings=JWT_SETTINGS if settings is None else settings,
        )
    )


def outbound(
    channel: str,
    content: dict[str, Any],
    *,
    to: dict[str, str] | None = None,
    from_: dict[str, str] | None = None,
    **options: Any,
) -> OutboundMessage:
    return OutboundMessage(
        message_uuid=MESSAGE_UUID,
        dispatch_uuid="bbbbbbbb-bbbb-cccc-dddd-0123456789ab",
        channel=channel,
        to=to or {"type": channel, "number": "447700900000"},
        from_=from_ or {"type": channel, "number": "447700900001"},
        message={"content": content, **options},
        attempt=1,
    )


SMS = outbound("sms", {"type": "text", "text": "Your code is 64873."})


def request_of(message: OutboundMessage, *, callback_url: str | None = CALLBACK_URL) -> HttpRequest:
    request = adapter().send_request(message, callback_url=callback_url, now_ms=NOW_MS)
    assert isinstance(request, HttpRequest)
    return request


def body_of(message: OutboundMessage) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request_of(message).body)
    return body


# What every body ends with.
TAIL: dict[str, Any] = {
    "client_ref": MESSAGE_UUID,
    "webhook_url": CALLBACK_URL,
    "webhook_version": "v1",
}


# -- the request -------------------------------------------------------------------------------


def test_sms_text_request_is_the_documented_post_byte_for_byte() -> None:
    request = request_of(SMS)
    assert request.method == "POST"
    assert request.url == "https://api.nexmo.com/v1/messages"
    assert {k: v for k, v in request.headers.items() if k != "Authorization"} == {
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    assert request.body == (
        b'{"to":"447700900000","from":"447700900001","channel":"sms","message_type":"text",'
        b'"text":"Your code is 64873.","client_ref":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab",'
        b'"webhook_url":"https://od.example/v0.1/providers/vonage-eu/callbacks",'
        b'"webhook_version":"v1"}'
    )


def test_without_a_public_url_no_webhook_url_is_sent() -> None:
    request = request_of(SMS, callback_url=None)
    assert json.loads(request.body) == {
        "to": "447700900000",
        "from": "447700900001",
        "channel": "sms",
        "message_type": "text",
        "text": "Your code is 64873.",
        "client_ref": MESSAGE_UUID,
        "webhook_version": "v1",
    }


def test_unicode_text_is_sent_as_utf8_not_escaped() -> None:
    body = request_of(outbound("sms", {"type": "text", "text": "Grüße ✓"})).body
    assert "Grüße ✓".encode() in body


def test_base_url_of_the_account_is_used() -> None:
    config = AccountConfig(
        name="eu", kind="vonage", base_url="https://api-eu.vonage.com", settings=JWT_SETTINGS
    )
    request = VonageAdapter(config).send_request(SMS, callback_url=None, now_ms=NOW_MS)
    assert isinstance(request, HttpRequest)
    assert request.url == "https://api-eu.vonage.com/v1/messages"


@pytest.mark.parametrize(
    ("message", "content"),
    [
        pytest.param(
            outbound("mms", {"type": "image", "image": {"url": "https://x.test/a.jpg"}}),
            {"message_type": "image", "image": {"url": "https://x.test/a.jpg"}},
            id="mms-image",
        ),
        pytest.param(
            outbound(
                "mms", {"type": "image", "image": {"url": "https://x.test/a.jpg", "caption": "Hi"}}
            ),
            {"message_type": "image", "image": {"url": "https://x.test/a.jpg", "caption": "Hi"}},
            id="mms-image-caption",
        ),
        pytest.param(
            outbound("mms", {"type": "audio", "audio": {"url": "https://x.test/a.mp3"}}),
            {"message_type": "audio", "audio": {"url": "https://x.test/a.mp3"}},
            id="mms-audio",
        ),
        pytest.param(
            outbound("whatsapp", {"type": "text", "text": "Hello"}),
            {"message_type": "text", "text": "Hello"},
            id="whatsapp-text",
        ),
        pytest.param(
            outbound(
                "whatsapp",
                {"type": "image", "image": {"url": "https://x.test/a.png", "caption": "Look"}},
            ),
            {"message_type": "image", "image": {"url": "https://x.test/a.png", "caption": "Look"}},
            id="whatsapp-image",
        ),
        pytest.param(
            outbound("whatsapp", {"type": "audio", "audio": {"url": "https://x.test/a.aac"}}),
            {"message_type": "audio", "audio": {"url": "https://x.test/a.aac"}},
            id="whatsapp-audio",
        ),
        pytest.param(
            outbound("whatsapp", {"type": "video", "video": {"url": "https://x.test/a.mp4"}}),
            {"message_type": "video", "video": {"url": "https://x.test/a.mp4"}},
            id="whatsapp-video",
        ),
        pytest.param(
            outbound(
                "whatsapp",
                {"type": "file", "file": {"url": "https://x.test/a.pdf", "caption": "Invoice"}},
            ),
            {"message_type": "file", "file": {"url": "https://x.test/a.pdf", "caption": "Invoice"}},
            id="whatsapp-file",
        ),
        pytest.param(
            outbound(
                "messenger",
                {"type": "image", "image": {"url": "https://x.test/a.png", "caption": "Shown?"}},
                to={"type": "messenger", "id": "0123456789012345"},
                from_={"type": "messenger", "id": "5432109876543210"},
            ),
            # Vonage's Messenger media carries a url only; Dispatch says captions are WhatsApp
            # and MMS only.
            {"message_type": "image", "image": {"url": "https://x.test/a.png"}},
            id="messenger-image-no-caption",
        ),
        pytest.param(
            outbound(
                "messenger",
                {"type": "file", "file": {"url": "https://x.test/a.zip"}},
                to={"type": "messenger", "id": "0123456789012345"},
                from_={"type": "messenger", "id": "5432109876543210"},
            ),
            {"message_type": "file", "file": {"url": "https://x.test/a.zip"}},
            id="messenger-file",
        ),
    ],
)
def test_content_becomes_the_message_type_and_its_object(
    message: OutboundMessage, content: dict[str, Any]
) -> None:
    body = body_of(message)
    assert body["channel"] == message.channel
    assert {k: v for k, v in body.items() if k not in ("to", "from", "channel")} == {
        **content,
        **TAIL,
    }


def test_whatsapp_template_sends_default_values_and_underscore_locale() -> None:
    message = outbound(
        "whatsapp",
        {
            "type": "template",
            "template": {
                "name": "whatsapp:hsm:technology:vonage:verify",
                "parameters": [{"default": "Vonage"}, {"default": "64873"}],
            },
        },
        whatsapp={"policy": "deterministic", "locale": "en-GB"},
    )
    assert request_of(message).body == (
        b'{"to":"447700900000","from":"447700900001","channel":"whatsapp",'
        b'"message_type":"template","template":{"name":"whatsapp:hsm:technology:vonage:verify",'
        b'"parameters":["Vonage","64873"]},"whatsapp":{"policy":"deterministic",'
        b'"locale":"en_GB"},"client_ref":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab",'
        b'"webhook_url":"https://od.example/v0.1/providers/vonage-eu/callbacks",'
        b'"webhook_version":"v1"}'
    )


def test_whatsapp_template_without_options_uses_vonage_default_locale() -> None:
    body = body_of(outbound("whatsapp", {"type": "template", "template": {"name": "t"}}))
    assert body["template"] == {"name": "t"}
    assert body["whatsapp"] == {"policy": "deterministic", "locale": "en_US"}


def test_whatsapp_fallback_policy_is_sent_as_deterministic() -> None:
    message = outbound(
        "whatsapp",
        {"type": "template", "template": {"name": "t", "parameters": []}},
        whatsapp={"policy": "fallback", "locale": "pt-BR"},
    )
    body = body_of(message)
    assert body["template"] == {"name": "t", "parameters": []}
    assert body["whatsapp"] == {"policy": "deterministic", "locale": "pt_BR"}


def test_whatsapp_options_are_not_sent_with_free_text() -> None:
    message = outbound("whatsapp", {"type": "text", "text": "Hi"}, whatsapp={"locale": "en-GB"})
    assert "whatsapp" not in body_of(message)


def test_viber_goes_as_viber_service_with_its_options() -> None:
    message = outbound(
        "viber_service_msg",
        {"type": "text", "text": "Hello"},
        from_={"type": "viber_service_msg", "id": "MyBrand"},
        viber_service_msg={"category": "transaction", "ttl": 600},
    )
    assert request_of(message).body == (
        b'{"to":"447700900000","from":"MyBrand","channel":"viber_service","message_type":"text",'
        b'"text":"Hello","viber_service":{"category":"transaction","ttl":600},'
        b'"client_ref":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab",'
        b'"webhook_url":"https://od.example/v0.1/providers/vonage-eu/callbacks",'
        b'"webhook_version":"v1"}'
    )


def test_viber_image_keeps_its_caption_and_omits_empty_options() -> None:
    message = outbound(
        "viber_service_msg",
        {"type": "image", "image": {"url": "https://x.test/a.jpg", "caption": "New"}},
        from_={"type": "viber_service_msg", "id": "MyBrand"},
        viber_service_msg={},
    )
    body = body_of(message)
    assert body["image"] == {"url": "https://x.test/a.jpg", "caption": "New"}
    assert "viber_service" not in body


def test_messenger_sends_ids_and_its_options() -> None:
    message = outbound(
        "messenger",
        {"type": "text", "text": "Ticket updated"},
        to={"type": "messenger", "id": "0123456789012345"},
        from_={"type": "messenger", "id": "5432109876543210"},
        messenger={"category": "message_tag", "tag": "CONFIRMED_EVENT_UPDATE"},
    )
    assert request_of(message).body == (
        b'{"to":"0123456789012345","from":"5432109876543210","channel":"messenger",'
        b'"message_type":"text","text":"Ticket updated",'
        b'"messenger":{"category":"message_tag","tag":"CONFIRMED_EVENT_UPDATE"},'
        b'"client_ref":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab",'
        b'"webhook_url":"https://od.example/v0.1/providers/vonage-eu/callbacks",'
        b'"webhook_version":"v1"}'
    )


@pytest.mark.parametrize(
    ("channel", "content"),
    [
        ("sms", {"type": "image", "image": {"url": "https://x.test/a.jpg"}}),
        ("sms", {"type": "template", "template": {"name": "t"}}),
        ("mms", {"type": "text", "text": "Hi"}),
        ("mms", {"type": "file", "file": {"url": "https://x.test/a.pdf"}}),
        ("viber_service_msg", {"type": "video", "video": {"url": "https://x.test/a.mp4"}}),
        ("messenger", {"type": "template", "template": {"name": "t"}}),
        ("whatsapp", {"type": "custom", "custom": {}}),
    ],
)
def test_content_a_vonage_channel_cannot_carry_is_a_capability_refusal(
    channel: str, content: dict[str, Any]
) -> None:
    result = adapter().send_request(outbound(channel, content), callback_url=None, now_ms=NOW_MS)
    assert isinstance(result, Rejected)
    assert result.provider_side
    assert result.error.code == CAPABILITY_CODE
    assert content["type"] in result.error.reason


def test_a_channel_vonage_does_not_know_is_a_capability_refusal() -> None:
    result = adapter().send_request(
        outbound("rcs", {"type": "text", "text": "Hi"}), callback_url=None, now_ms=NOW_MS
    )
    assert isinstance(result, Rejected)
    assert result.error.code == CAPABILITY_CODE


def test_a_message_missing_its_content_object_is_the_message_fault() -> None:
    result = adapter().send_request(
        outbound("whatsapp", {"type": "image"}), callback_url=None, now_ms=NOW_MS
    )
    assert isinstance(result, Rejected)
    assert not result.provider_side
    assert result.error.code == 1010


# -- authentication ----------------------------------------------------------------------------


def test_application_auth_is_an_rs256_jwt_with_the_sdk_claims() -> None:
    authorization = request_of(SMS).headers["Authorization"]
    scheme, token = authorization.split(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}
    claims = jwt.decode(token, PUBLIC_KEY, algorithms=["RS256"], options={"verify_exp": False})
    assert set(claims) == {"application_id", "iat", "jti", "exp"}
    assert claims["application_id"] == APPLICATION_ID
    assert claims["iat"] == NOW_MS // 1000
    assert claims["exp"] == claims["iat"] + 900
    assert uuid.UUID(claims["jti"]).version == 4


def test_application_jwt_is_reused_until_a_minute_before_expiry() -> None:
    vonage = adapter()

    def token(now_ms: int) -> str:
        request = vonage.send_request(SMS, callback_url=None, now_ms=now_ms)
        assert isinstance(request, HttpRequest)
        return request.headers["Authorization"]

    first = token(NOW_MS)
    assert token(NOW_MS + 1_000) == first
    assert token(NOW_MS + 839_999) == first  # 840 s: within 60 s of exp = iat + 900
    renewed = token(NOW_MS + 840_000)
    assert renewed != first
    claims = jwt.decode(renewed.split(" ")[1], PUBLIC_KEY, algorithms=["RS256"], leeway=10**10)
    assert claims["iat"] == NOW_MS // 1000 + 840
    assert token(NOW_MS + 840_000 + 5_000) == renewed


def test_application_jwt_is_renewed_when_the_clock_goes_back() -> None:
    vonage = adapter()
    first = vonage.send_request(SMS, callback_url=None, now_ms=NOW_MS)
    earlier = vonage.send_request(SMS, callback_url=None, now_ms=NOW_MS - 10_000)
    assert isinstance(first, HttpRequest)
    assert isinstance(earlier, HttpRequest)
    assert first.headers["Authorization"] != earlier.headers["Authorization"]


def test_api_key_and_secret_auth_is_basic() -> None:
    request = adapter(BASIC_SETTINGS).send_request(SMS, callback_url=None, now_ms=NOW_MS)
    assert isinstance(request, HttpRequest)
    expected = base64.b64encode(b"abcd1234:s3cr3t").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


def test_application_auth_is_preferred_when_both_are_set() -> None:
    request = adapter({**BASIC_SETTINGS, **JWT_SETTINGS}).send_request(
        SMS, callback_url=None, now_ms=NOW_MS
    )
    assert isinstance(request, HttpRequest)
    assert request.headers["Authorization"].startswith("Bearer ")


# -- the answer --------------------------------------------------------------------------------


def answer(
    status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> Accepted | Rejected | Unavailable:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return adapter().read_answer(
        SMS, HttpAnswer(status=status, headers=headers or {}, body=raw), now_ms=NOW_MS
    )


def problem(code: int | str, title: str = "Invalid params", detail: str = "Bad.") -> dict[str, Any]:
    return {
        "type": f"https://developer.vonage.com/api-errors/messages#{code}",
        "title": title,
        "detail": detail,
        "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
    }


def test_202_is_accepted_with_vonage_message_uuid() -> None:
    assert answer(202, {"message_uuid": VONAGE_UUID}) == Accepted(provider_message_id=VONAGE_UUID)


def test_unreadable_2xx_is_still_accepted() -> None:
    assert answer(202, b"<html>") == Accepted(provider_message_id="")


def test_sdk_invalid_error_is_a_message_side_rejection_with_its_code() -> None:
    # messages/tests/data/invalid_error.json of the Python SDK.
    body = {
        "type": "https://developer.vonage.com/api-errors/messages#1150",
        "title": "Invalid params",
        "detail": "The value of one or more parameters is invalid.",
        "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        "invalid_parameters": [{"name": "messenger.tag", "reason": "invalid value"}],
    }
    assert answer(422, body) == Rejected(
        error=MessageError(
            code=1150, reason="Invalid params: The value of one or more parameters is invalid."
        ),
        provider_side=False,
    )


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        pytest.param(
            401,
            {
                "type": "https://developer.nexmo.com/api-errors#unauthorized",
                "title": "Unauthorized",
                "detail": "You did not provide correct credentials.",
            },
            401,
            id="401-sdk",
        ),
        pytest.param(
            402,
            {
                "type": "https://developer.nexmo.com/api-errors/#low-balance",
                "title": "Low balance",
                "detail": "This request could not be performed due to your account balance "
                "being low.",
            },
            402,
            id="402-low-balance-sdk",
        ),
        pytest.param(
            403,
            {
                "type": "https://developer.vonage.com/api-errors#forbidden",
                "title": "Forbidden",
                "detail": "Your account does not have permission to perform this action.",
            },
            403,
            id="403-sdk",
        ),
        pytest.param(404, {"title": "Not Found"}, 404, id="404-wrong-endpoint"),
        pytest.param(
            400,
            {"type": "https://developer.vonage.com/api-errors#account-suspended", "title": "x"},
            400,
            id="account-suspended",
        ),
        pytest.param(401, b"", 401, id="401-empty-body"),
    ],
)
def test_credential_balance_and_account_errors_are_provider_side(
    status: int, body: dict[str, Any] | bytes, code: int
) -> None:
    result = answer(status, body)
    assert isinstance(result, Rejected)
    assert result.provider_side
    assert result.error.code == code
    if isinstance(body, dict):
        assert result.error.reason.startswith(body["title"])


@pytest.mark.parametrize("code", [1030, 1060, 1070, 1080, 1100, 1120, 1140, 1160])
def test_vonage_account_codes_are_provider_side(code: int) -> None:
    result = answer(422, problem(code, "Account", "Not allowed."))
    assert result == Rejected(
        error=MessageError(code=code, reason="Account: Not allowed."), provider_side=True
    )


@pytest.mark.parametrize("code", [1010, 1020, 1021, 1022, 1040, 1050, 1090, 1130, 1150])
def test_vonage_recipient_and_message_codes_are_final(code: int) -> None:
    result = answer(422, problem(code))
    assert result == Rejected(
        error=MessageError(code=code, reason="Invalid params: Bad."), provider_side=False
    )


def test_4xx_without_a_readable_body_is_classified_by_status() -> None:
    result = answer(400, b"Bad Request")
    assert result == Rejected(
        error=MessageError(code=400, reason="Vonage answered HTTP 400"), provider_side=False
    )


def test_429_rate_limit_hit_is_throttled_without_hint() -> None:
    # http_client/tests/data/429.json of the Python SDK.
    body = {
        "title": "Rate Limit Hit",
        "type": "https://developer.vonage.com/api-errors#rate-limit",
        "detail": "Please wait, then retry your request",
        "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
    }
    assert answer(429, body) == Unavailable(
        reason="Rate Limit Hit: Please wait, then retry your request", throttled=True
    )


@pytest.mark.parametrize(
    ("retry_after", "expected_ms"),
    [
        ("2", 2_000),
        ("0.5", 500),
        ("Wed, 01 Jan 2020 14:00:30 GMT", 30_000),  # NOW_MS is 14:00:00
        ("Wed, 01 Jan 2020 13:59:00 GMT", 0),
        ("soon", None),
        ("inf", None),
        ("-5", 0),
        ("", None),
    ],
)
def test_429_reads_retry_after_as_seconds_or_http_date(
    retry_after: str, expected_ms: int | None
) -> None:
    result = answer(429, b"", {"retry-after": retry_after})
    assert isinstance(result, Unavailable)
    assert result.throttled
    assert result.retry_after_ms == expected_ms


def test_vonage_throttled_code_1000_is_throttled_whatever_the_status() -> None:
    result = answer(400, problem(1000, "Throttled", "Wait."), {"retry-after": "3"})
    assert result == Unavailable(reason="Throttled: Wait.", throttled=True, retry_after_ms=3_000)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            500,
            {"type": "https://developer.vonage.com/api-errors", "title": "Internal Server Error"},
        ),
        (503, b"upstream connect error"),
        (502, b""),
    ],
)
def test_5xx_is_unavailable_and_not_throttled(status: int, body: dict[str, Any] | bytes) -> None:
    result = answer(status, body)
    assert isinstance(result, Unavailable)
    assert not result.throttled
    assert str(status) in result.reason


# -- callbacks: signatures ---------------------------------------------------------------------

CALLBACK_BODY = json.dumps(
    {
        "message_uuid": VONAGE_UUID,
        "to": "447700900000",
        "from": "447700900001",
        "timestamp": "2020-01-01T14:00:00.000Z",
        "status": "delivered",
        "channel": "sms",
        "client_ref": MESSAGE_UUID,
    }
).encode()


def vonage_token(
    body: bytes = CALLBACK_BODY,
    *,
    iat: int | None = NOW_MS // 1000,
    secret: str = SIGNATURE_SECRET,
    algorithm: str = "HS256",
    **overrides: object,
) -> str:
    claims: dict[str, object] = {
        "iat": iat,
        "jti": "0b4b0a7e-9a5e-4b8e-8d7e-2f6d1b0c3a11",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": "abcd1234",
        "application_id": APPLICATION_ID,
    }
    claims.update(overrides)
    claims = {key: value for key, value in claims.items() if value is not None}
    return jwt.encode(claims, secret, algorithm=algorithm)


SIGNED = "<signed as Vonage signs>"


def callback(
    body: bytes = CALLBACK_BODY,
    *,
    authorization: str | None = SIGNED,
    received_at_ms: int = NOW_MS + 1_500,
) -> CallbackRequest:
    headers = {"content-type": "application/json"}
    if authorization is SIGNED:
        authorization = "Bearer " + vonage_token(body)
    if authorization is not None:
        headers["authorization"] = authorization
    return CallbackRequest(
        method="POST",
        url=CALLBACK_URL,
        query=(),
        headers=headers,
        body=body,
        received_at_ms=received_at_ms,
    )


def refusal(request: CallbackRequest) -> CallbackRefused:
    with pytest.raises(CallbackRefused) as refused:
        adapter().verify_callback(request)
    assert SIGNATURE_SECRET not in refused.value.reason
    return refused.value


def test_a_callback_signed_as_vonage_signs_verifies() -> None:
    adapter().verify_callback(callback())


def test_basic_only_account_verifies_callbacks_too() -> None:
    adapter(BASIC_SETTINGS).verify_callback(callback())


@pytest.mark.parametrize("skew_s", [-300, 300])
def test_iat_within_300_s_of_arrival_either_way_verifies(skew_s: int) -> None:
    adapter().verify_callback(callback(received_at_ms=NOW_MS + skew_s * 1000))


@pytest.mark.parametrize("skew_s", [-301, 301, 86_400])
def test_iat_more_than_300_s_from_arrival_is_stale(skew_s: int) -> None:
    refused = refusal(callback(received_at_ms=NOW_MS + skew_s * 1000))
    assert refused.status_code == 401
    assert "stale" in refused.reason


def test_unsigned_callback_is_answered_503_so_vonage_resends_it_signed() -> None:
    assert refusal(callback(authorization=None)).status_code == 503


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer " + vonage_token(secret="another-secret-" + "a" * 50), id="forged"),
        pytest.param("Bearer " + vonage_token(CALLBACK_BODY + b" "), id="hash-of-other-body"),
        pytest.param("Bearer " + vonage_token(payload_hash="0" * 64), id="wrong-hash"),
        pytest.param("Bearer " + vonage_token(payload_hash=None), id="no-payload-hash"),
        pytest.param("Bearer " + vonage_token(iat=None), id="no-iat"),
        pytest.param("Bearer " + vonage_token(algorithm="HS512"), id="other-hmac-algorithm"),
        pytest.param(
            "Bearer "
            + jwt.encode(
                {"iat": NOW_MS // 1000, "payload_hash": hashlib.sha256(CALLBACK_BODY).hexdigest()},
                "",
                algorithm="none",
            ),
            id="alg-none",
        ),
        pytest.param("Bearer not.a.jwt", id="garbage"),
        pytest.param("Bearer ", id="empty-bearer"),
        pytest.param("", id="empty-header"),
        pytest.param("Basic YWJjZDEyMzQ6czNjcjN0", id="basic"),
        pytest.param(vonage_token(), id="no-scheme"),
    ],
)
def test_forged_or_malformed_signatures_are_refused_401(authorization: str) -> None:
    assert refusal(callback(authorization=authorization)).status_code == 401


def test_tampered_body_is_refused() -> None:
    signed = callback()
    tampered = CallbackRequest(
        method=signed.method,
        url=signed.url,
        query=signed.query,
        headers=signed.headers,
        body=signed.body.replace(b"delivered", b"read\x20\x20\x20\x20\x20"),
        received_at_ms=signed.received_at_ms,
    )
    assert refusal(tampered).status_code == 401


def test_sdk_verify_vector_has_a_valid_signature_but_is_not_a_vonage_callback() -> None:
    # jwt/tests/test_verify_jwt.py of the Python SDK: an HS256 token and its secret. The
    # signature is good, but it has no payload_hash: nothing binds it to a body.
    token = (
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJPbmxpbmUgSldUIEJ1aWxkZXIiLCJpYXQiOjE2"
        "OTc2MzQ2ODAsImV4cCI6MzMyNTQ1NDA4MjgsImF1ZCI6IiIsInN1YiI6IiJ9.88vJc3I2HhuqEDixHXVhc9R30t"
        "A6U_HQHZTC29y6CGM"
    )
    secret = "qwertyuiopasdfghjklzxcvbnm123456"
    assert jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    vonage = adapter({**JWT_SETTINGS, "signature_secret": secret})
    request = callback(authorization=f"Bearer {token}", received_at_ms=1_697_634_680_000)
    with pytest.raises(CallbackRefused) as refused:
        vonage.verify_callback(request)
    assert refused.value.status_code == 401


def test_handshake_is_refused_405() -> None:
    with pytest.raises(CallbackRefused) as refused:
        adapter().handshake(callback())
    assert refused.value.status_code == 405


# -- callbacks: statuses -----------------------------------------------------------------------


def read(body: dict[str, Any] | bytes, *, received_at_ms: int = NOW_MS + 1_500) -> list[Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return adapter().read_callback(callback(raw, received_at_ms=received_at_ms))


def status_body(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "message_uuid": VONAGE_UUID,
        "to": "447700900000",
        "from": "447700900001",
        "timestamp": "2020-01-01T14:00:00.000Z",
        "status": status,
        "channel": "whatsapp",
        "client_ref": MESSAGE_UUID,
        **fields,
    }


def test_delivered_callback_reads_our_reference_and_vonage_time() -> None:
    assert read(CALLBACK_BODY) == [
        CallbackStatus(
            provider_message_id=VONAGE_UUID,
            message_uuid=MESSAGE_UUID,
            status=MessageStatus.DELIVERED,
            occurred_at_ms=NOW_MS,
            raw_status="delivered",
        )
    ]


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("submitted", MessageStatus.SUBMITTED),
        ("delivered", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
        ("rejected", MessageStatus.REJECTED),
        ("undeliverable", MessageStatus.UNDELIVERABLE),
        ("accepted", MessageStatus.SUBMITTED),
        ("buffered", None),
        ("expired", MessageStatus.REJECTED),
        ("failed", MessageStatus.REJECTED),
        ("unknown", MessageStatus.REJECTED),
        ("deleted", None),  # a word we do not know: acknowledged, not applied
    ],
)
def test_status_words_map_to_dispatch_statuses(word: str, status: MessageStatus | None) -> None:
    [reported] = read(status_body(word))
    assert reported.status == status
    assert reported.raw_status == word


def test_rejected_callback_error_code_comes_from_the_type() -> None:
    error = {
        "type": "https://developer.vonage.com/api-errors/messages#1050",
        "title": "Number barred",
        "detail": "The number you are trying to submit to is blacklisted.",
        "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
    }
    [reported] = read(status_body("rejected", error=error))
    assert reported.error == MessageError(
        code=1050, reason="Number barred: The number you are trying to submit to is blacklisted."
    )


def test_error_whose_title_is_the_bare_code_keeps_the_detail() -> None:
    error = {
        "type": "https://developer.nexmo.com/api-errors/messages-olympus#1000",
        "title": 1000,
        "detail": "Throttled - You have exceeded the submission capacity allowed on this account.",
    }
    [reported] = read(status_body("undeliverable", error=error))
    assert reported.error == MessageError(
        code=1000,
        reason="Throttled - You have exceeded the submission capacity allowed on this account.",
    )


def test_v01_error_shape_is_read_too() -> None:
    error = {"code": 1300, "reason": "Not part of the provider network"}
    [reported] = read(status_body("rejected", error=error))
    assert reported.error == MessageError(code=1300, reason="Not part of the provider network")


def test_error_without_a_numeric_code_is_recorded_as_unknown_failure() -> None:
    [reported] = read(status_body("rejected", error={"title": "Rejected", "detail": "By carrier"}))
    assert reported.error == MessageError(code=1330, reason="Rejected: By carrier")


@pytest.mark.parametrize(("word", "code"), [("expired", 1360), ("unknown", 1330)])
def test_sms_receipts_without_error_get_the_documented_codes(word: str, code: int) -> None:
    [reported] = read(status_body(word))
    assert reported.error is not None
    assert reported.error.code == code


def test_errors_on_non_failure_statuses_are_ignored() -> None:
    [reported] = read(status_body("delivered", error={"type": "x#1000", "title": "T"}))
    assert reported.error is None


def test_failure_without_error_has_no_error() -> None:
    [reported] = read(status_body("rejected"))
    assert reported.error is None


@pytest.mark.parametrize(
    ("usage", "price"),
    [
        ({"currency": "EUR", "price": "0.0333"}, "0.0333"),
        ({"currency": "EUR", "price": 0.0333}, "0.0333"),
        ({"currency": "EUR", "price": "0.03330"}, "0.03330"),
        ({"currency": "EUR", "price": 1e-05}, "0.00001"),
        ({"currency": "USD", "price": "0.0400"}, None),
        ({"price": "0.0333"}, None),
        ({"currency": "EUR", "price": "free"}, None),
        ({"currency": "EUR", "price": "NaN"}, None),
        ("0.0333", None),
    ],
)
def test_price_is_read_only_when_stated_in_euros(usage: Any, price: str | None) -> None:
    [reported] = read(status_body("submitted", usage=usage))
    assert reported.price == price


def test_callback_without_client_ref_has_no_message_uuid() -> None:
    body = status_body("delivered")
    del body["client_ref"]
    [reported] = read(body)
    assert reported.message_uuid is None
    assert reported.provider_message_id == VONAGE_UUID


@pytest.mark.parametrize(
    ("timestamp", "expected_ms"),
    [
        ("2020-01-01T14:00:00.123Z", NOW_MS + 123),
        ("2020-01-01T15:00:00+01:00", NOW_MS),
        ("2020-01-01T14:00:00", NOW_MS),  # no zone: UTC
        ("yesterday", NOW_MS + 1_500),  # unreadable: the arrival time
        (None, NOW_MS + 1_500),
    ],
)
def test_occurred_at_comes_from_the_timestamp_else_the_arrival(
    timestamp: str | None, expected_ms: int
) -> None:
    body = status_body("delivered")
    if timestamp is None:
        del body["timestamp"]
    else:
        body["timestamp"] = timestamp
    [reported] = read(body)
    assert reported.occurred_at_ms == expected_ms


def test_inbound_message_reports_no_status() -> None:
    inbound = {
        "message_uuid": VONAGE_UUID,
        "to": "447700900001",
        "from": "447700900000",
        "channel": "sms",
        "message_type": "text",
        "text": "STOP",
        "timestamp": "2020-01-01T14:00:00.000Z",
    }
    assert read(inbound) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"status": "delivered"}).encode(),
        json.dumps({"message_uuid": VONAGE_UUID}).encode(),
        json.dumps({"message_uuid": VONAGE_UUID, "status": 3}).encode(),
    ],
)
def test_unreadable_callback_is_refused_400(body: bytes) -> None:
    with pytest.raises(CallbackRefused) as refused:
        read(body)
    assert refused.value.status_code == 400


# -- the kind and its settings -----------------------------------------------------------------


def test_kind_declares_channels_rate_and_settings() -> None:
    assert KIND.name == "vonage"
    assert KIND.default_base_url == "https://api.nexmo.com"
    assert KIND.default_rate_per_s == 30.0
    assert KIND.channels == {"sms", "mms", "whatsapp", "viber_service_msg", "messenger"}
    secrets = {setting.key for setting in KIND.settings if setting.secret}
    assert secrets == {"private_key", "api_secret", "signature_secret"}
    signature_secret = KIND.setting("signature_secret")
    assert signature_secret is not None
    assert signature_secret.required
    assert isinstance(
        KIND.adapter(
            AccountConfig(
                name="a", kind="vonage", base_url="http://127.0.0.1:1", settings=JWT_SETTINGS
            )
        ),
        VonageAdapter,
    )


@pytest.mark.parametrize(
    "settings", [JWT_SETTINGS, BASIC_SETTINGS, {**JWT_SETTINGS, **BASIC_SETTINGS}]
)
def test_settings_with_a_way_to_authenticate_and_verify_pass(settings: dict[str, str]) -> None:
    KIND.check_settings(settings)


def _ec_key() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"application_id": APPLICATION_ID, "private_key": PRIVATE_KEY}, "signature_secret"),
        ({**JWT_SETTINGS, "signature_secret": " "}, "signature_secret"),
        ({"signature_secret": SIGNATURE_SECRET}, "api_key and api_secret"),
        ({"api_key": "abcd1234", "signature_secret": SIGNATURE_SECRET}, "api_secret"),
        ({**BASIC_SETTINGS, "application_id": APPLICATION_ID}, "private_key"),
        ({**BASIC_SETTINGS, "private_key": PRIVATE_KEY}, "application_id"),
        ({**JWT_SETTINGS, "application_id": "my-app"}, "application_id"),
        ({**JWT_SETTINGS, "private_key": "not a key"}, "private_key"),
        ({**JWT_SETTINGS, "private_key": _ec_key()}, "private_key"),
        ({**JWT_SETTINGS, "private_key": PRIVATE_KEY.replace("PRIVATE", "PUBLIC")}, "private_key"),
    ],
)
def test_unusable_settings_are_refused_naming_the_keys(
    settings: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named) as refused:
        KIND.check_settings(settings)
    assert "vonage" in str(refused.value)
    assert PRIVATE_KEY not in str(refused.value)
