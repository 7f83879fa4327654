"""The Twilio adapter, pure: requests byte for byte, answers, callback signatures (with the
twilio-python SDK's own test vectors), statuses and settings."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import Accepted, OutboundMessage, Rejected, Unavailable
from opendispatch.providers.kinds import (
    CAPABILITY_CODE,
    AccountConfig,
    CallbackRefused,
    CallbackRequest,
    HttpAnswer,
    HttpRequest,
)
from opendispatch.providers.twilio import KIND, TwilioAdapter, check_settings
from tests.fakes.twilio import twilio_signature

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
API_KEY_SID = "SK" + "fedcba9876543210" * 2
API_KEY_SECRET = "key-secret-of-the-api-key"
SERVICE_SID = "MG" + "00112233445566778899aabbccddeeff"
MESSAGE_UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
CALLBACK_URL = "https://od.example.com/v0.1/providers/tw/callbacks"
NOW_MS = 1_700_000_000_000
MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
STATUS_CALLBACK = (
    "https%3A%2F%2Fod.example.com%2Fv0.1%2Fproviders%2Ftw%2Fcallbacks"
    "%3Fmessage_uuid%3Daaaaaaaa-bbbb-cccc-dddd-0123456789ab"
)

# twilio-python tests/unit/test_request_validator.py
SDK_TOKEN = "12345"
SDK_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
SDK_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]
SDK_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
SDK_JSON_BODY = b'{"property": "value", "boolean": true}'
SDK_BODY_SHA256 = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
SDK_JSON_SIGNATURE = "a9nBmqA0ju/hNViExpshrM61xv4="


def adapter(**settings: str) -> TwilioAdapter:
    values = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, **settings}
    values = {key: value for key, value in values.items() if value}
    config = AccountConfig(
        name="tw", kind="twilio", base_url="https://api.twilio.com", settings=values
    )
    return TwilioAdapter(config)


def outbound(
    channel: str = "sms",
    content: dict[str, Any] | None = None,
    *,
    to: str = "447700900000",
    sender: str = "447700900001",
) -> OutboundMessage:
    return OutboundMessage(
        message_uuid=MESSAGE_UUID,
        dispatch_uuid="dddddddd-0000-0000-0000-000000000000",
        channel=channel,
        to={"type": channel, "number": to},
        from_={"type": channel, "number": sender},
        message={"content": content or {"type": "text", "text": "Hello & welcome"}},
        attempt=1,
    )


def request_for(
    message: OutboundMessage, callback_url: str | None = CALLBACK_URL, **settings: str
) -> HttpRequest:
    request = adapter(**settings).send_request(message, callback_url=callback_url, now_ms=NOW_MS)
    assert isinstance(request, HttpRequest)
    return request


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def callback(
    url: str,
    body: bytes,
    signature: str | None,
    *,
    content_type: str = "application/x-www-form-urlencoded",
    received_at_ms: int = NOW_MS,
) -> CallbackRequest:
    headers = {"content-type": content_type}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    return CallbackRequest(
        method="POST",
        url=url,
        query=parse_qsl(urlsplit(url).query, keep_blank_values=True),
        headers=headers,
        body=body,
        received_at_ms=received_at_ms,
    )


def signed_callback(params: list[tuple[str, str]], *, url: str | None = None) -> CallbackRequest:
    url = url or f"{CALLBACK_URL}?message_uuid={MESSAGE_UUID}"
    return callback(url, urlencode(params).encode(), twilio_signature(AUTH_TOKEN, url, params))


def status_params(status: str, **extra: str) -> list[tuple[str, str]]:
    return [
        ("ApiVersion", "2010-04-01"),
        ("AccountSid", ACCOUNT_SID),
        ("SmsSid", "SM" + "1" * 32),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", "+447700900000"),
        ("MessageSid", "SM" + "1" * 32),
        ("From", "+447700900001"),
        *extra.items(),
    ]


def answer(status: int, body: Any = None, **headers: str) -> HttpAnswer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpAnswer(status=status, headers=headers, body=raw)


def error_body(code: int, message: str, status: int = 400) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def read(response: HttpAnswer) -> Accepted | Rejected | Unavailable:
    return adapter().read_answer(outbound(), response, now_ms=NOW_MS)


# -- the kind and its settings ----------------------------------------------------------------


def test_kind_describes_twilio_channels_secrets_and_default_rate() -> None:
    assert KIND.name == "twilio"
    assert KIND.default_base_url == "https://api.twilio.com"
    assert KIND.channels == frozenset({"sms", "mms", "whatsapp"})
    assert KIND.default_rate_per_s == 10.0
    secrets = {setting.key for setting in KIND.settings if setting.secret}
    assert secrets == {"auth_token", "api_key_secret"}
    required = {setting.key for setting in KIND.settings if setting.required}
    assert required == {"account_sid"}


@pytest.mark.parametrize(
    "values",
    [
        {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN},
        {"account_sid": ACCOUNT_SID, "api_key_sid": API_KEY_SID, "api_key_secret": "s"},
        {"account_sid": "AC" + "0123456789ABCDEF" * 2, "auth_token": "t"},
        {"account_sid": ACCOUNT_SID, "auth_token": "t", "messaging_service_sid": SERVICE_SID},
    ],
)
def test_settings_that_can_authenticate_are_accepted(values: dict[str, str]) -> None:
    check_settings(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_token": AUTH_TOKEN}, "twilio needs account_sid"),
        ({"account_sid": ACCOUNT_SID}, "twilio needs auth_token, or api_key_sid and api_key"),
        ({"account_sid": ACCOUNT_SID, "auth_token": ""}, "twilio needs auth_token, or"),
        ({"account_sid": "AC123", "auth_token": "t"}, "account_sid must be AC followed by 32"),
        ({"account_sid": "SK" + "0" * 32, "auth_token": "t"}, "account_sid must be AC"),
        (
            {"account_sid": ACCOUNT_SID, "api_key_sid": API_KEY_SID},
            "api_key_sid and api_key_secret together",
        ),
        (
            {"account_sid": ACCOUNT_SID, "auth_token": "t", "api_key_secret": "s"},
            "api_key_sid and api_key_secret together",
        ),
        (
            {"account_sid": ACCOUNT_SID, "api_key_sid": "AC" + "0" * 32, "api_key_secret": "s"},
            "api_key_sid must be SK followed by 32",
        ),
        (
            {"account_sid": ACCOUNT_SID, "auth_token": "t", "messaging_service_sid": "MG12"},
            "messaging_service_sid must be MG followed by 32",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_the_keys(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_settings(values)


def test_adapter_repr_shows_no_credentials() -> None:
    shown = repr(adapter(api_key_sid=API_KEY_SID, api_key_secret=API_KEY_SECRET))
    assert AUTH_TOKEN not in shown
    assert API_KEY_SECRET not in shown


# -- the request ------------------------------------------------------------------------------


def test_sms_text_is_the_documented_form_post_with_our_reference_in_the_callback() -> None:
    request = request_for(outbound())
    assert request.method == "POST"
    assert request.url == MESSAGES_URL
    assert request.headers == {
        "Authorization": basic(ACCOUNT_SID, AUTH_TOKEN),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    assert request.body == (
        b"To=%2B447700900000&From=%2B447700900001&Body=Hello+%26+welcome"
        b"&StatusCallback=" + STATUS_CALLBACK.encode()
    )


def test_api_key_authenticates_instead_of_the_auth_token_when_set() -> None:
    request = request_for(outbound(), api_key_sid=API_KEY_SID, api_key_secret=API_KEY_SECRET)
    assert request.headers["Authorization"] == basic(API_KEY_SID, API_KEY_SECRET)
    assert request.url == MESSAGES_URL  # the account stays in the path


def test_text_is_utf8_form_encoded() -> None:
    message = outbound(content={"type": "text", "text": "Grüße 👍 +1=2"})
    body = request_for(message, callback_url=None).body
    assert body == (
        b"To=%2B447700900000&From=%2B447700900001&Body=Gr%C3%BC%C3%9Fe+%F0%9F%91%8D+%2B1%3D2"
    )


def test_mms_image_sends_media_url_with_its_caption_as_body() -> None:
    content = {"type": "image", "image": {"url": "https://ex.com/a.jpg?s=1", "caption": "Look"}}
    body = request_for(outbound("mms", content), callback_url=None).body
    assert body == (
        b"To=%2B447700900000&From=%2B447700900001&Body=Look"
        b"&MediaUrl=https%3A%2F%2Fex.com%2Fa.jpg%3Fs%3D1"
    )


def test_whatsapp_text_addresses_carry_the_whatsapp_prefix() -> None:
    message = outbound("whatsapp", {"type": "text", "text": "Hi"})
    body = request_for(message).body
    assert body == (
        b"To=whatsapp%3A%2B447700900000&From=whatsapp%3A%2B447700900001&Body=Hi"
        b"&StatusCallback=" + STATUS_CALLBACK.encode()
    )


@pytest.mark.parametrize(
    ("kind", "media", "expected"),
    [
        ("image", {"url": "https://ex.com/i.png"}, [("MediaUrl", "https://ex.com/i.png")]),
        ("audio", {"url": "https://ex.com/a.mp3"}, [("MediaUrl", "https://ex.com/a.mp3")]),
        ("video", {"url": "https://ex.com/v.mp4"}, [("MediaUrl", "https://ex.com/v.mp4")]),
        (
            "file",
            {"url": "https://ex.com/f.pdf", "caption": "Your invoice"},
            [("Body", "Your invoice"), ("MediaUrl", "https://ex.com/f.pdf")],
        ),
    ],
)
def test_whatsapp_media_go_as_media_url(
    kind: str, media: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    message = outbound("whatsapp", {"type": kind, kind: media})
    fields = parse_qsl(request_for(message, callback_url=None).body.decode())
    assert fields == [
        ("To", "whatsapp:+447700900000"),
        ("From", "whatsapp:+447700900001"),
        *expected,
    ]


def test_messaging_service_replaces_from() -> None:
    fields = parse_qsl(request_for(outbound(), messaging_service_sid=SERVICE_SID).body.decode())
    assert fields[:2] == [("To", "+447700900000"), ("MessagingServiceSid", SERVICE_SID)]
    assert "From" not in dict(fields)


def test_callback_url_with_a_query_gets_the_reference_appended() -> None:
    fields = dict(parse_qsl(request_for(outbound(), f"{CALLBACK_URL}?a=1").body.decode()))
    assert fields["StatusCallback"] == f"{CALLBACK_URL}?a=1&message_uuid={MESSAGE_UUID}"


def test_no_status_callback_without_a_callback_url() -> None:
    fields = dict(parse_qsl(request_for(outbound(), callback_url=None).body.decode()))
    assert "StatusCallback" not in fields


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            outbound("whatsapp", {"type": "template", "template": {"name": "otp"}}),
            "ContentSid",
        ),
        (outbound("whatsapp", {"type": "custom", "custom": {}}), "custom"),
        (outbound("sms", {"type": "image", "image": {"url": "https://ex.com/i.png"}}), "image"),
        (outbound("viber_service_msg"), "viber_service_msg"),
        (outbound("messenger"), "messenger"),
    ],
)
def test_what_twilio_cannot_carry_is_a_provider_side_refusal(
    message: OutboundMessage, reason: str
) -> None:
    refused = adapter().send_request(message, callback_url=CALLBACK_URL, now_ms=NOW_MS)
    assert isinstance(refused, Rejected)
    assert refused.provider_side
    assert refused.error.code == CAPABILITY_CODE
    assert reason in refused.error.reason


# -- the answer -------------------------------------------------------------------------------


def test_created_message_is_accepted_with_its_sid() -> None:
    resource = {"sid": "SM" + "a" * 32, "status": "queued", "price": None, "price_unit": "USD"}
    assert read(answer(201, resource)) == Accepted(provider_message_id="SM" + "a" * 32)


def test_price_is_kept_only_when_stated_in_eur_as_a_positive_cost() -> None:
    eur = {"sid": "SM1", "price": "-0.07500", "price_unit": "EUR"}
    usd = {"sid": "SM1", "price": "-0.0075", "price_unit": "USD"}
    assert read(answer(201, eur)) == Accepted(provider_message_id="SM1", price="0.07500")
    assert read(answer(201, usd)) == Accepted(provider_message_id="SM1")


def test_created_with_an_unreadable_body_is_still_accepted() -> None:
    assert read(answer(201, b"<html>")) == Accepted(provider_message_id="")


@pytest.mark.parametrize(
    ("status", "code", "provider_side"),
    [
        (400, 21211, False),  # invalid To
        (400, 21610, False),  # recipient opted out
        (400, 21614, False),  # To not a mobile number
        (400, 21612, False),  # To unreachable
        (400, 21602, False),  # no body
        (400, 21910, False),  # To/From channel mismatch
        (400, 21408, True),  # Geo Permissions of the account
        (400, 21606, True),  # From not this account's message-capable number
        (400, 21608, True),  # trial account: unverified recipient
        (400, 21212, True),  # invalid From
        (400, 21659, True),  # From not a Twilio number
        (400, 21611, True),  # sender queue full
        (400, 21701, True),  # messaging service does not exist
        (400, 63007, True),  # no WhatsApp sender for From
        (401, 20003, True),  # credentials
        (403, 20403, True),
        (404, 20404, True),  # the account path
        (401, 99999, True),  # an unknown code on 401 is still about credentials
    ],
)
def test_refusals_keep_twilio_code_and_text_and_say_whose_fault(
    status: int, code: int, provider_side: bool
) -> None:
    result = read(answer(status, error_body(code, f"text of {code}", status)))
    assert result == Rejected(
        error=MessageError(code=code, reason=f"text of {code}"), provider_side=provider_side
    )


def test_refusal_in_rfc9457_shape_reads_code_and_detail() -> None:
    body = {"type": "https://x", "title": "Bad", "status": 400, "code": 21211, "detail": "To?"}
    assert read(answer(400, body)) == Rejected(error=MessageError(code=21211, reason="To?"))


@pytest.mark.parametrize(
    ("status", "provider_side"), [(400, False), (422, False), (401, True), (403, True)]
)
def test_refusal_with_an_unreadable_body_is_classified_by_status(
    status: int, provider_side: bool
) -> None:
    result = read(answer(status, b"\x00not json"))
    assert result == Rejected(
        error=MessageError(code=status, reason=f"HTTP {status} from Twilio"),
        provider_side=provider_side,
    )


def test_throttled_with_retry_after_seconds() -> None:
    result = read(answer(429, error_body(20429, "Too Many Requests", 429), **{"retry-after": "3"}))
    assert result == Unavailable(reason="Too Many Requests", throttled=True, retry_after_ms=3000)


def test_throttled_with_retry_after_as_an_http_date() -> None:
    # NOW_MS is 2023-11-14T22:13:20Z; the date is 5 s later.
    hint = {"retry-after": "Tue, 14 Nov 2023 22:13:25 GMT"}
    result = read(answer(429, error_body(20429, "Too Many Requests", 429), **hint))
    assert isinstance(result, Unavailable)
    assert result.retry_after_ms == 5000


@pytest.mark.parametrize("hint", [{}, {"retry-after": "soon"}, {"retry-after": "-1"}])
def test_throttled_without_a_usable_hint(hint: dict[str, str]) -> None:
    result = read(answer(429, b"", **hint))
    assert result == Unavailable(reason="HTTP 429 from Twilio", throttled=True)


def test_code_20429_is_throttling_whatever_the_status() -> None:
    result = read(answer(400, error_body(20429, "Too Many Requests")))
    assert result == Unavailable(reason="Too Many Requests", throttled=True)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_unavailable(status: int) -> None:
    assert read(answer(status, b"")) == Unavailable(reason=f"HTTP {status} from Twilio")
    body = error_body(20500, "Internal Server Error", status)
    assert read(answer(status, body)) == Unavailable(reason="Internal Server Error")


def test_a_redirect_is_a_provider_side_refusal() -> None:
    result = read(answer(301, b""))
    assert isinstance(result, Rejected)
    assert result.provider_side
    assert result.error.code == 301


# -- callback signatures ----------------------------------------------------------------------


def sdk_adapter() -> TwilioAdapter:
    return adapter(auth_token=SDK_TOKEN)


def test_sdk_golden_vector_is_accepted() -> None:
    sdk_adapter().verify_callback(callback(SDK_URL, urlencode(SDK_PARAMS).encode(), SDK_SIGNATURE))


def test_sdk_vector_with_repeated_values_sorts_and_drops_duplicates() -> None:
    body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234"
    sdk_adapter().verify_callback(callback(SDK_URL, body, "IK+Dwps556ElfBT0I3Rgjkr1wJU="))


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        # Signed without the port the request came to (any port is stripped, as the SDK does).
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", SDK_SIGNATURE),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        # Signed with the default port the request did not show.
        (SDK_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
    ],
)
def test_sdk_port_variants_are_accepted(url: str, signature: str) -> None:
    sdk_adapter().verify_callback(callback(url, urlencode(SDK_PARAMS).encode(), signature))


def test_sdk_json_body_vector_checks_the_body_hash_then_the_url_alone() -> None:
    url = f"{SDK_URL}&bodySHA256={SDK_BODY_SHA256}"
    request = callback(url, SDK_JSON_BODY, SDK_JSON_SIGNATURE, content_type="application/json")
    sdk_adapter().verify_callback(request)


def test_json_body_that_does_not_match_its_hash_is_refused() -> None:
    url = f"{SDK_URL}&bodySHA256={SDK_BODY_SHA256}"
    tampered = SDK_JSON_BODY.replace(b"true", b"false")
    with pytest.raises(CallbackRefused, match="bodySHA256") as refused:
        sdk_adapter().verify_callback(callback(url, tampered, SDK_JSON_SIGNATURE))
    assert refused.value.status_code == 401


def forged(request: CallbackRequest, **changes: Any) -> CallbackRequest:
    fields = {
        "method": request.method,
        "url": request.url,
        "query": request.query,
        "headers": request.headers,
        "body": request.body,
        "received_at_ms": request.received_at_ms,
        **changes,
    }
    return CallbackRequest(**fields)


GENUINE = signed_callback(status_params("delivered"))


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(
            forged(GENUINE, headers={"x-twilio-signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
            id="forged signature",
        ),
        pytest.param(forged(GENUINE, headers={}), id="unsigned"),
        pytest.param(forged(GENUINE, headers={"x-twilio-signature": ""}), id="empty signature"),
        pytest.param(
            forged(GENUINE, body=GENUINE.body.replace(b"delivered", b"failed")),
            id="tampered body",
        ),
        pytest.param(
            forged(GENUINE, body=GENUINE.body + b"&ErrorCode=30003"), id="added parameter"
        ),
        pytest.param(
            forged(GENUINE, url=GENUINE.url.replace("aaaaaaaa", "bbbbbbbb")),
            id="other message_uuid",
        ),
        pytest.param(
            forged(
                GENUINE,
                headers={
                    "x-twilio-signature": twilio_signature(
                        "another-token", GENUINE.url, status_params("delivered")
                    )
                },
            ),
            id="another account's token",
        ),
    ],
)
def test_callbacks_not_signed_by_this_account_are_refused(request_: CallbackRequest) -> None:
    adapter().verify_callback(GENUINE)  # the original passes
    with pytest.raises(CallbackRefused) as refused:
        adapter().verify_callback(request_)
    assert refused.value.status_code == 401
    assert AUTH_TOKEN not in refused.value.reason


def test_blank_values_are_signed_too() -> None:
    adapter().verify_callback(signed_callback(status_params("sent", Body="", ErrorCode="")))


def test_without_an_auth_token_every_callback_is_refused_saying_why() -> None:
    api_key_only = adapter(auth_token="", api_key_sid=API_KEY_SID, api_key_secret=API_KEY_SECRET)
    with pytest.raises(CallbackRefused, match="auth_token") as refused:
        api_key_only.verify_callback(GENUINE)
    assert refused.value.status_code == 401
    assert API_KEY_SECRET not in refused.value.reason


def test_handshake_is_not_supported() -> None:
    with pytest.raises(CallbackRefused) as refused:
        adapter().handshake(GENUINE)
    assert refused.value.status_code == 405


# -- callback statuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("queued", MessageStatus.SUBMITTED),
        ("accepted", MessageStatus.SUBMITTED),
        ("scheduled", MessageStatus.SUBMITTED),
        ("sending", MessageStatus.SUBMITTED),
        ("sent", MessageStatus.SUBMITTED),
        ("delivered", MessageStatus.DELIVERED),
        ("partially_delivered", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
        ("undelivered", MessageStatus.UNDELIVERABLE),
        ("failed", MessageStatus.REJECTED),
        ("canceled", MessageStatus.REJECTED),
        ("receiving", None),
        ("received", None),
        ("a_status_twilio_adds_later", None),
    ],
)
def test_twilio_status_words_map_to_dispatch_statuses(
    word: str, status: MessageStatus | None
) -> None:
    request = signed_callback(status_params(word))
    adapter().verify_callback(request)
    [reported] = adapter().read_callback(request)
    assert reported.status == status
    assert reported.raw_status == word
    assert reported.provider_message_id == "SM" + "1" * 32
    assert reported.message_uuid == MESSAGE_UUID
    assert reported.occurred_at_ms == NOW_MS  # no timestamp in Twilio's callbacks
    assert reported.error is None
    assert reported.price is None


@pytest.mark.parametrize(
    ("word", "status"),
    [("undelivered", MessageStatus.UNDELIVERABLE), ("failed", MessageStatus.REJECTED)],
)
def test_failures_carry_twilio_error_code(word: str, status: MessageStatus) -> None:
    [reported] = adapter().read_callback(signed_callback(status_params(word, ErrorCode="30003")))
    assert reported.status == status
    assert reported.error == MessageError(code=30003, reason="Twilio error 30003")


def test_error_code_on_a_success_is_not_an_error() -> None:
    [reported] = adapter().read_callback(signed_callback(status_params("sent", ErrorCode="0")))
    assert reported.error is None


def test_callback_without_our_reference_still_reads() -> None:
    request = signed_callback(status_params("sent"), url=CALLBACK_URL)
    [reported] = adapter().read_callback(request)
    assert reported.message_uuid is None


def test_legacy_sms_fields_are_read_when_message_fields_are_missing() -> None:
    params = [("SmsSid", "SM2"), ("SmsStatus", "delivered")]
    [reported] = adapter().read_callback(signed_callback(params))
    assert (reported.provider_message_id, reported.status) == ("SM2", MessageStatus.DELIVERED)


def test_json_variant_callback_is_read() -> None:
    body = json.dumps({"MessageSid": "SM3", "MessageStatus": "read"}).encode()
    url = f"{CALLBACK_URL}?message_uuid={MESSAGE_UUID}&bodySHA256=00"
    [reported] = adapter().read_callback(callback(url, body, None))
    assert (reported.provider_message_id, reported.status) == ("SM3", MessageStatus.READ)
    assert reported.message_uuid == MESSAGE_UUID


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"AccountSid=AC1&To=%2B1",
        urlencode(status_params("failed", ErrorCode="thirty")).encode(),
        b"\xff\xfe\x00",
    ],
)
def test_unreadable_callbacks_are_refused_as_bad_requests(body: bytes) -> None:
    with pytest.raises(CallbackRefused) as refused:
        adapter().read_callback(callback(CALLBACK_URL, body, None))
    assert refused.value.status_code == 400


def test_unreadable_json_variant_is_a_bad_request() -> None:
    url = f"{CALLBACK_URL}?bodySHA256=00"
    with pytest.raises(CallbackRefused) as refused:
        adapter().read_callback(callback(url, b"[1, 2]", None))
    assert refused.value.status_code == 400
