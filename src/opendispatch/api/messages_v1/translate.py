"""A v1 message as the workflow step the engine, the providers, the views and the dashboard
already read: the Dispatch API's message shape.

A `POST /v1/messages` is stored as a workflow of template `messages_v1`, whose `workflow`
holds one step per message (the message, then its failover list) written as a Dispatch
workflow message: `to`/`from` objects, `message.content`, `viber_service_msg` for Viber. So
the same providers send it, the same list filters and dashboard find it, and `GET
/v0.1/dispatch/{workflow_id}` shows it like any other. What only v1 has stays on the step, in
`messages_v1`: v1's channel name, the message's `client_ref`, `webhook_url` and
`webhook_version`, which its status webhooks need (see `Shell`). OpenDispatch's `opendispatch`
extension becomes the step's Dispatch `failover` condition.
"""

from __future__ import annotations

from typing import Any, Final

from opendispatch.api.messages_v1.models import V1Channel, V1Message, V1MessageType
from opendispatch.templates import MESSAGES_V1

__all__ = ["workflow_document"]

_DISPATCH_CHANNELS: Final = {
    V1Channel.SMS: "sms",
    V1Channel.MMS: "mms",
    V1Channel.WHATSAPP: "whatsapp",
    V1Channel.MESSENGER: "messenger",
    V1Channel.VIBER_SERVICE: "viber_service_msg",
}
# Which field of Dispatch's `to` and `from` carries each channel's address.
_ADDRESSING: Final = {
    V1Channel.SMS: ("number", "number"),
    V1Channel.MMS: ("number", "number"),
    V1Channel.WHATSAPP: ("number", "number"),
    V1Channel.VIBER_SERVICE: ("number", "id"),
    V1Channel.MESSENGER: ("id", "id"),
}
_OPTIONS: Final = (  # v1's option object -> Dispatch's
    ("whatsapp", "whatsapp"),
    ("viber_service", "viber_service_msg"),
    ("messenger", "messenger"),
    ("sms", "sms"),
)
_KNOWN: Final = frozenset(V1Message.model_fields) | {"from", "failover"}


def workflow_document(messages: tuple[V1Message, ...]) -> dict[str, Any]:
    """The stored request of a v1 send: the message, then its failover list, as steps."""
    return {"template": MESSAGES_V1, "workflow": [_step(message) for message in messages]}


def _step(message: V1Message) -> dict[str, Any]:
    channel = _DISPATCH_CHANNELS[message.channel]
    to_field, from_field = _ADDRESSING[message.channel]
    body: dict[str, Any] = {"content": _content(message)}
    for v1_name, dispatch_name in _OPTIONS:
        options = getattr(message, v1_name)
        if options is not None:
            body[dispatch_name] = options.model_dump(exclude_none=True)
    whatsapp = body.get("whatsapp")
    if whatsapp and "locale" in whatsapp:  # v1 writes en_GB, Dispatch the BCP 47 en-GB
        whatsapp["locale"] = whatsapp["locale"].replace("_", "-")
    for key, value in (message.model_extra or {}).items():
        if key not in _KNOWN:  # passed on, as Dispatch passes unknown keys on
            body[key] = value
    step: dict[str, Any] = {
        "to": {"type": channel, to_field: message.to},
        "from": {"type": channel, from_field: message.from_},
        "message": body,
    }
    if message.opendispatch is not None:
        step["failover"] = message.opendispatch.model_dump()
    v1: dict[str, Any] = {"channel": message.channel.value}
    for key in ("client_ref", "webhook_url", "webhook_version"):
        value = getattr(message, key)
        if value is not None:
            v1[key] = value
    step["messages_v1"] = v1
    return step


def _content(message: V1Message) -> dict[str, Any]:
    kind = message.message_type
    content: dict[str, Any] = {"type": kind.value}
    if kind is V1MessageType.TEXT:
        content["text"] = message.text
    elif kind is V1MessageType.TEMPLATE:
        assert message.template is not None  # validated
        template: dict[str, Any] = {"name": message.template.name}
        if message.template.parameters is not None:
            template["parameters"] = [{"default": p} for p in message.template.parameters]
        content["template"] = template
    else:
        media = getattr(message, kind.value)
        content[kind.value] = media.model_dump(exclude_none=True)
    return content
