"""`opendispatch send`'s flags to the `POST /v0.1/dispatch` body: what each flag becomes, and
that what it builds passes the API's own validation."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest

from opendispatch.api.validation import validate_create_workflow_json
from opendispatch.cli.send import build_request


def built(**overrides: Any) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "steps": [("whatsapp", "447700900001"), ("sms", "447700900001")],
        "senders": (),
        "text": "Your code is 64873",
        "template": None,
        "parameters": (),
        "locale": None,
        "expiries": (600,),
        "conditions": ("read",),
        "sender_required": False,
    }
    return build_request(**{**flags, **overrides})


def test_the_issue_example_is_the_readme_workflow_and_is_valid():
    body = built()
    assert body == {
        "template": "failover",
        "workflow": [
            {
                "to": {"type": "whatsapp", "number": "447700900001"},
                "from": {"type": "whatsapp", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "Your code is 64873"}},
                "failover": {"expiry_time": 600, "condition_status": "read"},
            },
            {
                "to": {"type": "sms", "number": "447700900001"},
                "from": {"type": "sms", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "Your code is 64873"}},
            },
        ],
    }
    validate_create_workflow_json(json.dumps(body).encode())


def test_expiry_and_condition_once_per_failover_or_once_per_step():
    three = [("whatsapp", "1"), ("viber_service_msg", "2"), ("sms", "3")]
    per_failover = built(steps=three, expiries=(600, 300), conditions=("read", "delivered"))
    assert [m.get("failover") for m in per_failover["workflow"]] == [
        {"expiry_time": 600, "condition_status": "read"},
        {"expiry_time": 300, "condition_status": "delivered"},
        None,
    ]
    per_step = built(steps=three, expiries=(600, 300, 60), conditions=("read",) * 3)
    assert per_step["workflow"][2]["failover"] == {"expiry_time": 60, "condition_status": "read"}
    once = built(steps=three, expiries=(600,), conditions=("delivered",))
    assert [m.get("failover", {}).get("expiry_time") for m in once["workflow"]] == [600, 600, None]
    with pytest.raises(click.UsageError, match="--expiry is given 4 times for 3 steps"):
        built(steps=three, expiries=(1, 2, 3, 4))


def test_addresses_and_senders_follow_each_channels_fields():
    body = built(
        steps=[("messenger", "1234567890"), ("viber_service_msg", "447700900001")],
        senders=("viber_service_msg:shop", "447700900099"),
        expiries=(),
        conditions=(),
    )
    messenger, viber = body["workflow"]
    assert (messenger["to"], messenger["from"]) == (
        {"type": "messenger", "id": "1234567890"},
        {"type": "messenger", "id": "447700900099"},
    )
    assert (viber["to"], viber["from"]) == (
        {"type": "viber_service_msg", "number": "447700900001"},
        {"type": "viber_service_msg", "id": "shop"},
    )
    sandbox = built(steps=[("messenger", "1234567890")], expiries=(), conditions=())
    assert sandbox["workflow"][0]["from"] == {"type": "messenger", "id": "opendispatch"}


def test_a_live_application_must_name_its_sender():
    with pytest.raises(click.UsageError, match="--from sms:ADDRESS"):
        built(senders=("whatsapp:447700900000",), sender_required=True)
    body = built(senders=("447700900123",), sender_required=True)
    assert {m["from"]["number"] for m in body["workflow"]} == {"447700900123"}


def test_a_template_is_the_whatsapp_steps_content_and_text_the_others():
    body = built(template="otp", parameters=("64873", "10"), locale="en-GB")
    whatsapp, sms = body["workflow"]
    assert whatsapp["message"] == {
        "content": {
            "type": "template",
            "template": {"name": "otp", "parameters": [{"default": "64873"}, {"default": "10"}]},
        },
        "whatsapp": {"locale": "en-GB"},
    }
    assert sms["message"] == {"content": {"type": "text", "text": "Your code is 64873"}}
    validate_create_workflow_json(json.dumps(body).encode())
    with pytest.raises(click.UsageError, match="--text TEXT, or --template NAME"):
        built(text=None)
