"""`condition_warnings`: a `read` condition on a channel that never reports reads is valid (the
spec allows it) but can never be met, and is said so, from a request or from its stored JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opendispatch.api.validation import condition_warnings, validate_create_workflow
from opendispatch.errors import InvalidParameter


def message(channel: str, condition: str | None = None) -> dict[str, Any]:
    addressed = {"type": channel, "number": "447700900000"}
    sender = addressed if channel != "viber_service_msg" else {"type": channel, "id": "brand"}
    content = {"type": "image", "image": {"url": "https://example.com/a.png"}}
    if channel != "mms":
        content = {"type": "text", "text": "Your code is 64873"}
    item: dict[str, Any] = {"to": addressed, "from": sender, "message": {"content": content}}
    if condition is not None:
        item["failover"] = {"expiry_time": 600, "condition_status": condition}
    return item


def warnings_both_ways(*messages: dict[str, Any]) -> list[InvalidParameter]:
    """From the validated request and from the stored JSON: always the same answer."""
    request = {"template": "failover", "workflow": list(messages)}
    validated = condition_warnings(validate_create_workflow(request).messages)
    stored = condition_warnings(json.loads(json.dumps(request))["workflow"])
    assert validated == stored
    return validated


@pytest.mark.parametrize("channel", ["sms", "mms"])
def test_read_on_a_channel_that_never_reports_reads_is_a_warning(channel: str) -> None:
    found = warnings_both_ways(message(channel, "read"), message("whatsapp"))

    assert [warning.name for warning in found] == ["workflow[0].failover.condition_status"]
    assert f"{channel} never reports read" in found[0].reason
    assert "fails over to the next" in found[0].reason


def test_on_the_last_message_it_says_the_workflow_ends_in_error() -> None:
    found = warnings_both_ways(message("whatsapp", "read"), message("sms", "read"))

    assert [warning.name for warning in found] == ["workflow[1].failover.condition_status"]
    assert "always ends in error" in found[0].reason


@pytest.mark.parametrize(
    "first",
    [
        message("sms", "delivered"),
        message("whatsapp", "read"),
        message("messenger", "read") | {"to": {"type": "messenger", "id": "psid"},
                                        "from": {"type": "messenger", "id": "page"}},
        message("viber_service_msg", "read"),
    ],
    ids=["sms-delivered", "whatsapp-read", "messenger-read", "viber-read"],
)  # fmt: skip
def test_conditions_that_can_be_met_give_no_warning(first: dict[str, Any]) -> None:
    assert warnings_both_ways(first, message("sms")) == []


def test_stored_json_of_any_shape_gives_no_warning_rather_than_failing() -> None:
    odd: list[Any] = [{"to": "sms", "failover": ["read"]}, {"to": {"type": ["sms"]}}, {}]

    assert condition_warnings(odd) == []
