"""The validation table of `POST /v1/messages`: for each rule, a request it accepts and one it
refuses, with v1's name for the field and a reason a developer can act on. Both paths (the
fast one over raw bytes, the thorough one over the decoded document) must agree."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opendispatch.api.messages_v1.problems import MessagesProblem
from opendispatch.api.messages_v1.translate import workflow_document
from opendispatch.api.messages_v1.validation import (
    ValidMessages,
    validate_send_message,
    validate_send_message_json,
)


def sms(**fields: Any) -> dict[str, Any]:
    return {
        "channel": "sms",
        "message_type": "text",
        "to": "447700900000",
        "from": "447700900001",
        "text": "Hello",
        **fields,
    }


def whatsapp(**fields: Any) -> dict[str, Any]:
    return {**sms(), "channel": "whatsapp", **fields}


def valid(body: dict[str, Any]) -> ValidMessages:
    fast = validate_send_message_json(json.dumps(body).encode())
    thorough = validate_send_message(body)
    assert workflow_document(fast.messages) == workflow_document(thorough.messages)
    assert len(fast.messages) == len(thorough.messages)
    return fast


def refused(body: object) -> dict[str, str]:
    """The invalid parameters, by name, from both paths (which must agree)."""
    answers = []
    for validate in (
        lambda: validate_send_message_json(json.dumps(body).encode()),
        lambda: validate_send_message(body),
    ):
        with pytest.raises(MessagesProblem) as raised:
            validate()
        answers.append(raised.value)
    fast, thorough = answers
    assert fast.invalid_parameters == thorough.invalid_parameters
    assert fast.status == 422
    assert fast.title == "Invalid params"
    assert fast.type == "https://developer.vonage.com/api-errors/messages#1150"
    return {p.name: p.reason for p in fast.invalid_parameters}


# -- accepted: what the SDKs send -----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        sms(),
        sms(**{"from": "Vonage APIs"}),  # an alphanumeric SMS sender
        sms(client_ref="x" * 100, webhook_url="https://example.com/s", webhook_version="v1"),
        sms(webhook_version="v0.1", sms={"encoding_type": "unicode"}, ttl=600),
        whatsapp(text="x" * 4096),
        whatsapp(
            message_type="template",
            text=None,
            template={"name": "ns:verify", "parameters": ["64873"]},
            whatsapp={"locale": "en_US", "policy": "deterministic"},
        ),
        whatsapp(message_type="image", image={"url": "https://example.com/a.jpg", "caption": "c"}),
        whatsapp(message_type="audio", audio={"url": "https://example.com/a.mp3"}),
        whatsapp(message_type="video", video={"url": "https://example.com/a.mp4"}),
        whatsapp(message_type="file", file={"url": "https://example.com/a.pdf", "name": "a.pdf"}),
        {
            **sms(),
            "channel": "mms",
            "message_type": "image",
            "image": {"url": "https://e.com/a.png"},
        },
        {**sms(), "channel": "viber_service", "from": "Shop", "viber_service": {"ttl": 259_200}},
        {**sms(), "channel": "messenger", "to": "1234567", "from": "7654321", "text": "x" * 640},
        {
            **sms(),
            "channel": "messenger",
            "to": "1234567",
            "messenger": {"category": "message_tag", "tag": "ACCOUNT_UPDATE"},
        },
        whatsapp(
            failover=[
                sms(),
                sms(channel="mms", message_type="image", image={"url": "https://e.com/a.png"}),
            ]
        ),
        whatsapp(opendispatch={"expiry_time": 600, "condition_status": "read"}, failover=[sms()]),
        sms(context={"message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"}),  # passed on
        sms(failover=None, client_ref=None),  # null is absent, on both paths
    ],
)
def test_accepted(body: dict[str, Any]) -> None:
    accepted = valid(body)

    failover = body.get("failover") or []
    assert len(accepted.messages) == 1 + len(failover)
    assert (len(accepted.messages) > 1) == bool(failover)


# -- refused: one case per rule -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "name", "reason"),
    [
        ([], "body", "must be a JSON object"),
        ({k: v for k, v in sms().items() if k != "channel"}, "channel", "is required"),
        (sms(channel="fax"), "channel", "must be one of"),
        (sms(channel="rcs"), "channel", "rcs is not supported"),
        (sms(message_type="emoji"), "message_type", "must be one of"),
        (
            sms(message_type="image", image={"url": "https://e.com/a.png"}),
            "message_type",
            "sms image is not supported",
        ),
        (whatsapp(message_type="sticker"), "message_type", "whatsapp sticker is not supported"),
        ({k: v for k, v in sms().items() if k != "to"}, "to", "is required"),
        (sms(to="+447700900000"), "to", "E.164"),
        (sms(to=447700900000), "to", "must be a string"),
        (sms(**{"from": "Way Too Long Sender"}), "from", "sender id of 1 to 11"),
        (whatsapp(**{"from": "Shop"}), "from", "E.164"),
        ({**sms(), "channel": "messenger", "to": "x" * 51}, "to", "at most 50"),
        (
            {k: v for k, v in sms().items() if k != "text"},
            "text",
            "is required when message_type is text",
        ),
        (sms(text=""), "text", "must not be empty"),
        (sms(text="x" * 1001), "text", "at most 1000 characters for sms"),
        ({**sms(), "channel": "messenger", "to": "1", "text": "x" * 641}, "text", "at most 640"),
        (
            whatsapp(message_type="image", image={"url": "ftp://e.com/a.png"}),
            "image.url",
            "http or https",
        ),
        (
            whatsapp(message_type="template", template={"name": ""}),
            "template.name",
            "must not be empty",
        ),
        (
            whatsapp(message_type="template", template={"name": "t", "parameters": [1]}),
            "template.parameters[0]",
            "must be a string",
        ),
        (whatsapp(whatsapp={"locale": "english"}), "whatsapp.locale", "en_GB"),
        (sms(client_ref="x" * 101), "client_ref", "at most 100"),
        (sms(webhook_url="not a url"), "webhook_url", "http or https"),
        (sms(webhook_url="https://user:pw@example.com/s"), "webhook_url", "credentials"),
        (sms(webhook_version="v2"), "webhook_version", "must be one of: v0.1, v1"),
        (sms(sms={"encoding_type": "binary"}), "sms.encoding_type", "must be one of"),
        (
            {**sms(), "channel": "viber_service", "from": "S", "viber_service": {"ttl": 10}},
            "viber_service.ttl",
            "between 30 and 259200",
        ),
        (
            {**sms(), "channel": "messenger", "to": "1", "messenger": {"category": "message_tag"}},
            "messenger.tag",
            "is required when category is message_tag",
        ),
        (
            sms(opendispatch={"expiry_time": 5, "condition_status": "read"}),
            "opendispatch.expiry_time",
            "between 15 and 86400",
        ),
        (
            sms(opendispatch={"expiry_time": 60, "condition_status": "seen"}),
            "opendispatch.condition_status",
            "must be one of: delivered, read",
        ),
        (sms(failover=[]), "failover", "at least 1 message"),
        (sms(failover={}), "failover", "must be an array"),
        (sms(failover=[sms()] * 10), "failover", "at most 9 messages"),
        (sms(failover=["sms"]), "failover[0]", "must be an object"),
        (sms(failover=[sms(to="0123")]), "failover[0].to", "E.164"),
        (
            sms(failover=[sms(failover=[sms()])]),
            "failover[0].failover",
            "only allowed on the first message",
        ),
    ],
)
def test_refused(body: object, name: str, reason: str) -> None:
    found = refused(body)

    assert name in found, found
    assert reason in found[name]


def test_every_invalid_field_of_every_message_is_named_in_request_order() -> None:
    body = sms(text="", failover=[whatsapp(**{"from": "S"}), sms(channel="fax"), sms(to="0")])

    assert list(refused(body)) == [
        "text",
        "failover[0].from",
        "failover[1].channel",
        "failover[2].to",
    ]


# -- translation: what the engine and the providers read --------------------------------------


def test_a_v1_message_becomes_a_dispatch_step_with_its_v1_fields_beside() -> None:
    body = whatsapp(
        message_type="template",
        text=None,
        template={"name": "ns:verify", "parameters": ["64873"]},
        whatsapp={"locale": "en_GB"},
        client_ref="order-1",
        opendispatch={"expiry_time": 600, "condition_status": "read"},
        failover=[{**sms(), "channel": "viber_service", "from": "Shop", "ttl": 600}],
    )
    body = {key: value for key, value in body.items() if value is not None}

    document = json.loads(json.dumps(workflow_document(valid(body).messages)))

    assert document == {
        "template": "messages_v1",
        "workflow": [
            {
                "to": {"type": "whatsapp", "number": "447700900000"},
                "from": {"type": "whatsapp", "number": "447700900001"},
                "message": {
                    "content": {
                        "type": "template",
                        "template": {"name": "ns:verify", "parameters": [{"default": "64873"}]},
                    },
                    "whatsapp": {"locale": "en-GB"},
                },
                "failover": {"expiry_time": 600, "condition_status": "read"},
                "messages_v1": {"channel": "whatsapp", "client_ref": "order-1"},
            },
            {
                "to": {"type": "viber_service_msg", "number": "447700900000"},
                "from": {"type": "viber_service_msg", "id": "Shop"},
                "message": {"content": {"type": "text", "text": "Hello"}, "ttl": 600},
                "messages_v1": {"channel": "viber_service"},
            },
        ],
    }
