"""The rules of `POST /v0.1/dispatch` bodies, each shown accepted and refused."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opendispatch.api.request_models import Channel, ConditionStatus, ContentType
from opendispatch.api.validation import (
    ValidWorkflowRequest,
    validate_create_workflow,
    validate_create_workflow_json,
)
from opendispatch.errors import InvalidRequest

SPEC_EXAMPLE: dict[str, Any] = {
    "template": "failover",
    "workflow": [
        {
            "to": {"type": "sms", "id": "0123456789012345", "number": "447700900000"},
            "from": {"type": "sms", "id": "0123456789012345", "number": "447700900000"},
            "message": {
                "content": {
                    "type": "text",
                    "text": "Vonage Verification code: 64873. Valid for 10 minutes.",
                    "image": {
                        "url": "https://example.com/image.jpg",
                        "caption": "Additional text to accompany the image.",
                    },
                    "audio": {"url": "https://example.com/audio.mp3"},
                    "video": {"url": "https://example.com/video.mp4"},
                    "file": {
                        "url": "https://example.com/file.zip",
                        "caption": "Additional text to accompany the image.",
                    },
                    "template": {
                        "name": "whatsapp:hsm:technology:vonage:verify",
                        "parameters": [{"default": "1234"}],
                    },
                },
                "viber_service_msg": {"category": "transaction", "ttl": 600},
                "messenger": {"category": "message_tag", "tag": "ticket_update"},
                "whatsapp": {"policy": "deterministic", "locale": "en-GB"},
            },
            "failover": {"expiry_time": 600, "condition_status": "delivered"},
        }
    ],
}

NUMBER, ID = "447700900000", "0123456789012345"
ADDRESSES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "sms": ({"number": NUMBER}, {"number": NUMBER}),
    "mms": ({"number": NUMBER}, {"number": NUMBER}),
    "whatsapp": ({"number": NUMBER}, {"number": NUMBER}),
    "viber_service_msg": ({"number": NUMBER}, {"id": ID}),
    "messenger": ({"id": ID}, {"id": ID}),
}
CONTENTS: dict[str, dict[str, Any]] = {
    "text": {"text": "Your code is 64873."},
    "image": {"image": {"url": "https://example.com/a.jpg", "caption": "A"}},
    "audio": {"audio": {"url": "https://example.com/a.mp3"}},
    "video": {"video": {"url": "http://example.com/a.mp4"}},
    "file": {"file": {"url": "https://example.com/a.pdf", "caption": "A"}},
    "template": {"template": {"name": "verify", "parameters": [{"default": "1"}]}},
    "custom": {"custom": {"anything": True}},
}
SUPPORTED = {
    "sms": ["text"],
    "mms": ["image"],
    "viber_service_msg": ["text", "image"],
    "messenger": ["text", "image", "audio", "video", "file"],
    "whatsapp": ["text", "image", "audio", "video", "file", "template"],
}
DELETE = object()


def message(
    channel: str = "sms", content: str = "text", *, failover: bool = True
) -> dict[str, Any]:
    to, sender = ADDRESSES[channel]
    built: dict[str, Any] = {
        "to": {"type": channel, **to},
        "from": {"type": channel, **sender},
        "message": {"content": {"type": content, **copy.deepcopy(CONTENTS[content])}},
    }
    if failover:
        built["failover"] = {"expiry_time": 600, "condition_status": "delivered"}
    return built


def request(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"template": "failover", "workflow": list(messages)}


def edit(document: Any, changes: dict[str, Any]) -> Any:
    """A deep copy with each path set (missing objects on the way created) or DELETEd."""
    document = copy.deepcopy(document)
    for path, value in changes.items():
        parts = [int(p[1:-1]) if p[0] == "[" else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", path)]
        node = document
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        if value is DELETE:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return document


def refusal(document: Any, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate_create_workflow(document, **kwargs)
    assert caught.value.detail == "Your request parameters did not validate."
    return caught.value


def names(document: Any, **kwargs: Any) -> list[str]:
    return [p.name for p in refusal(document, **kwargs).invalid_parameters]


C, V = "message.content", "message.viber_service_msg"
SPEC_CONTENT = SPEC_EXAMPLE["workflow"][0]["message"]["content"]
NO_TAGS: list[dict[str, Any]] = [{}, {"tag": ""}, {"tag": None}]

# fmt: off
# Rules inside one message. A row is: rule, channel, content type, a field of `workflow[0]`
# and the value it is set to (or DELETE). Refused rows add a reason fragment and, when it is
# not the changed field, the field named. The base message is valid and carries a failover;
# setting the unknown key "extra" leaves it as it is.
ACCEPTED = [
    ("required", "sms", "text", "extra", "unknown keys are kept"),
    ("same-type", "whatsapp", "text", "from.type", "whatsapp"),
    ("channel", "mms", "image", "to.type", "mms"),
    ("id-length", "messenger", "text", "to.id", "x" * 50),
    ("number-length", "sms", "text", "to.number", "1" * 15),
    ("e164", "sms", "text", "from.number", "1"),
    *[("addressing", ch, SUPPORTED[ch][0], "extra", 1) for ch in ADDRESSES],
    *[("content-type", ch, c, "extra", 1) for ch in SUPPORTED for c in SUPPORTED[ch]],
    ("content-object", "sms", "text", C, SPEC_CONTENT),  # all content objects beside text
    ("text-limit", "messenger", "text", f"{C}.text", "x" * 640),
    ("text-limit", "sms", "text", f"{C}.text", "x" * 1000),
    ("text-limit", "viber_service_msg", "text", f"{C}.text", "x" * 1000),
    ("text-limit", "whatsapp", "text", f"{C}.text", "x" * 4096),
    ("text-limit", "messenger", "image", f"{C}.text", "x" * 4096),  # not the content
    ("url", "mms", "image", f"{C}.image.url", "https://e.com/" + "a" * 1986),
    ("url", "whatsapp", "video", f"{C}.video.url", "http://127.0.0.1:8080/a.mp4"),
    ("caption", "mms", "image", f"{C}.image.caption", "c" * 3000),
    ("template-name", "whatsapp", "template", f"{C}.template.name", "n"),
    ("template-parameters", "whatsapp", "template", f"{C}.template.parameters", [{"default": ""}]),
    ("viber-category", "viber_service_msg", "text", f"{V}.category", "promotion"),
    ("viber-ttl", "viber_service_msg", "text", f"{V}.ttl", 30),
    ("viber-ttl", "viber_service_msg", "text", f"{V}.ttl", 86400),
    ("messenger-category", "messenger", "text", "message.messenger.category", "update"),
    ("messenger-tag", "messenger", "text", "message.messenger",
     {"category": "message_tag", "tag": "t"}),
    ("whatsapp-policy", "whatsapp", "text", "message.whatsapp.policy", "fallback"),
    *[("locale", "whatsapp", "template", "message.whatsapp.locale", loc) for loc in
      ["en-GB", "en", "zh-Hant-TW", "es-419", "pt-BR", "sl-rozaj-biske", "en-US-x-twain"]],
    ("expiry-time", "sms", "text", "failover.expiry_time", 15),
    ("expiry-time", "sms", "text", "failover.expiry_time", 86400),
    ("condition-status", "sms", "text", "failover.condition_status", "read"),
    ("failover", "sms", "text", "failover", DELETE),  # the last message needs none
]
REFUSED = [
    *[("required", "sms", "text", field, DELETE, "is required") for field in
      ["to", "from", "message", C, f"{C}.type"]],
    ("required", "sms", "text", "to", "447700900000", "must be an object"),
    ("same-type", "sms", "text", "from.type", "whatsapp", "must be the same as to.type (sms)"),
    ("channel", "sms", "text", "to.type", "telegram", "one of: sms, mms, viber_service_msg, "),
    ("id-length", "messenger", "text", "to.id", "", "must not be empty"),
    ("id-length", "messenger", "text", "from.id", "x" * 51, "must be at most 50 characters"),
    ("number-length", "sms", "text", "to.number", "", "must not be empty"),
    ("number-length", "sms", "text", "to.number", "4" * 51, "must be at most 50 characters"),
    *[("e164", "sms", "text", "to.number", n, "E.164 number without a leading + or 00") for n in
      ["+447700900000", "00447700900000", "0447700900000", "44 77009", "44770090000a",
       "4477009000001234", "447700900000\n"]],
    ("e164", "whatsapp", "text", "from.number", "+447700900000", "at most 15 digits"),
    ("e164", "sms", "text", "to.number", 447700900000, "must be a string"),
    *[("addressing", ch, SUPPORTED[ch][0], field, DELETE, f"is required for {ch}") for ch, field in
      [("sms", "to.number"), ("sms", "from.number"), ("mms", "to.number"), ("mms", "from.number"),
       ("whatsapp", "to.number"), ("whatsapp", "from.number"), ("viber_service_msg", "to.number"),
       ("viber_service_msg", "from.id"), ("messenger", "to.id"), ("messenger", "from.id")]],
    ("addressing", "viber_service_msg", "text", "from", {"type": "viber_service_msg",
     "number": NUMBER}, "is required for viber_service_msg", "from.id"),
    ("addressing", "messenger", "text", "to", {"type": "messenger", "number": NUMBER},
     "is required for messenger", "to.id"),
    ("content-type", "sms", "image", "extra", 1, "sms does not support content type image; "
     "it supports: text", f"{C}.type"),
    *[("content-type", ch, c, "extra", 1, f"{ch} does not support content type {c}", f"{C}.type")
      for ch, c in [("sms", "template"), ("mms", "text"), ("viber_service_msg", "audio"),
                    ("messenger", "template"), ("viber_service_msg", "file")]],
    *[("content-type", ch, "custom", "extra", 1, "custom is not supported by any channel",
       f"{C}.type") for ch in ADDRESSES],
    *[("content-object", "whatsapp", c, f"{C}.{c}", DELETE, f"is required when content type is {c}")
      for c in SUPPORTED["whatsapp"]],
    ("content-object", "sms", "text", f"{C}.image", {"url": "x"}, "http", f"{C}.image.url"),
    ("content-object", "sms", "text", f"{C}.audio", {}, "is required", f"{C}.audio.url"),
    ("text-limit", "messenger", "text", f"{C}.text", "x" * 641, "must be at most 640 characters "
     "for messenger"),
    ("text-limit", "sms", "text", f"{C}.text", "x" * 1001, "at most 1000 characters for sms"),
    ("text-limit", "viber_service_msg", "text", f"{C}.text", "x" * 1001, "at most 1000 characters"),
    ("text-limit", "whatsapp", "text", f"{C}.text", "x" * 4097, "at most 4096 characters"),
    ("text-limit", "sms", "text", f"{C}.text", "", "must not be empty"),
    ("url", "mms", "image", f"{C}.image.url", "https://e.com/" + "a" * 1987, "at most 2000 char"),
    ("url", "mms", "image", f"{C}.image.url", "", "must not be empty"),
    ("url", "mms", "image", f"{C}.image.url", DELETE, "is required"),
    *[("url", "mms", "image", f"{C}.image.url", url, "must be an absolute http or https URL") for
      url in ["ftp://e.com/a.jpg", "e.com/a.jpg", "/a.jpg", "https://", "https:///a",
              "http://a b", "http://[::1"]],
    *[("url", "whatsapp", c, f"{C}.{c}.url", "file:///etc/passwd", "http or https") for c in
      ["image", "audio", "video", "file"]],
    ("caption", "mms", "image", f"{C}.image.caption", "c" * 3001, "at most 3000 characters"),
    ("caption", "whatsapp", "file", f"{C}.file.caption", "", "must not be empty"),
    ("template-name", "whatsapp", "template", f"{C}.template.name", DELETE, "is required"),
    ("template-name", "whatsapp", "template", f"{C}.template.name", "", "must not be empty"),
    ("template-parameters", "whatsapp", "template", f"{C}.template.parameters[0].default", 1,
     "must be a string"),
    ("viber-category", "viber_service_msg", "text", f"{V}.category", "x",
     "must be one of: transaction, promotion"),
    *[("viber-ttl", "viber_service_msg", "text", f"{V}.ttl", ttl, reason)
      for ttl, reason in [(29, "must be between 30 and 86400"), (86401, "between 30 and 86400"),
                          ("600", "must be an integer"), (True, "integer"), (600.0, "integer")]],
    ("messenger-category", "messenger", "text", "message.messenger.category", "promo",
     "must be one of: response, update, message_tag"),
    *[("messenger-tag", "messenger", "text", "message.messenger", {"category": "message_tag", **t},
       "is required (non-empty) when category is message_tag", "message.messenger.tag")
      for t in NO_TAGS],
    ("whatsapp-policy", "whatsapp", "text", "message.whatsapp.policy", "random",
     "must be one of: fallback, deterministic"),
    *[("locale", "whatsapp", "template", "message.whatsapp.locale", loc, "BCP 47 language tag")
      for loc in ["en_GB", "english-uk", "e", "en-", "", "en--GB", "x-private"]],
    ("locale", "whatsapp", "template", "message.whatsapp.locale", 5, "must be a string"),
    *[("expiry-time", "sms", "text", "failover.expiry_time", t, reason) for t, reason in
      [(14, "must be between 15 and 86400"), (86401, "must be between 15 and 86400"),
       ("600", "must be an integer"), (True, "integer"), (600.5, "integer"),
       (DELETE, "is required")]],
    ("condition-status", "sms", "text", "failover.condition_status", "sent",
     "must be one of: delivered, read"),
    ("condition-status", "sms", "text", "failover.condition_status", DELETE, "is required"),
    ("failover", "sms", "text", "failover", "600", "must be an object"),
]
# fmt: on


def _row_id(row: tuple[Any, ...]) -> str:
    rule, channel, content, field, value = row[:5]
    shown = "DELETE" if value is DELETE else repr(value)[:24]
    return f"{rule}:{channel}/{content}:{field}={shown}"


@pytest.mark.parametrize("row", ACCEPTED, ids=_row_id)
def test_each_rule_accepts_a_valid_message(row: tuple[Any, ...]) -> None:
    _, channel, content, field, value = row
    document = edit(request(message(channel, content)), {f"workflow[0].{field}": value})
    assert isinstance(validate_create_workflow(document), ValidWorkflowRequest)


@pytest.mark.parametrize("row", REFUSED, ids=_row_id)
def test_each_rule_refuses_an_invalid_message_naming_exactly_that_field(
    row: tuple[Any, ...],
) -> None:
    _, channel, content, field, value, reason, *named = row
    document = edit(request(message(channel, content)), {f"workflow[0].{field}": value})
    (parameter,) = refusal(document).invalid_parameters
    assert parameter.name == f"workflow[0].{named[0] if named else field}"
    assert reason in parameter.reason
    assert "Input should" not in parameter.reason
    assert "pydantic" not in parameter.reason


def test_the_table_shows_every_rule_both_accepted_and_refused() -> None:
    assert {row[0] for row in ACCEPTED} == {row[0] for row in REFUSED}


ONE, TWO = request(message()), request(message("whatsapp"), message("sms", failover=False))
W = "workflow[0]"
DOCUMENT_CASES = [  # rules of the request as a whole: document, field named or None, reason
    (ONE, None, ""),
    *[(v, "body", "must be a JSON object") for v in ([ONE], "x", None, 42, 1.5, True)],
    (edit(ONE, {"template": DELETE}), "template", "is required"),
    (edit(ONE, {"template": "fallback"}), "template", "must be one of: failover"),
    (edit(ONE, {"template": 1}), "template", "must be one of: failover"),
    (request(*[message()] * 10), None, ""),
    (edit(ONE, {"workflow": DELETE}), "workflow", "is required"),
    (edit(ONE, {"workflow": {}}), "workflow", "must be an array of 1 to 10 messages"),
    (request(), "workflow", "must contain at least 1 message"),
    (request(*[message()] * 11), "workflow", "must contain at most 10 messages"),
    (edit(TWO, {"workflow[1]": 5}), "workflow[1]", "must be an object"),
    (edit(TWO, {"workflow[1]": []}), "workflow[1]", "must be an object"),
    (TWO, None, ""),
    (SPEC_EXAMPLE, None, ""),  # a failover on the last message is allowed
    (edit(TWO, {f"{W}.failover": DELETE}), f"{W}.failover", "on every message except the last"),
    (edit(TWO, {f"{W}.failover": None}), f"{W}.failover", "is required on every message except"),
]


@pytest.mark.parametrize(("document", "name", "reason"), DOCUMENT_CASES)
def test_request_level_rules_accept_valid_and_name_exactly_the_invalid_field(
    document: Any, name: str | None, reason: str
) -> None:
    if name is None:
        assert isinstance(validate_create_workflow(document), ValidWorkflowRequest)
    else:
        assert [(p.name, reason in p.reason) for p in refusal(document).invalid_parameters] == [
            (name, True)
        ]


def test_the_spec_example_request_is_accepted_with_its_failover_on_the_last_message() -> None:
    valid = validate_create_workflow(copy.deepcopy(SPEC_EXAMPLE))
    assert valid.template == "failover"
    (only,) = valid.messages
    assert only.to.type is Channel.SMS
    assert only.from_.number == "447700900000"
    assert only.message.content.type is ContentType.TEXT
    assert only.failover is not None
    assert only.failover.condition_status is ConditionStatus.DELIVERED


def test_errors_in_several_messages_are_all_reported_at_once_in_request_order() -> None:
    document = request(message("whatsapp"), message("messenger"), message("sms", failover=False))
    changes = {
        "template": "other",
        "workflow[0].failover.expiry_time": 5,  # a structural error hides no other message's
        "workflow[0].to.number": "+44",
        "workflow[1].failover": DELETE,
        "workflow[1].message.content.text": "x" * 641,  # channel rules
        "workflow[1].from.id": DELETE,
        "workflow[2].message.content.type": "image",
    }
    document = edit(document, changes)
    assert names(document) == [
        "template",
        "workflow[0].to.number",
        "workflow[0].failover.expiry_time",
        "workflow[1].from.id",
        "workflow[1].message.content.text",
        "workflow[1].failover",
        "workflow[2].message.content.type",
    ]


def test_a_missing_field_is_named_after_the_fields_present_beside_it() -> None:
    assert names({"workflow": [5], "extra": True}) == ["workflow[0]", "template"]


def test_unknown_keys_are_kept_on_the_typed_messages() -> None:
    changes = {
        "callback": "https://example.com/hook",
        "workflow[0].client_ref": {"nested": [1, None]},
        "workflow[0].message.content.text_extra": "kept",
        "workflow[1].to.x-custom": 7,
    }
    document = edit(TWO, changes)
    valid = validate_create_workflow(document)
    assert valid.messages[0].model_extra == {"client_ref": {"nested": [1, None]}}
    assert valid.messages[1].to.model_extra == {"x-custom": 7}
    assert valid.messages[0].to.type is Channel.WHATSAPP
    assert valid.messages[1].failover is None


@pytest.mark.parametrize("value", [True, False, "600", "15", 600.0])
@pytest.mark.parametrize("field", ["failover.expiry_time", f"{V}.ttl"])
def test_booleans_numeric_strings_and_floats_are_refused_for_integers(
    field: str, value: object
) -> None:
    document = edit(TWO, {f"{W}.{field}": value})
    assert [(p.name, p.reason) for p in refusal(document).invalid_parameters] == [
        (f"{W}.{field}", "must be an integer")
    ]


def test_max_messages_is_honoured() -> None:
    assert names(request(*[message()] * 11)) == ["workflow"]
    three = request(message(), message(), message())
    assert names(three, max_messages=2) == ["workflow"]
    assert len(validate_create_workflow(three, max_messages=3).messages) == 3
    assert len(validate_create_workflow(request(message()), max_messages=1).messages) == 1


# Whatever the document, the answer is a result or an InvalidRequest naming request fields.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "failover", "sms", "text", "message_tag", "x" * 5000, "600", "en-GB"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["to", "from", "type", "failover", "workflow"]) | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    items: Any = ()
    if isinstance(node, dict | list):
        items = node.items() if isinstance(node, dict) else enumerate(node)
    return [prefix, *[p for key, child in items for p in _paths(child, (*prefix, key))]]


VALID_DOCUMENTS = [
    SPEC_EXAMPLE,
    TWO,
    request(message("messenger"), message("mms", "image"), message("viber_service_msg", "image")),
    request(message("whatsapp", "template"), message("whatsapp", "file")),
]


@st.composite
def mutated_requests(draw: st.DrawFn) -> Any:
    """A valid request with one to three fields replaced by any JSON value, or removed."""
    document: Any = copy.deepcopy(draw(st.sampled_from(VALID_DOCUMENTS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        value = draw(st.just(DELETE) | JSON_VALUES)
        if not path:
            return None if value is DELETE else value
        node = document
        for part in path[:-1]:
            node = node[part]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return document


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES | mutated_requests())
def test_any_document_is_either_accepted_or_refused_with_named_fields(document: Any) -> None:
    try:
        valid = validate_create_workflow(document)
    except InvalidRequest as error:
        parameters = error.invalid_parameters
        assert parameters
        assert all(p.name.startswith(("body", "template", "workflow")) for p in parameters)
        assert all(p.reason and "Input should" not in p.reason for p in parameters)
        assert len({p.name for p in parameters}) == len(parameters)
    else:
        assert len(valid.messages) == len(document["workflow"])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES | mutated_requests(), st.integers(1, 12))
def test_the_one_pass_json_path_judges_exactly_like_the_thorough_path(
    document: Any, max_messages: int
) -> None:
    """The server validates raw bytes in one pass; it must accept and refuse the same bodies."""
    body = json.dumps(document).encode()
    outcomes = []
    for validate in (
        lambda: validate_create_workflow(copy.deepcopy(document), max_messages=max_messages),
        lambda: validate_create_workflow_json(body, max_messages=max_messages),
    ):
        try:
            valid = validate()
        except InvalidRequest as error:
            outcomes.append(error.invalid_parameters)
        else:
            outcomes.append(valid.messages)
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("body", [b"{", b"", b"[1,", b"\xff", b'{"template": "failover",}'])
def test_malformed_json_is_named_as_the_body(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate_create_workflow_json(body)
    assert [p.name for p in refused.value.invalid_parameters] == ["body"]


def test_thousands_of_invalid_template_parameters_get_a_short_answer() -> None:
    """A 250 KB body of bad parameters once made a 1.8 MB answer and 166 ms of work."""
    document = request(message("whatsapp", "template", failover=False))
    parameters = [{"value": "1"}] * 20_000  # each without its `default`
    document["workflow"][0]["message"]["content"]["template"]["parameters"] = parameters
    body = json.dumps(document).encode()
    assert len(body) > 250_000
    with pytest.raises(InvalidRequest) as refused:
        validate_create_workflow_json(body)
    assert [p.name for p in refused.value.invalid_parameters] == [
        "workflow[0].message.content.template.parameters[0].default"
    ]


def test_past_a_hundred_invalid_fields_the_first_hundred_are_listed_with_the_count() -> None:
    invalid = message("sms", failover=False)
    invalid["to"]["number"] = "+44"
    invalid["message"]["content"]["text"] = ""
    document = request(*[message("sms") for _ in range(1)], *[invalid] * 299)
    with pytest.raises(InvalidRequest) as refused:
        validate_create_workflow(document, max_messages=300)
    listed = [p.name for p in refused.value.invalid_parameters]
    assert len(listed) == 100
    assert listed[:3] == ["workflow[1].to.number", "workflow[1].message.content.text",
                          "workflow[1].failover"]  # fmt: skip
    assert "the first 100 found are listed" in refused.value.detail
    assert "896 fields are invalid" in refused.value.detail  # 298 x 3 + the last one's 2
