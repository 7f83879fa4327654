"""The WhatsApp Cloud adapter, pure: requests byte for byte, answers, callbacks, handshake."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

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
    hash_setting,
)
from opendispatch.providers.whatsapp_cloud import (
    KIND,
    PROVIDER_SIDE_CODES,
    THROTTLING_CODES,
    TRANSIENT_CODES,
    WhatsAppCloudAccount,
)

PHONE_NUMBER_ID = "106540352242922"
TOKEN = "EAAGtest-token"
APP_SECRET = "0123456789abcdef0123456789abcdef"
VERIFY_TOKEN = "my-verify-token"
VERIFY_TOKEN_HASH = hash_setting(VERIFY_TOKEN)  # scrypt: once for the module
UUID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
NOW_MS = 1_750_000_000_000
URL = f"https://graph.test/v23.0/{PHONE_NUMBER_ID}/messages"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
ENVELOPE = b'{"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900000",'
REFERENCE = b'"biz_opaque_callback_data":"' + UUID.encode() + b'"}'


def account(**settings: str) -> WhatsAppCloudAccount:
    values = {
        "phone_number_id": PHONE_NUMBER_ID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN_HASH,
    } | settings
    return WhatsAppCloudAccount(
        AccountConfig(
            name="wa", kind="whatsapp-cloud", base_url="https://graph.test", settings=values
        )
    )


def outbound(
    content: dict[str, Any], *, channel: str = "whatsapp", **options: Any
) -> OutboundMessage:
    return OutboundMessage(
        message_uuid=UUID,
        dispatch_uuid="dddddddd-0000-4000-8000-000000000000",
        channel=channel,
        to={"type": channel, "number": "447700900000"},
        from_={"type": channel, "number": "447700900001"},
        message={"content": content, **options},
        attempt=1,
    )


def request_for(content: dict[str, Any], **options: Any) -> HttpRequest:
    made = account().send_request(outbound(content, **options), callback_url=None, now_ms=NOW_MS)
    assert isinstance(made, HttpRequest)
    return made


# -- the request -------------------------------------------------------------------------------


def test_text_is_posted_to_the_numbers_messages_with_the_bearer_token() -> None:
    made = request_for({"type": "text", "text": "Your code is 64873."})
    assert made.method == "POST"
    assert made.url == URL
    assert dict(made.headers) == HEADERS
    assert made.body == (
        ENVELOPE
        + b'"type":"text","text":{"body":"Your code is 64873.","preview_url":false},'
        + REFERENCE
    )


def test_text_is_utf8_json_not_escaped() -> None:
    made = request_for({"type": "text", "text": "Olá 👋"})
    assert '"body":"Olá 👋"'.encode() in made.body


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            {"type": "image", "image": {"url": "https://x.test/a.jpg", "caption": "Look"}},
            b'"type":"image","image":{"link":"https://x.test/a.jpg","caption":"Look"},',
        ),
        (
            {"type": "image", "image": {"url": "https://x.test/a.jpg"}},
            b'"type":"image","image":{"link":"https://x.test/a.jpg"},',
        ),
        (
            {"type": "audio", "audio": {"url": "https://x.test/a.mp3", "caption": "ignored"}},
            b'"type":"audio","audio":{"link":"https://x.test/a.mp3"},',
        ),
        (
            {"type": "video", "video": {"url": "https://x.test/v.mp4"}},
            b'"type":"video","video":{"link":"https://x.test/v.mp4"},',
        ),
        (
            {"type": "file", "file": {"url": "https://x.test/f.pdf", "caption": "Invoice"}},
            b'"type":"document","document":{"link":"https://x.test/f.pdf","caption":"Invoice"},',
        ),
        (
            {"type": "file", "file": {"url": "https://x.test/f.pdf", "name": "invoice.pdf"}},
            b'"type":"document","document":{"link":"https://x.test/f.pdf",'
            b'"filename":"invoice.pdf"},',
        ),
    ],
    ids=["image-caption", "image", "audio-no-caption", "video", "file-caption", "file-name"],
)
def test_media_is_sent_by_link(content: dict[str, Any], expected: bytes) -> None:
    assert request_for(content).body == ENVELOPE + expected + REFERENCE


def test_template_takes_the_name_after_vonages_hsm_namespace_and_the_locale_underscored() -> None:
    made = request_for(
        {
            "type": "template",
            "template": {
                "name": "whatsapp:hsm:technology:vonage:verify",
                "parameters": [{"default": "64873"}, {"default": "10"}],
            },
        },
        whatsapp={"policy": "deterministic", "locale": "en-GB"},
    )
    assert made.body == (
        ENVELOPE + b'"type":"template","template":{"name":"verify",'
        b'"language":{"code":"en_GB","policy":"deterministic"},'
        b'"components":[{"type":"body","parameters":[{"type":"text","text":"64873"},'
        b'{"type":"text","text":"10"}]}]},' + REFERENCE
    )


def test_template_without_locale_is_en_us_and_without_parameters_has_no_components() -> None:
    made = request_for({"type": "template", "template": {"name": "hello_world"}})
    assert made.body == (
        ENVELOPE + b'"type":"template","template":{"name":"hello_world",'
        b'"language":{"code":"en_US","policy":"deterministic"}},' + REFERENCE
    )


def test_fallback_policy_is_sent_as_deterministic_the_only_one_meta_has() -> None:
    made = request_for(
        {"type": "template", "template": {"name": "x"}}, whatsapp={"policy": "fallback"}
    )
    assert json.loads(made.body)["template"]["language"]["policy"] == "deterministic"


def test_custom_is_laid_over_the_request_but_addressing_and_reference_stay_ours() -> None:
    custom = {
        "type": "interactive",
        "interactive": {"type": "button", "action": {"buttons": []}},
        "to": "999",
        "messaging_product": "sms",
        "biz_opaque_callback_data": "theirs",
    }
    made = request_for({"type": "custom", "custom": custom})
    assert json.loads(made.body) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "447700900000",
        "type": "interactive",
        "interactive": {"type": "button", "action": {"buttons": []}},
        "biz_opaque_callback_data": UUID,
    }


def test_callback_url_changes_nothing_meta_uses_the_apps_url() -> None:
    message = outbound({"type": "text", "text": "hi"})
    adapter = account()
    with_url = adapter.send_request(message, callback_url="https://od.test/cb", now_ms=NOW_MS)
    without = adapter.send_request(message, callback_url=None, now_ms=NOW_MS)
    assert with_url == without
    assert isinstance(with_url, HttpRequest)
    assert b"od.test" not in with_url.body


def test_api_version_setting_goes_into_the_path() -> None:
    made = account(api_version="v21.0").send_request(
        outbound({"type": "text", "text": "hi"}), callback_url=None, now_ms=NOW_MS
    )
    assert isinstance(made, HttpRequest)
    assert made.url == f"https://graph.test/v21.0/{PHONE_NUMBER_ID}/messages"


@pytest.mark.parametrize("channel", ["sms", "mms", "messenger", "viber_service_msg"])
def test_other_channels_cannot_be_carried(channel: str) -> None:
    made = account().send_request(
        outbound({"type": "text", "text": "hi"}, channel=channel), callback_url=None, now_ms=0
    )
    assert isinstance(made, Rejected)
    assert made.provider_side
    assert made.error.code == CAPABILITY_CODE
    assert channel in made.error.reason


@pytest.mark.parametrize(
    "content",
    [{"type": "sticker", "sticker": {"url": "https://x.test/s.webp"}}, {"type": "custom"}],
    ids=["unknown-type", "custom-without-object"],
)
def test_content_it_cannot_express_is_refused_as_provider_side(content: dict[str, Any]) -> None:
    made = account().send_request(outbound(content), callback_url=None, now_ms=0)
    assert isinstance(made, Rejected)
    assert made.provider_side
    assert made.error.code == CAPABILITY_CODE


# -- the answer --------------------------------------------------------------------------------


def answer(status: int, body: Any = b"", **headers: str) -> Accepted | Rejected | Unavailable:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got = HttpAnswer(status=status, headers=headers, body=raw)
    return account().read_answer(outbound({"type": "text", "text": "x"}), got, now_ms=NOW_MS)


def graph(code: int, message: str = "(#1) boom", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}


def test_200_is_accepted_with_the_wamid() -> None:
    body = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "447700900000", "wa_id": "447700900000"}],
        "messages": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA"}],
    }
    assert answer(200, body) == Accepted(
        provider_message_id="wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA"
    )


def test_2xx_without_a_readable_id_is_still_accepted_callbacks_carry_our_reference() -> None:
    assert answer(200, b"<html>") == Accepted(provider_message_id="")


def test_expired_token_is_a_provider_side_rejection_with_metas_code() -> None:
    got = answer(401, graph(190, "Invalid OAuth access token", error_subcode=463))
    assert got == Rejected(
        error=MessageError(code=190, reason="Invalid OAuth access token"), provider_side=True
    )


@pytest.mark.parametrize("code", [*sorted(PROVIDER_SIDE_CODES), 200, 250, 299])
def test_account_and_permission_codes_are_provider_side(code: int) -> None:
    got = answer(400, graph(code))
    assert isinstance(got, Rejected)
    assert got.provider_side
    assert got.error.code == code


def test_a_phone_number_id_that_does_not_exist_is_provider_side() -> None:
    got = answer(400, graph(100, "Unsupported post request.", error_subcode=33))
    assert isinstance(got, Rejected)
    assert got.provider_side
    assert got.error.code == 100


@pytest.mark.parametrize(
    "code", [100, 131008, 131009, 131021, 131026, 131030, 131047, 131051, 132000, 132001]
)
def test_recipient_and_message_codes_are_final(code: int) -> None:
    got = answer(400, graph(code))
    assert isinstance(got, Rejected)
    assert not got.provider_side
    assert got.error.code == code


def test_reason_is_metas_message_with_its_details() -> None:
    body = graph(
        131030,
        "(#131030) Recipient phone number not in allowed list",
        error_data={"messaging_product": "whatsapp", "details": "Add it and try again."},
        fbtrace_id="Az8or2yhqkZfEZ-_4Qn_Bam",
    )
    got = answer(400, body)
    assert isinstance(got, Rejected)
    assert got.error == MessageError(
        code=131030,
        reason="(#131030) Recipient phone number not in allowed list: Add it and try again.",
    )


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
def test_throttling_codes_are_unavailable_throttled_whatever_the_http_status(code: int) -> None:
    got = answer(400, graph(code))
    assert isinstance(got, Unavailable)
    assert got.throttled
    assert got.retry_after_ms is None


def test_429_without_a_hint_is_throttled_without_a_wait() -> None:
    got = answer(429, graph(4, "Application request limit reached", error_subcode=2446079))
    assert got == Unavailable(
        reason="Application request limit reached", throttled=True, retry_after_ms=None
    )


def test_429_without_a_body_is_throttled() -> None:
    got = answer(429, b"")
    assert isinstance(got, Unavailable)
    assert got.throttled


def test_retry_after_seconds_is_the_wait() -> None:
    got = answer(429, graph(130429), **{"retry-after": "7"})
    assert isinstance(got, Unavailable)
    assert got.retry_after_ms == 7000


def test_retry_after_http_date_is_counted_from_now() -> None:
    at = datetime.fromtimestamp((NOW_MS + 30_000) / 1000, tz=UTC)
    got = answer(429, graph(130429), **{"retry-after": format_datetime(at, usegmt=True)})
    assert isinstance(got, Unavailable)
    assert got.retry_after_ms == 30_000


def test_business_use_case_usage_estimate_in_minutes_is_the_wait() -> None:
    usage = {
        "102290129340398": [
            {"type": "whatsapp_business_management", "estimated_time_to_regain_access": 0},
            {"type": "whatsapp", "call_count": 100, "estimated_time_to_regain_access": 3},
        ]
    }
    got = answer(429, graph(130429), **{"x-business-use-case-usage": json.dumps(usage)})
    assert isinstance(got, Unavailable)
    assert got.retry_after_ms == 180_000


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "soon"},
        {"x-business-use-case-usage": "{not json"},
        {"x-business-use-case-usage": '{"1":[{"estimated_time_to_regain_access":true}]}'},
        {"x-business-use-case-usage": '["a"]'},
    ],
)
def test_unreadable_hints_give_no_wait(headers: dict[str, str]) -> None:
    got = answer(429, graph(130429), **headers)
    assert isinstance(got, Unavailable)
    assert got.retry_after_ms is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable_even_unreadable(status: int) -> None:
    got = answer(status, b"\xff\xfe")
    assert isinstance(got, Unavailable)
    assert not got.throttled


@pytest.mark.parametrize("code", sorted(TRANSIENT_CODES))
def test_transient_codes_are_unavailable(code: int) -> None:
    got = answer(400, graph(code))
    assert isinstance(got, Unavailable)
    assert not got.throttled


def test_a_5xx_naming_an_account_problem_is_a_provider_side_rejection() -> None:
    got = answer(500, graph(131045, "(#131045) Incorrect certificate"))
    assert isinstance(got, Rejected)
    assert got.provider_side


@pytest.mark.parametrize(("status", "provider_side"), [(400, False), (401, True), (403, True)])
def test_unreadable_4xx_is_classified_by_status(status: int, provider_side: bool) -> None:
    got = answer(status, b"not json")
    assert isinstance(got, Rejected)
    assert got.error.code == status
    assert got.provider_side is provider_side


# -- callbacks ---------------------------------------------------------------------------------


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}", "content-type": "application/json"}


def callback(
    body: bytes, headers: dict[str, str] | None = None, *, method: str = "POST", query: Any = ()
) -> CallbackRequest:
    return CallbackRequest(
        method=method,
        url="https://od.test/v0.1/providers/wa/callbacks",
        query=list(query),
        headers=signed(body) if headers is None else headers,
        body=body,
        received_at_ms=NOW_MS,
    )


def webhook(*statuses: dict[str, Any], phone_number_id: str = PHONE_NUMBER_ID) -> bytes:
    """A status webhook as Meta's reference shows it."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "statuses": list(statuses),
    }
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(document).encode()


def status(word: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        "status": word,
        "timestamp": "1750000123",
        "recipient_id": "447700900000",
        "biz_opaque_callback_data": UUID,
        **extra,
    }


def test_the_node_sdks_published_signature_vector_verifies() -> None:
    # WhatsApp-Nodejs-SDK src/__tests__/utils.test.ts: HMAC-SHA256("TEST_APP_SECRET", "test").
    known = "0c61947b610d4f45e65f3d680e26027121ec2413e77598bcb6cfc6e0d9888221"
    adapter = account(app_secret="TEST_APP_SECRET")
    adapter.verify_callback(callback(b"test", {"x-hub-signature-256": f"sha256={known}"}))


def test_a_signed_callback_verifies() -> None:
    account().verify_callback(callback(webhook(status("sent"))))


def test_uppercase_hex_signature_verifies() -> None:
    body = webhook(status("sent"))
    headers = {"x-hub-signature-256": signed(body)["x-hub-signature-256"].upper()}
    account().verify_callback(callback(body, headers))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-hub-signature-256": ""},
        {"x-hub-signature-256": "sha256=" + "0" * 64},
        {"x-hub-signature-256": signed(b"{}")["x-hub-signature-256"].removeprefix("sha256=")},
        {"x-hub-signature-256": "sha256=é"},
        {"x-hub-signature": "sha1=" + "0" * 40},
    ],
    ids=["unsigned", "empty", "wrong", "no-prefix", "non-ascii", "sha1-only"],
)
def test_unsigned_or_wrongly_signed_callbacks_are_refused_401(headers: dict[str, str]) -> None:
    with pytest.raises(CallbackRefused) as refused:
        account().verify_callback(callback(b"{}", headers))
    assert refused.value.status_code == 401


def test_a_callback_signed_with_another_secret_is_refused_and_the_secret_not_told() -> None:
    body = webhook(status("delivered"))
    with pytest.raises(CallbackRefused) as refused:
        account().verify_callback(callback(body, signed(body, secret="forged")))
    assert refused.value.status_code == 401
    assert APP_SECRET not in refused.value.reason
    assert hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest() not in str(refused.value)


def test_a_tampered_body_is_refused() -> None:
    body = webhook(status("delivered"))
    tampered = body.replace(b'"delivered"', b'"read"')
    with pytest.raises(CallbackRefused):
        account().verify_callback(callback(tampered, signed(body)))


def test_each_status_is_read_with_our_reference_and_metas_time() -> None:
    got = account().read_callback(
        callback(webhook(status("sent"), status("delivered"), status("read")))
    )
    wamid = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
    assert got == [
        CallbackStatus(
            provider_message_id=wamid,
            message_uuid=UUID,
            status=expected,
            occurred_at_ms=1_750_000_123_000,
            raw_status=word,
        )
        for word, expected in [
            ("sent", MessageStatus.SUBMITTED),
            ("delivered", MessageStatus.DELIVERED),
            ("read", MessageStatus.READ),
        ]
    ]


def test_failed_is_rejected_with_errors_0_as_the_error_and_no_price() -> None:
    failure = {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {
            "details": "Message failed to send because more than 24 hours have passed "
            "since the customer last replied to this number."
        },
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
    (got,) = account().read_callback(callback(webhook(status("failed", errors=[failure]))))
    assert got.status is MessageStatus.REJECTED
    assert got.error == MessageError(
        code=131047,
        reason="Re-engagement message: Message failed to send because more than 24 hours "
        "have passed since the customer last replied to this number.",
    )
    assert got.price is None


def test_failed_without_errors_has_no_error() -> None:
    (got,) = account().read_callback(callback(webhook(status("failed"))))
    assert got.status is MessageStatus.REJECTED
    assert got.error is None


@pytest.mark.parametrize("word", ["deleted", "warning", "played", "something-new"])
def test_statuses_without_dispatch_meaning_are_acknowledged_with_none(word: str) -> None:
    (got,) = account().read_callback(callback(webhook(status(word))))
    assert got.status is None
    assert got.raw_status == word


def test_a_status_without_reference_or_timestamp_uses_none_and_the_arrival_time() -> None:
    item = status("delivered")
    del item["biz_opaque_callback_data"], item["timestamp"]
    (got,) = account().read_callback(callback(webhook(item)))
    assert got.message_uuid is None
    assert got.occurred_at_ms == NOW_MS


def test_statuses_of_another_number_of_the_app_are_not_read() -> None:
    body = webhook(status("delivered"), phone_number_id="999999999999999")
    assert account().read_callback(callback(body)) == []


def test_inbound_messages_and_other_fields_are_ignored() -> None:
    inbound = json.loads(webhook())
    value = inbound["entry"][0]["changes"][0]["value"]
    del value["statuses"]
    value["contacts"] = [{"profile": {"name": "Kerry"}, "wa_id": "447700900000"}]
    value["messages"] = [
        {
            "from": "447700900000",
            "id": "wamid.ID",
            "timestamp": "1750000200",
            "text": {"body": "hi"},
            "type": "text",
        }
    ]
    inbound["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "x"}})
    assert account().read_callback(callback(json.dumps(inbound).encode())) == []


def test_another_object_is_not_ours() -> None:
    body = json.dumps({"object": "page", "entry": []}).encode()
    assert account().read_callback(callback(body)) == []


def test_every_entry_and_change_is_read_in_order() -> None:
    document = json.loads(webhook(status("sent")))
    second = json.loads(webhook(status("delivered")))
    document["entry"].append(second["entry"][0])
    document["entry"][0]["changes"].append(second["entry"][0]["changes"][0])
    got = account().read_callback(callback(json.dumps(document).encode()))
    assert [s.raw_status for s in got] == ["sent", "delivered", "delivered"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"object":"whatsapp_business_account"}',
        b'{"object":"whatsapp_business_account","entry":[1]}',
        b'{"object":"whatsapp_business_account","entry":[{"changes":["x"]}]}',
        webhook({"status": "sent"}),
        webhook("sent"),  # type: ignore[arg-type]
    ],
    ids=["not-json", "array", "no-entry", "entry-not-object", "change-not-object", "no-id", "str"],
)
def test_malformed_callbacks_are_refused_400(body: bytes) -> None:
    with pytest.raises(CallbackRefused) as refused:
        account().read_callback(callback(body))
    assert refused.value.status_code == 400


# -- the verification handshake ----------------------------------------------------------------


def handshake(*query: tuple[str, str]) -> bytes:
    return account().handshake(callback(b"", {}, method="GET", query=query))


def test_handshake_echoes_the_challenge_exactly_when_the_token_matches() -> None:
    got = handshake(
        ("hub.mode", "subscribe"),
        ("hub.challenge", "1158201444"),
        ("hub.verify_token", VERIFY_TOKEN),
    )
    assert got == b"1158201444"


@pytest.mark.parametrize(
    ("query", "status_code"),
    [
        ([("hub.mode", "subscribe"), ("hub.challenge", "1"), ("hub.verify_token", "nope")], 403),
        ([("hub.mode", "subscribe"), ("hub.challenge", "1")], 403),
        (
            [
                ("hub.mode", "unsubscribe"),
                ("hub.challenge", "1"),
                ("hub.verify_token", VERIFY_TOKEN),
            ],
            400,
        ),
        ([("hub.challenge", "1"), ("hub.verify_token", VERIFY_TOKEN)], 400),
        ([("hub.mode", "subscribe"), ("hub.verify_token", VERIFY_TOKEN)], 400),
        (
            [("hub.mode", "subscribe"), ("hub.challenge", ""), ("hub.verify_token", VERIFY_TOKEN)],
            400,
        ),
    ],
    ids=["wrong-token", "no-token", "wrong-mode", "no-mode", "no-challenge", "empty-challenge"],
)
def test_handshake_refusals(query: list[tuple[str, str]], status_code: int) -> None:
    with pytest.raises(CallbackRefused) as refused:
        handshake(*query)
    assert refused.value.status_code == status_code
    assert VERIFY_TOKEN not in refused.value.reason


def test_handshake_reads_the_first_of_repeated_parameters() -> None:
    got = handshake(
        ("hub.mode", "subscribe"),
        ("hub.challenge", "first"),
        ("hub.verify_token", VERIFY_TOKEN),
        ("hub.challenge", "second"),
        ("hub.verify_token", "nope"),
    )
    assert got == b"first"


# -- the kind and its settings -----------------------------------------------------------------


def test_kind_carries_whatsapp_at_metas_default_80_per_second() -> None:
    assert KIND.name == "whatsapp-cloud"
    assert KIND.channels == frozenset({"whatsapp"})
    assert KIND.default_rate_per_s == 80.0
    assert KIND.default_base_url == "https://graph.facebook.com"


def test_settings_keep_credentials_secret_and_the_verify_token_hashed() -> None:
    def setting(key: str) -> Any:
        found = KIND.setting(key)
        assert found is not None
        return found

    assert setting("access_token").secret
    assert setting("access_token").required
    assert setting("app_secret").secret
    assert setting("app_secret").required
    assert setting("verify_token").hashed
    assert setting("verify_token").required
    assert setting("phone_number_id").required
    assert not setting("phone_number_id").secret
    assert not setting("api_version").required


GOOD = {
    "phone_number_id": PHONE_NUMBER_ID,
    "access_token": TOKEN,
    "app_secret": APP_SECRET,
    "verify_token": VERIFY_TOKEN,
}


@pytest.mark.parametrize("values", [GOOD, GOOD | {"api_version": "v24.0"}])
def test_good_settings_pass(values: dict[str, str]) -> None:
    KIND.check_settings(values)


@pytest.mark.parametrize("key", sorted(GOOD))
def test_each_required_setting_is_named_when_missing(key: str) -> None:
    values = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(ValueError, match=key):
        KIND.check_settings(values)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"phone_number_id": "+15550783881"}, "phone_number_id"),
        ({"phone_number_id": "abc"}, "phone_number_id"),
        ({"api_version": "23.0"}, "api_version"),
        ({"api_version": "v23"}, "api_version"),
        ({"access_token": "EAA token"}, "access_token"),
        ({"app_secret": "abc\ndef"}, "app_secret"),
    ],
)
def test_malformed_settings_are_refused_naming_the_key(change: dict[str, str], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        KIND.check_settings(GOOD | change)


def test_the_adapter_is_built_from_the_kind() -> None:
    config = AccountConfig(
        name="wa",
        kind="whatsapp-cloud",
        base_url=KIND.default_base_url,
        settings=GOOD | {"verify_token": VERIFY_TOKEN_HASH},
    )
    made = KIND.adapter(config).send_request(
        outbound({"type": "text", "text": "hi"}), callback_url=None, now_ms=0
    )
    assert isinstance(made, HttpRequest)
    assert made.url == f"https://graph.facebook.com/v23.0/{PHONE_NUMBER_ID}/messages"
