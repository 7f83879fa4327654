"""The webhook bodies, rendered once to the exact bytes we send: the Dispatch API's two (a
message status, a final report) and the Messages API v1's status.

A body is rendered once, stored, signed (its SHA-256 goes into the JWT) and re-sent unchanged on
every retry: re-rendering could change a byte (key order, number format) and break the receiver's
`payload_hash` check or its de-duplication. So rendering happens here, to `bytes`, and nowhere
else.

Key order follows the spec's example payloads, since some receivers compare bodies as text and
people read them in logs. Optional objects are *omitted*, not `null`: the spec shows `error` only
for failures and `usage` only when a price is known.

Prices are strings of decimal numbers, as Vonage sends them; they are added with `Decimal` so
that "0.0333" + "0.0333" is "0.0666", never "0.06660000000000001".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from opendispatch.engine.model import MessageError
from opendispatch.timefmt import iso_ms

__all__ = [
    "CURRENCY",
    "FinalReportMessage",
    "FinalReportPayload",
    "MessageError",
    "MessageStatusPayload",
    "V1MessageStatusPayload",
    "render_final_report",
    "render_message_status",
    "render_v1_message_status",
    "total_price",
]

CURRENCY = "EUR"  # The spec allows only EUR (ISO 4217).
V1_ERROR_TYPE_BASE = "https://developer.vonage.com/api-errors/messages"

MESSAGE_STATUSES = frozenset({"submitted", "delivered", "read", "rejected", "undeliverable"})
# `cancelled` is OpenDispatch's extension (a workflow stopped by `POST .../cancel`).
FINAL_STATUSES = frozenset({"completed", "error", "cancelled"})

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStatusPayload:
    """One status event of one message of a workflow (the "Message Status callback").

    `to` and `from_` are the workflow's own address objects (`type`, `id`, `number`), passed
    through as the client wrote them; `from_` has a trailing underscore only because `from` is a
    Python keyword.
    """

    message_uuid: str
    to: dict[str, Any]
    from_: dict[str, Any]
    timestamp_ms: int
    status: str
    error: MessageError | None
    price: str | None
    dispatch_uuid: str

    def __post_init__(self) -> None:
        # An unknown status is a bug upstream; refusing it here keeps it out of users' inboxes.
        if self.status not in MESSAGE_STATUSES:
            raise ValueError(f"unknown message status {self.status!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class V1MessageStatusPayload:
    """One status of a message sent by `POST /v1/messages`, in the Messages API v1's shape:
    `to` and `from` are strings, the channel is v1's name (`viber_service`), and the message's
    `client_ref` comes back. `workflow_id` links the status to its failover workflow; it is
    given when the request had a `failover` list, as the 202 gave it."""

    message_uuid: str
    to: str
    from_: str
    timestamp_ms: int
    status: str
    error: MessageError | None
    error_instance: str  # the id of this status's webhook: where an error was reported
    price: str | None
    channel: str
    client_ref: str | None
    workflow_id: str | None

    def __post_init__(self) -> None:
        if self.status not in MESSAGE_STATUSES:
            raise ValueError(f"unknown message status {self.status!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalReportMessage:
    """One message of the workflow as the final report lists it; `price` None = not known."""

    message_uuid: str
    channel: str
    status: str
    price: str | None
    provider: str | None = None  # who carried it ("sandbox" or an account): an extension

    def __post_init__(self) -> None:
        if self.status not in MESSAGE_STATUSES:
            raise ValueError(f"unknown message status {self.status!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalReportPayload:
    """The workflow's last word (the "Final Report callback"); `price` is the workflow total."""

    dispatch_uuid: str
    template: str
    status: str
    timestamp_ms: int
    price: str
    messages: tuple[FinalReportMessage, ...]

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATUSES:
            raise ValueError(
                f"final report status must be completed, error or cancelled, not {self.status!r}"
            )


def render_message_status(payload: MessageStatusPayload) -> bytes:
    """The Message Status callback body, keys in the order of the spec's example."""
    body = _status_head(payload)
    if payload.error is not None:
        body["error"] = {"code": payload.error.code, "reason": payload.error.reason}
    if payload.price is not None:
        body["usage"] = {"currency": CURRENCY, "price": payload.price}
    body["_links"] = {
        "workflow": {
            "dispatch_uuid": payload.dispatch_uuid,
            "href": f"/workflows/{payload.dispatch_uuid}",
        }
    }
    return _encode(body)


def render_v1_message_status(payload: V1MessageStatusPayload) -> bytes:
    """The Messages API v1 status webhook body, keys in the order of Vonage's example.

    An error is v1's problem object: `type` names the error code's page, `title` is the code
    (a number, as Vonage's examples show it), `detail` the reason."""
    body = _status_head(payload)
    if payload.error is not None:
        body["error"] = {
            "type": f"{V1_ERROR_TYPE_BASE}#{payload.error.code}",
            "title": payload.error.code,
            "detail": payload.error.reason,
            "instance": payload.error_instance,
        }
    if payload.price is not None:
        body["usage"] = {"currency": CURRENCY, "price": payload.price}
    if payload.client_ref is not None:
        body["client_ref"] = payload.client_ref
    body["channel"] = payload.channel
    if payload.workflow_id is not None:
        body["workflow_id"] = payload.workflow_id
    return _encode(body)


def _status_head(payload: MessageStatusPayload | V1MessageStatusPayload) -> dict[str, Any]:
    """The keys both status shapes begin with, in the same order (only `to` and `from`
    differ: objects in v0.1, strings in v1)."""
    return {
        "message_uuid": payload.message_uuid,
        "to": payload.to,
        "from": payload.from_,
        "timestamp": iso_ms(payload.timestamp_ms),
        "status": payload.status,
    }


def render_final_report(payload: FinalReportPayload) -> bytes:
    """The Final Report callback body, keys in the order of the spec's example.

    Each message's `href` is `/workflows/<dispatch_uuid>/messages/<message_uuid>`: the spec's
    example shows a bare uuid there, but says these are links to resources (not yet served),
    and a path is what the Message Status callback's `workflow.href` uses too.
    """
    messages: list[dict[str, Any]] = []
    for message in payload.messages:
        item: dict[str, Any] = {
            "message_uuid": message.message_uuid,
            "href": f"/workflows/{payload.dispatch_uuid}/messages/{message.message_uuid}",
            "channel": message.channel,
        }
        if message.price is not None:
            item["usage"] = {"currency": CURRENCY, "price": message.price}
        item["status"] = message.status
        if message.provider is not None:
            item["provider"] = message.provider
        messages.append(item)
    return _encode(
        {
            "dispatch_uuid": payload.dispatch_uuid,
            "template": payload.template,
            "status": payload.status,
            "timestamp": iso_ms(payload.timestamp_ms),
            "usage": {"price": payload.price, "currency": CURRENCY},
            "_links": {"messages": messages},
        }
    )


def total_price(prices: Iterable[str | None]) -> str:
    """Exact sum of the known prices, in plain notation ("0.00000001", never "1E-8").

    Unknown prices (None) are skipped rather than failing the report: the spec warns that the
    total may not reflect the true cost, and a partial total is still useful. No known price at
    all gives "0".
    """
    total = Decimal(0)
    for price in prices:
        if price is None:
            continue
        try:
            amount = Decimal(price)
        except InvalidOperation:
            raise ValueError(f"price is not a decimal number: {price!r}") from None
        if not amount.is_finite():
            raise ValueError(f"price is not a finite number: {price!r}")
        total += amount
    return format(total, "f")
