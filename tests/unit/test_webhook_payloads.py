"""Webhook bodies match the spec's example payloads key for key, in the same order."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opendispatch.webhooks.payloads import (
    FinalReportMessage,
    FinalReportPayload,
    MessageError,
    MessageStatusPayload,
    render_final_report,
    render_message_status,
    total_price,
)

UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
SPEC_TIME_MS = 1_577_887_200_000  # 2020-01-01T14:00:00.000Z

# Copied from the spec: "Message Status callback", Example Payload.
SPEC_MESSAGE_STATUS: dict[str, Any] = {
    "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "to": {"type": "sms", "id": "0123456789012345", "number": "447700900000"},
    "from": {"type": "sms", "id": "0123456789012345", "number": "447700900000"},
    "timestamp": "2020-01-01T14:00:00.000Z",
    "status": "delivered",
    "error": {"code": 1300, "reason": "Not part of the provider network"},
    "usage": {"currency": "EUR", "price": "0.0333"},
    "_links": {
        "workflow": {
            "dispatch_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "href": "/workflows/aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        }
    },
}

# Copied from the spec: "The Final Report callback", Example Payload.
SPEC_FINAL_REPORT: dict[str, Any] = {
    "dispatch_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "template": "failover",
    "status": "completed",
    "timestamp": "2020-01-01T14:00:00.000Z",
    "usage": {"price": "0.02", "currency": "EUR"},
    "_links": {
        "messages": [
            {
                "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
                "href": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
                "channel": "viber_service_msg",
                "usage": {"currency": "EUR", "price": "0.0333"},
                "status": "submitted",
            }
        ]
    },
}


def shape(value: Any) -> Any:
    """Keys in order and nesting, without the values: what "same shape" means here."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def message_status(**overrides: Any) -> MessageStatusPayload:
    fields: dict[str, Any] = {
        "message_uuid": UUID,
        "to": {"type": "sms", "id": "0123456789012345", "number": "447700900000"},
        "from_": {"type": "sms", "id": "0123456789012345", "number": "447700900000"},
        "timestamp_ms": SPEC_TIME_MS,
        "status": "delivered",
        "error": MessageError(code=1300, reason="Not part of the provider network"),
        "price": "0.0333",
        "dispatch_uuid": UUID,
    }
    fields.update(overrides)
    return MessageStatusPayload(**fields)


def final_report(*messages: FinalReportMessage, **overrides: Any) -> FinalReportPayload:
    fields: dict[str, Any] = {
        "dispatch_uuid": UUID,
        "template": "failover",
        "status": "completed",
        "timestamp_ms": SPEC_TIME_MS,
        "price": "0.02",
        "messages": messages
        or (
            FinalReportMessage(
                message_uuid=UUID, channel="viber_service_msg", status="submitted", price="0.0333"
            ),
        ),
    }
    fields.update(overrides)
    return FinalReportPayload(**fields)


# -- Message Status callback -------------------------------------------------------------------


def test_message_status_equals_the_spec_example_value_for_value_and_in_key_order() -> None:
    body = render_message_status(message_status())
    assert json.loads(body) == SPEC_MESSAGE_STATUS
    assert shape(json.loads(body)) == shape(SPEC_MESSAGE_STATUS)
    assert body == json.dumps(SPEC_MESSAGE_STATUS, separators=(",", ":")).encode()


def test_message_status_omits_error_when_the_message_did_not_fail() -> None:
    body = json.loads(render_message_status(message_status(error=None)))
    expected = {key: value for key, value in SPEC_MESSAGE_STATUS.items() if key != "error"}
    assert shape(body) == shape(expected)


def test_message_status_omits_usage_when_the_price_is_unknown() -> None:
    body = json.loads(render_message_status(message_status(price=None)))
    expected = {key: value for key, value in SPEC_MESSAGE_STATUS.items() if key != "usage"}
    assert shape(body) == shape(expected)


def test_message_status_passes_addresses_through_as_given() -> None:
    to = {"type": "whatsapp", "number": "447700900001"}
    sender = {"type": "messenger", "id": "0123456789012345"}
    body = json.loads(render_message_status(message_status(to=to, from_=sender)))
    assert (body["to"], body["from"]) == (to, sender)


def test_timestamp_keeps_milliseconds_in_utc() -> None:
    body = json.loads(render_message_status(message_status(timestamp_ms=SPEC_TIME_MS + 7)))
    assert body["timestamp"] == "2020-01-01T14:00:00.007Z"


def test_unknown_message_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown message status"):
        message_status(status="failed")


# -- Final Report callback ---------------------------------------------------------------------


def test_final_report_has_the_spec_example_shape_and_values() -> None:
    body = json.loads(render_final_report(final_report()))
    assert shape(body) == shape(SPEC_FINAL_REPORT)
    # The spec's example href is a bare uuid; ours is the message's path (see payloads.py).
    [message] = body["_links"]["messages"]
    assert message.pop("href") == f"/workflows/{UUID}/messages/{UUID}"
    expected = json.loads(json.dumps(SPEC_FINAL_REPORT))
    del expected["_links"]["messages"][0]["href"]
    assert body == expected


def test_final_report_omits_a_message_usage_when_its_price_is_unknown() -> None:
    unpriced = FinalReportMessage(message_uuid=UUID, channel="sms", status="rejected", price=None)
    [message] = json.loads(render_final_report(final_report(unpriced)))["_links"]["messages"]
    assert list(message) == ["message_uuid", "href", "channel", "status"]


def test_final_report_lists_every_message_in_workflow_order() -> None:
    messages = tuple(
        FinalReportMessage(message_uuid=f"m{step}", channel="sms", status="submitted", price=None)
        for step in range(3)
    )
    body = json.loads(render_final_report(final_report(*messages)))
    assert [m["message_uuid"] for m in body["_links"]["messages"]] == ["m0", "m1", "m2"]


@pytest.mark.parametrize("status", ["completed", "error"])
def test_final_report_accepts_the_two_spec_statuses(status: str) -> None:
    assert json.loads(render_final_report(final_report(status=status)))["status"] == status


def test_final_report_accepts_cancelled_the_documented_extension() -> None:
    assert json.loads(render_final_report(final_report(status="cancelled")))["status"] == (
        "cancelled"
    )


def test_final_report_refuses_any_other_status() -> None:
    with pytest.raises(ValueError, match="completed, error or cancelled"):
        final_report(status="failed")


def test_rendering_is_deterministic_so_retries_resend_identical_bytes() -> None:
    assert render_final_report(final_report()) == render_final_report(final_report())
    assert render_message_status(message_status()) == render_message_status(message_status())


# -- prices ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prices", "total"),
    [
        (["0.0333", "0.0333"], "0.0666"),
        (["0.1", "0.2"], "0.3"),
        (["0.0333", None, "0.02"], "0.0533"),
        ([], "0"),
        ([None, None], "0"),
        (["0.00000001"], "0.00000001"),
        (["1E-8", "1E-8"], "0.00000002"),
        (["100", "0.5"], "100.5"),
    ],
)
def test_total_price_is_an_exact_decimal_sum_of_known_prices(
    prices: list[str | None], total: str
) -> None:
    assert total_price(prices) == total


@pytest.mark.parametrize("price", ["", "abc", "NaN", "Infinity"])
def test_total_price_refuses_a_price_that_is_not_a_finite_number(price: str) -> None:
    with pytest.raises(ValueError, match="price"):
        total_price([price])


@given(st.lists(st.decimals(min_value=0, max_value=1000, places=8, allow_nan=False)))
def test_total_price_never_uses_exponent_notation_and_loses_nothing(
    amounts: list[Decimal],
) -> None:
    total = total_price(format(amount, "f") for amount in amounts)
    assert "E" not in total.upper()
    assert Decimal(total) == sum(amounts, Decimal(0))
