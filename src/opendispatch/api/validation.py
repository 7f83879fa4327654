"""Validation of `POST /v0.1/dispatch` bodies, naming every invalid field in one answer.

Two paths over the same models and the same channel rules:

- `validate_create_workflow_json` is the hot path: pydantic validates the raw bytes in one
  pass (JSON parsing included), then the channel rules run on the typed messages. Measured
  inside the loaded server, this is what keeps validation from dominating a request.
- `validate_create_workflow` is the thorough path, taken as soon as anything is wrong: each
  workflow message is validated on its own (structure with pydantic, then its channel rules),
  so a broken message does not hide the mistakes of the others.

Both accept exactly the same requests: the fast path only ever says "valid" when the whole
request passed the very models and rules the thorough path applies. Neither sees a body that
`json_body.read_json` refused (too deep, NaN or Infinity, not JSON): both parsers then read
the same document, and it can be read back once stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from opendispatch import templates
from opendispatch.api.json_body import read_json
from opendispatch.api.request_models import (
    EXPIRY_TIME_RANGE,
    TTL_RANGE,
    Channel,
    ConditionStatus,
    ContentType,
    CreateWorkflowRequest,
    MessengerCategory,
    WorkflowMessage,
)
from opendispatch.errors import InvalidParameter, InvalidRequest

__all__ = [
    "E164_REASON",
    "MAX_REPORTED_PARAMETERS",
    "ValidWorkflowRequest",
    "condition_warnings",
    "reason_for",
    "reported",
    "structural_errors",
    "validate_create_workflow",
    "validate_create_workflow_json",
]

_DETAIL: Final = "Your request parameters did not validate."
MAX_REPORTED_PARAMETERS: Final = 100  # of `invalid_parameters` in one answer
_TEMPLATE: Final = templates.DISPATCH

_MESSAGE: Final = TypeAdapter(WorkflowMessage)
_REQUEST: Final = TypeAdapter(CreateWorkflowRequest)

# A path is the list of keys and indexes leading to a field, from the top of the request.
_Path = tuple[str | int, ...]
_Error = tuple[_Path, str]

_MEDIA = (ContentType.IMAGE, ContentType.AUDIO, ContentType.VIDEO, ContentType.FILE)
_CONTENT_TYPES: Final[dict[Channel, tuple[ContentType, ...]]] = {
    Channel.SMS: (ContentType.TEXT,),
    Channel.MMS: (ContentType.IMAGE,),
    Channel.VIBER_SERVICE_MSG: (ContentType.TEXT, ContentType.IMAGE),
    Channel.MESSENGER: (ContentType.TEXT, *_MEDIA),
    Channel.WHATSAPP: (ContentType.TEXT, *_MEDIA, ContentType.TEMPLATE),
}
_TEXT_LIMITS: Final[dict[Channel, int]] = {
    Channel.SMS: 1000,
    Channel.VIBER_SERVICE_MSG: 1000,
    Channel.MESSENGER: 640,
    Channel.WHATSAPP: 4096,
}
# Which field of `to` and of `from` addresses each channel.
_ADDRESSING: Final[dict[Channel, tuple[str, str]]] = {
    Channel.SMS: ("number", "number"),
    Channel.MMS: ("number", "number"),
    Channel.WHATSAPP: ("number", "number"),
    Channel.VIBER_SERVICE_MSG: ("number", "id"),
    Channel.MESSENGER: ("id", "id"),
}
_RANGES: Final[dict[str, tuple[int, int]]] = {
    "expiry_time": EXPIRY_TIME_RANGE,
    "ttl": TTL_RANGE,
}
E164_REASON: Final = (
    "must be an E.164 number without a leading + or 00: digits only, "
    "starting with the country code (1-9), at most 15 digits"
)
_PATTERN_REASONS: Final[dict[str, str]] = {
    "number": E164_REASON,
    "locale": "must be a BCP 47 language tag such as en-GB (with a hyphen, not en_GB)",
}
_TYPE_REASONS: Final[dict[str, str]] = {
    "missing": "is required",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be an array",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
}
_QUOTED = re.compile(r"'([^']*)'")
_FAILOVER_REQUIRED: Final = "is required on every message except the last"


# Channels on which no provider reports `read` (Vonage, Twilio and Telnyx SMS and MMS have no
# read receipts; the sandbox stops at `delivered` there too).
_NEVER_READ: Final = frozenset({Channel.SMS, Channel.MMS})


@dataclass(frozen=True, slots=True)
class ValidWorkflowRequest:
    """A request that passed every rule (the caller stores its body verbatim, to echo back)."""

    template: str
    messages: tuple[WorkflowMessage, ...]


def validate_create_workflow_json(body: bytes, *, max_messages: int = 10) -> ValidWorkflowRequest:
    """Validate a raw JSON body, or raise `InvalidRequest` naming every invalid field."""
    document = read_json(body)  # before either path: one reading of JSON for both
    try:
        request = _REQUEST.validate_json(body)
    except ValidationError:
        request = None
    if request is not None and len(request.workflow) <= max_messages:
        errors: list[_Error] = []
        last = len(request.workflow) - 1
        for index, message in enumerate(request.workflow):
            if index < last and message.failover is None:
                errors.append((("workflow", index, "failover"), _FAILOVER_REQUIRED))
            _check_channel_rules(index, message, errors)
        if not errors:
            return ValidWorkflowRequest(request.template, tuple(request.workflow))
    return validate_create_workflow(document, max_messages=max_messages)


def validate_create_workflow(document: object, *, max_messages: int = 10) -> ValidWorkflowRequest:
    """Validate a decoded JSON body, or raise `InvalidRequest` naming every invalid field."""
    if not isinstance(document, dict):
        raise _invalid(document, [((), "must be a JSON object")])
    errors: list[_Error] = []
    unread = 0  # errors found but not worded: past the number an answer reports
    if document.get("template") != _TEMPLATE:
        reason = "is required" if "template" not in document else f"must be one of: {_TEMPLATE}"
        errors.append((("template",), reason))
    workflow = document.get("workflow")
    messages: list[WorkflowMessage] = []
    if isinstance(workflow, list) and 0 < len(workflow) <= max_messages:
        last = len(workflow) - 1
        for index, item in enumerate(workflow):
            if not isinstance(item, dict):
                errors.append((("workflow", index), "must be an object"))
                continue
            # On the last message a failover is allowed: it is the workflow's completion condition.
            if index < last and item.get("failover") is None:
                errors.append((("workflow", index, "failover"), _FAILOVER_REQUIRED))
            try:
                message = _MESSAGE.validate_python(item)
            except ValidationError as exc:
                unread += exc.error_count()
                room = max(0, MAX_REPORTED_PARAMETERS - len(errors))
                reported = _structural_errors(index, exc, room)
                unread -= len(reported)
                errors.extend(reported)
                continue
            _check_channel_rules(index, message, errors)
            messages.append(message)
    else:
        errors.append((("workflow",), _workflow_reason(document, workflow, max_messages)))
    if errors:
        raise _invalid(document, errors, found=len(errors) + unread)
    return ValidWorkflowRequest(_TEMPLATE, tuple(messages))


def condition_warnings(
    messages: Sequence[WorkflowMessage | Mapping[str, Any]],
) -> list[InvalidParameter]:
    """What is valid but can never happen: a `condition_status` of `read` on a channel that
    never reports reads. The spec allows it, so it is accepted, and the 202 says so.

    `messages`: the validated messages, or the stored request's `workflow` as JSON objects
    (`json.loads(record.request_json)["workflow"]`), so what is shown later needs no stored
    copy. Empty for nearly every request: the 202 body is then unchanged."""
    warnings = []
    last = len(messages) - 1
    for index, message in enumerate(messages):
        channel: object
        condition: object
        if isinstance(message, WorkflowMessage):
            channel = message.to.type
            condition = message.failover and message.failover.condition_status
        else:
            channel = _field(message, "to", "type")
            condition = _field(message, "failover", "condition_status")
        if (
            condition == ConditionStatus.READ
            and isinstance(channel, str)
            and channel in _NEVER_READ
        ):
            then = (
                "the workflow always ends in error"
                if index == last
                else "this message always fails over to the next"
            )
            warnings.append(
                InvalidParameter(
                    f"workflow[{index}].failover.condition_status",
                    f"{channel} never reports read, so this condition can never be met: "
                    f"{then} once its expiry_time passes",
                )
            )
    return warnings


def _field(message: Mapping[str, Any], outer: str, inner: str) -> object:
    """`message[outer][inner]`, or None where either is missing (or not an object)."""
    value = message.get(outer)
    return value.get(inner) if isinstance(value, Mapping) else None


def _workflow_reason(document: dict[Any, Any], workflow: object, max_messages: int) -> str:
    if "workflow" not in document:
        return "is required"
    if not isinstance(workflow, list):
        return f"must be an array of 1 to {max_messages} messages"
    if not workflow:
        return "must contain at least 1 message"
    # Past the limit the messages are not looked at: the request is refused whatever they hold.
    return f"must contain at most {max_messages} messages"


def _check_channel_rules(index: int, message: WorkflowMessage, errors: list[_Error]) -> None:
    """The rules pydantic cannot express: each depends on the message's channel."""
    channel = message.to.type
    to_field, from_field = _ADDRESSING[channel]
    if getattr(message.to, to_field) is None:
        errors.append((("workflow", index, "to", to_field), f"is required for {channel}"))
    if message.from_.type is not channel:
        errors.append(
            (("workflow", index, "from", "type"), f"must be the same as to.type ({channel})")
        )
    elif getattr(message.from_, from_field) is None:
        errors.append((("workflow", index, "from", from_field), f"is required for {channel}"))

    content = message.message.content
    kind = content.type
    supported = _CONTENT_TYPES[channel]
    at: _Path = ("workflow", index, "message", "content")
    if kind not in supported:
        names = ", ".join(supported)
        if kind is ContentType.CUSTOM:
            reason = f"custom is not supported by any channel; {channel} supports: {names}"
        else:
            reason = f"{channel} does not support content type {kind}; it supports: {names}"
        errors.append(((*at, "type"), reason))
    else:
        value = getattr(content, kind)
        if value is None:
            errors.append(((*at, kind.value), f"is required when content type is {kind}"))
        elif kind is ContentType.TEXT:
            limit = _TEXT_LIMITS[channel]
            if len(value) > limit:
                reason = f"must be at most {limit} characters for {channel}"
                errors.append(((*at, "text"), reason))
        elif kind is ContentType.TEMPLATE and not value.name:
            reason = "must not be empty" if value.name == "" else "is required for template content"
            errors.append(((*at, "template", "name"), reason))

    messenger = message.message.messenger
    if (
        messenger is not None
        and messenger.category is MessengerCategory.MESSAGE_TAG
        and not messenger.tag
    ):
        tag: _Path = ("workflow", index, "message", "messenger", "tag")
        errors.append((tag, "is required (non-empty) when category is message_tag"))


def _structural_errors(index: int, exc: ValidationError, room: int) -> list[_Error]:
    return structural_errors(("workflow", index), exc, room)


def structural_errors(
    at: _Path,
    exc: ValidationError,
    room: int,
    ranges: Mapping[str, tuple[int, int]] = _RANGES,
) -> list[_Error]:
    """At most `room` of pydantic's errors, worded, each under the path `at` (the wording
    costs more than finding)."""
    errors = exc.errors(include_url=False, include_input=False)[:room]
    return [((*at, *error["loc"]), reason_for(error, ranges)) for error in errors]


def reason_for(error: ErrorDetails, ranges: Mapping[str, tuple[int, int]] = _RANGES) -> str:
    """Say what pydantic found in words a developer can act on, without its internal names."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    field = next((part for part in reversed(error["loc"]) if isinstance(part, str)), "")
    if kind in _TYPE_REASONS:
        return _TYPE_REASONS[kind]
    if kind in ("enum", "literal_error"):
        return "must be one of: " + ", ".join(_QUOTED.findall(str(ctx.get("expected", ""))))
    if kind in ("greater_than_equal", "less_than_equal") and field in ranges:
        low, high = ranges[field]
        return f"must be between {low} and {high}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else "is too short"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return _PATTERN_REASONS.get(field, "is not in the expected format")
    if kind == "url_format":
        return error["msg"]
    return "is invalid"


def _invalid(document: object, errors: list[_Error], *, found: int = 0) -> InvalidRequest:
    parameters, detail = reported(document, errors, found=found)
    return InvalidRequest(detail, invalid_parameters=parameters)


def reported(
    document: object, errors: list[_Error], *, found: int = 0, detail: str = _DETAIL
) -> tuple[tuple[InvalidParameter, ...], str]:
    """The first `MAX_REPORTED_PARAMETERS` errors found, in request order, and the detail
    saying how many there were in all (both APIs answer alike).

    A capped answer keeps a 250 KB body of invalid fields from becoming a 2 MB answer and
    most of a second of sorting on the event loop (12,000 errors: 355 ms before the cap).
    """
    shown = errors[:MAX_REPORTED_PARAMETERS]
    shown.sort(key=lambda error: _position(document, error[0]))
    parameters = tuple(InvalidParameter(_name(path), reason) for path, reason in shown)
    found = max(found, len(errors))
    if found > len(shown):
        detail += f" {found:,} fields are invalid; the first {len(shown)} found are listed."
    return parameters, detail


def _position(document: object, path: _Path) -> tuple[int, ...]:
    """Where a field sits in the request as sent; a missing key sorts after its siblings."""
    position: list[int] = []
    node: object = document
    for part in path:
        if isinstance(part, int):
            position.append(part)
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(node, Mapping):
            keys = list(node)
            position.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        else:
            position.append(0)
            node = None
    return tuple(position)


def _name(path: _Path) -> str:
    if not path:
        return "body"
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    return name
