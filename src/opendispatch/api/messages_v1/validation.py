"""Validation of `POST /v1/messages` bodies, naming every invalid field in one answer.

The same two paths as the Dispatch API's (`api.validation`): pydantic reads the raw bytes in
one pass and the channel rules run on the typed messages; only when something is wrong is
each message validated on its own, so a broken failover entry does not hide the mistakes of
the others. Names are v1's: `to`, `whatsapp.locale`, `failover[1].text`.

What v1 accepts here is what the five Dispatch channels carry (the same providers send both):
SMS text; MMS image; WhatsApp text, image, audio, video, file and template; Messenger text,
image, audio, video and file; Viber text and image. v1's other types (`sticker`, `vcard`,
`custom`, MMS audio, RCS) are refused by name, not accepted and lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pydantic import TypeAdapter, ValidationError

from opendispatch.api.json_body import read_json
from opendispatch.api.messages_v1.models import (
    V1_TTL_RANGE,
    SendMessageRequest,
    V1Channel,
    V1Message,
    V1MessageType,
)
from opendispatch.api.messages_v1.problems import MessagesProblem, invalid_params
from opendispatch.api.request_models import E164_PATTERN, EXPIRY_TIME_RANGE, MessengerCategory
from opendispatch.api.validation import (
    E164_REASON,
    MAX_REPORTED_PARAMETERS,
    reported,
    structural_errors,
)
from opendispatch.webhooks.destinations import url_problem

__all__ = ["ValidMessages", "validate_send_message", "validate_send_message_json"]

_DETAIL: Final = "The value of one or more parameters is invalid."
_REQUEST: Final = TypeAdapter(SendMessageRequest)
_MESSAGE: Final = TypeAdapter(V1Message)
_RANGES: Final = {"expiry_time": EXPIRY_TIME_RANGE, "ttl": V1_TTL_RANGE}

_Path = tuple[str | int, ...]
_Error = tuple[_Path, str]

_T = V1MessageType
_MEDIA = (_T.IMAGE, _T.AUDIO, _T.VIDEO, _T.FILE)
MESSAGE_TYPES: Final[dict[V1Channel, tuple[V1MessageType, ...]]] = {
    V1Channel.SMS: (_T.TEXT,),
    V1Channel.MMS: (_T.IMAGE,),
    V1Channel.WHATSAPP: (_T.TEXT, *_MEDIA, _T.TEMPLATE),
    V1Channel.MESSENGER: (_T.TEXT, *_MEDIA),
    V1Channel.VIBER_SERVICE: (_T.TEXT, _T.IMAGE),
}
_TEXT_LIMITS: Final = {
    V1Channel.SMS: 1000,
    V1Channel.VIBER_SERVICE: 1000,
    V1Channel.MESSENGER: 640,
    V1Channel.WHATSAPP: 4096,
}
_E164 = re.compile(E164_PATTERN)
_SENDER_ID = re.compile(r"^[A-Za-z0-9 ]{1,11}$")  # an SMS alphanumeric sender
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*$")
_NUMBERED: Final = frozenset(
    {V1Channel.SMS, V1Channel.MMS, V1Channel.WHATSAPP, V1Channel.VIBER_SERVICE}
)


@dataclass(frozen=True, slots=True)
class ValidMessages:
    """A request that passed every rule: its message, then its failover list, in order
    (more than one message: it had a failover list)."""

    messages: tuple[V1Message, ...]


def validate_send_message_json(body: bytes, *, max_messages: int = 10) -> ValidMessages:
    """Validate a raw JSON body, or raise a 422 naming every invalid field."""
    document = read_json(body)
    try:
        request = _REQUEST.validate_json(body)
    except ValidationError:
        request = None
    if request is not None:
        messages = (request, *(request.failover or ()))
        errors: list[_Error] = []
        for index, message in enumerate(messages):
            _check_rules(_prefix(index), message, errors)
            if index and "failover" in (message.model_extra or {}):
                errors.append(((*_prefix(index), "failover"), _NESTED))
        if not errors and len(messages) <= max_messages:
            return ValidMessages(messages)
    return validate_send_message(document, max_messages=max_messages)


def validate_send_message(document: object, *, max_messages: int = 10) -> ValidMessages:
    """Validate a decoded JSON body, or raise a 422 naming every invalid field."""
    if not isinstance(document, dict):
        raise _refused(document, [((), "must be a JSON object")])
    errors: list[_Error] = []
    unread = 0
    items: list[tuple[_Path, object]] = [((), document)]
    failover = document.get("failover")
    if failover is not None:  # `null` is no list, as the models read it
        if not isinstance(failover, list) or not failover:
            errors.append((("failover",), "must be an array of at least 1 message"))
        elif len(failover) > max_messages - 1:
            errors.append((("failover",), f"must contain at most {max_messages - 1} messages"))
        else:
            items += [(("failover", index), item) for index, item in enumerate(failover)]
    messages: list[V1Message] = []
    for path, item in items:
        if not isinstance(item, dict):
            errors.append((path, "must be an object"))
            continue
        if path and "failover" in item:
            errors.append(((*path, "failover"), _NESTED))
        try:
            message = _MESSAGE.validate_python(
                item if path else {k: v for k, v in item.items() if k != "failover"}
            )
        except ValidationError as exc:
            room = max(0, MAX_REPORTED_PARAMETERS - len(errors))
            found = structural_errors(path, exc, room, _RANGES)
            unread += exc.error_count() - len(found)
            errors += found
            continue
        _check_rules(path, message, errors)
        messages.append(message)
    if errors:
        raise _refused(document, errors, found=len(errors) + unread)
    return ValidMessages(tuple(messages))


_NESTED: Final = "is only allowed on the first message, not inside the failover list"


def _prefix(index: int) -> _Path:
    return () if index == 0 else ("failover", index - 1)


def _check_rules(at: _Path, message: V1Message, errors: list[_Error]) -> None:
    """The rules that depend on the channel, which pydantic cannot express."""
    channel = message.channel
    if channel not in MESSAGE_TYPES:
        supported = ", ".join(MESSAGE_TYPES)
        errors.append(((*at, "channel"), f"{channel} is not supported; use one of: {supported}"))
        return
    if channel in _NUMBERED and not _E164.match(message.to):
        errors.append(((*at, "to"), E164_REASON))
    sender = message.from_
    if channel is V1Channel.SMS:
        if not (_E164.match(sender) or _SENDER_ID.match(sender)):
            errors.append(
                ((*at, "from"), E164_REASON + ", or a sender id of 1 to 11 letters and digits")
            )
    elif channel in (V1Channel.MMS, V1Channel.WHATSAPP) and not _E164.match(sender):
        errors.append(((*at, "from"), E164_REASON))

    kind = message.message_type
    supported_types = MESSAGE_TYPES[channel]
    if kind not in supported_types:
        names = ", ".join(supported_types)
        reason = f"{channel} {kind} is not supported; {channel} supports: {names}"
        errors.append(((*at, "message_type"), reason))
    else:
        value = getattr(message, kind)
        if value is None:
            errors.append(((*at, kind.value), f"is required when message_type is {kind}"))
        elif kind is V1MessageType.TEXT and len(value) > _TEXT_LIMITS[channel]:
            reason = f"must be at most {_TEXT_LIMITS[channel]} characters for {channel}"
            errors.append(((*at, "text"), reason))
        elif kind is V1MessageType.TEMPLATE and not value.name:
            errors.append(((*at, "template", "name"), "must not be empty"))

    if message.webhook_url is not None:
        problem = url_problem(message.webhook_url)  # the rules of an application's URLs
        if problem is not None:
            errors.append(((*at, "webhook_url"), problem))

    whatsapp = message.whatsapp
    if whatsapp is not None and whatsapp.locale is not None and not _LOCALE.match(whatsapp.locale):
        reason = "must be a locale such as en_GB (or the BCP 47 tag en-GB)"
        errors.append(((*at, "whatsapp", "locale"), reason))
    messenger = message.messenger
    if (
        messenger is not None
        and messenger.category is MessengerCategory.MESSAGE_TAG
        and not messenger.tag
    ):
        errors.append(((*at, "messenger", "tag"), "is required when category is message_tag"))


def _refused(document: object, errors: list[_Error], *, found: int = 0) -> MessagesProblem:
    parameters, detail = reported(document, errors, found=found, detail=_DETAIL)
    return invalid_params(detail, parameters)
