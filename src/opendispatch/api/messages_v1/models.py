"""Request models of `POST /v1/messages` (Vonage's Messages API v1), the single source of its
OpenAPI schema.

As for the Dispatch API (`api.request_models`), the models check structure only (types,
lengths, ranges, formats), are strict (JSON integers only) and keep unknown keys; the rules
that depend on the channel live in `messages_v1.validation`. Content objects are the Dispatch
API's own (`image`, `audio`, `video`, `file` keep their limits), since both APIs hand the same
content to the same providers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints
from pydantic.config import JsonDict

from opendispatch.api.request_models import (
    EXPIRY_TIME_RANGE,
    AudioContent,
    ConditionStatus,
    FileContent,
    ImageContent,
    MessengerOptions,
    StrictModel,
    Url,
    ViberCategory,
    VideoContent,
    WhatsAppPolicy,
)

__all__ = [
    "V1_TTL_RANGE",
    "ConditionExtension",
    "MessageAccepted",
    "SendMessageRequest",
    "SmsOptions",
    "V1Channel",
    "V1Message",
    "V1MessageType",
    "V1Template",
    "V1ViberOptions",
    "V1VideoContent",
    "V1WhatsAppOptions",
    "WebhookVersion",
]

V1_TTL_RANGE = (30, 259_200)  # Viber's, in seconds (Vonage's SDK models)


class V1Channel(StrEnum):
    """v1's channel names; `rcs` is named so that refusing it can say why."""

    SMS = "sms"
    MMS = "mms"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    VIBER_SERVICE = "viber_service"
    RCS = "rcs"


class V1MessageType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"
    TEMPLATE = "template"
    STICKER = "sticker"
    CUSTOM = "custom"
    VCARD = "vcard"


class WebhookVersion(StrEnum):
    V0_1 = "v0.1"
    V1 = "v1"


class SmsEncoding(StrEnum):
    TEXT = "text"
    UNICODE = "unicode"
    AUTO = "auto"


class V1VideoContent(VideoContent):
    caption: Annotated[str, StringConstraints(min_length=1, max_length=3000)] | None = Field(
        None, description="Additional text to accompany the video (WhatsApp)."
    )


class V1Template(StrictModel):
    name: str = Field(
        description="The name of the WhatsApp template.",
        examples=["verify"],
    )
    parameters: list[str] | None = Field(
        None,
        description="The values of the template's placeholders, in order: the first one is {{1}}.",
        examples=[["64873"]],
        fail_fast=True,
    )


class SmsOptions(StrictModel):
    encoding_type: Annotated[SmsEncoding, Strict(False)] | None = Field(
        None, description="`text`, `unicode` or `auto` (the default)."
    )
    content_id: str | None = Field(None, description="DLT template id (India).")
    entity_id: str | None = Field(None, description="DLT entity id (India).")


class V1WhatsAppOptions(StrictModel):
    policy: Annotated[WhatsAppPolicy, Strict(False)] | None = Field(
        None, description="How a template's language is chosen; `deterministic`."
    )
    locale: str | None = Field(
        None,
        description="The template's locale, as WhatsApp writes it (`en_GB`) or as a BCP 47 "
        "tag (`en-GB`). Defaults to `en_US`.",
        examples=["en_GB"],
    )


class V1ViberOptions(StrictModel):
    category: Annotated[ViberCategory, Strict(False)] | None = Field(
        None, description="`transaction` or `promotion`."
    )
    ttl: int | None = Field(
        None,
        ge=V1_TTL_RANGE[0],
        le=V1_TTL_RANGE[1],
        description="Seconds to try delivering the message.",
    )
    type: str | None = Field(None, description="Viber's message type (passed on).")


class ConditionExtension(StrictModel):
    """OpenDispatch's extension: Dispatch's timed condition on a v1 message."""

    expiry_time: int = Field(
        ge=EXPIRY_TIME_RANGE[0],
        le=EXPIRY_TIME_RANGE[1],
        description="In seconds (15 to 86,400): how long the message has to reach "
        "`condition_status` before the next message of the failover list is sent.",
        examples=[600],
    )
    condition_status: Annotated[ConditionStatus, Strict(False)] = Field(
        description="`delivered` or `read`.", examples=["read"]
    )


_Address = Annotated[str, StringConstraints(min_length=1, max_length=50)]


class V1Message(StrictModel):
    channel: Annotated[V1Channel, Strict(False)] = Field(
        description="`sms`, `mms`, `whatsapp`, `messenger` or `viber_service`.",
        examples=["whatsapp"],
    )
    message_type: Annotated[V1MessageType, Strict(False)] = Field(
        description="The kind of content; the field of the same name carries it.",
        examples=["text"],
    )
    to: _Address = Field(
        description="The recipient: an E.164 number without `+` or `00` (SMS, MMS, WhatsApp, "
        "Viber), or a Messenger user id.",
        examples=["447700900000"],
    )
    from_: _Address = Field(
        alias="from",
        description="The sender: a number, an SMS sender id (up to 11 letters and digits), a "
        "Viber service message id or a Messenger page id.",
        examples=["447700900001"],
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="SMS and Viber: up to 1,000 characters; Messenger 640; WhatsApp 4,096.",
    )
    image: ImageContent | None = None
    audio: AudioContent | None = None
    video: V1VideoContent | None = None
    file: FileContent | None = None
    template: V1Template | None = Field(None, description="WhatsApp only.")
    client_ref: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None, description="Your reference, returned in every status webhook of the message."
    )
    webhook_url: Url | None = Field(
        None,
        description="Where this message's status webhooks go, instead of the application's "
        "status URL.",
    )
    webhook_version: Annotated[WebhookVersion, Strict(False)] | None = Field(
        None, description="The shape of the status webhooks: `v1` (the default) or `v0.1`."
    )
    sms: SmsOptions | None = None
    whatsapp: V1WhatsAppOptions | None = None
    viber_service: V1ViberOptions | None = None
    messenger: MessengerOptions | None = None
    opendispatch: ConditionExtension | None = Field(
        None,
        description="OpenDispatch's extension, not Vonage's: fail over to the next message "
        "also when this one has not reached `condition_status` within `expiry_time`, as a "
        "Dispatch workflow does. On the last message it is the condition the whole failover "
        "must meet.",
    )


_EXAMPLE: JsonDict = {
    "channel": "whatsapp",
    "message_type": "text",
    "to": "447700900000",
    "from": "447700900001",
    "text": "Your code is 64873.",
    "client_ref": "order-1234",
    "failover": [
        {
            "channel": "sms",
            "message_type": "text",
            "to": "447700900000",
            "from": "447700900001",
            "text": "Your code is 64873.",
        }
    ],
}


class SendMessageRequest(V1Message):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    failover: list[V1Message] | None = Field(
        None,
        min_length=1,
        description="Messages to send in order, each when the one before it is rejected or "
        "undeliverable (or, with the `opendispatch` extension, misses its condition).",
    )


class MessageAccepted(BaseModel):
    """The 202 of `POST /v1/messages`."""

    message_uuid: str = Field(
        description="The first message's id; each status webhook of it carries this id.",
        examples=["aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"],
    )
    workflow_id: str | None = Field(
        None,
        description="Only with a `failover` list: the workflow's id, in every status webhook "
        "of its messages; `GET /v0.1/dispatch/{workflow_id}` shows the whole workflow.",
        examples=["019a2b3c-4d5e-7f60-8a9b-0c1d2e3f4a5b"],
    )
    warnings: list[dict[str, str]] | None = Field(
        None,
        description="OpenDispatch's extension, only when a field is valid but can never take "
        "effect (an `opendispatch.condition_status` of `read` on SMS).",
    )
