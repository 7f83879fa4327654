"""Request models of `POST /v0.1/dispatch`, the single source of its OpenAPI schema.

They check structure only (types, lengths, ranges, formats); the rules that tie one field to
another (channel addressing, content types per channel, failover placement) live in
`opendispatch.api.validation`, which validates one workflow message at a time with these.

Models are strict (JSON integers only, never "600" or true) and keep unknown keys, as the
Dispatch API is a pass-through for the Messages API. Enum fields are the one exception to
strictness: decoded JSON carries their values as plain strings, which strict mode would refuse.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StringConstraints
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

__all__ = [
    "BCP47_PATTERN",
    "E164_PATTERN",
    "EXPIRY_TIME_RANGE",
    "TTL_RANGE",
    "AudioContent",
    "Channel",
    "ConditionStatus",
    "ContentType",
    "CreateWorkflowRequest",
    "Failover",
    "FileContent",
    "FromAddress",
    "ImageContent",
    "MessageContent",
    "MessageProperty",
    "MessengerCategory",
    "MessengerOptions",
    "StrictModel",
    "TemplateContent",
    "TemplateParameter",
    "ToAddress",
    "Url",
    "ViberCategory",
    "ViberServiceOptions",
    "VideoContent",
    "WhatsAppOptions",
    "WhatsAppPolicy",
    "WorkflowMessage",
]

EXPIRY_TIME_RANGE = (15, 86_400)
TTL_RANGE = (30, 86_400)
_URL_MAX_LENGTH = 2000
_URL_REASON = "must be an absolute http or https URL with a host"

# E.164 without the leading `+` or `00`: country code first, so never a leading zero.
E164_PATTERN = r"^[1-9][0-9]{0,14}$"
# RFC 5646 `langtag` (no grandfathered or private-use-only tags). The language subtag is
# limited to ISO 639's 2-3 letters (plus extlang): the 4-8 letter forms are reserved or
# unregistered, and accepting them would let mistakes such as `english-uk` through.
BCP47_PATTERN = (
    r"^[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}"  # language, extlang
    r"(?:-[A-Za-z]{4})?"  # script
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"  # variants
    r"(?:-[0-9A-WYZa-wyz](?:-[A-Za-z0-9]{2,8})+)*"  # extensions
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?$"  # private use
)

_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


def _check_url(value: str) -> str:
    """Refuse a URL no provider could fetch now, rather than fail the message later."""
    if _URL_FORBIDDEN.search(value) is not None:
        raise PydanticCustomError("url_format", _URL_REASON)
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise PydanticCustomError("url_format", _URL_REASON) from None
    if parts.scheme not in ("http", "https") or not host:
        raise PydanticCustomError("url_format", _URL_REASON)
    return value


_Url = Annotated[
    str,
    StringConstraints(min_length=1, max_length=_URL_MAX_LENGTH),
    AfterValidator(_check_url),
]
Url = _Url  # for the Messages API v1's models
_Caption = Annotated[str, StringConstraints(min_length=1, max_length=3000)]
_AddressId = Annotated[str, StringConstraints(min_length=1, max_length=50)]
_AddressNumber = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=E164_PATTERN)
]


class Channel(StrEnum):
    SMS = "sms"
    MMS = "mms"
    VIBER_SERVICE_MSG = "viber_service_msg"
    MESSENGER = "messenger"
    WHATSAPP = "whatsapp"


class ConditionStatus(StrEnum):
    DELIVERED = "delivered"
    READ = "read"


class ContentType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"
    TEMPLATE = "template"
    CUSTOM = "custom"


class ViberCategory(StrEnum):
    TRANSACTION = "transaction"
    PROMOTION = "promotion"


class MessengerCategory(StrEnum):
    RESPONSE = "response"
    UPDATE = "update"
    MESSAGE_TAG = "message_tag"


class WhatsAppPolicy(StrEnum):
    FALLBACK = "fallback"
    DETERMINISTIC = "deterministic"


class StrictModel(BaseModel):
    """Strict about types (JSON integers only), keeping unknown keys (passed through)."""

    model_config = ConfigDict(strict=True, extra="allow")


_CHANNEL_DESCRIPTION = "The type of message that you want to send."


class ToAddress(StrictModel):
    type: Annotated[Channel, Strict(False)] = Field(
        description=_CHANNEL_DESCRIPTION, examples=["sms"]
    )
    id: _AddressId | None = Field(
        None,
        description="The ID of the message recipient. Messenger: the `from.id` value you "
        "received in the inbound messenger event. Not used by SMS, MMS, Viber or WhatsApp.",
        examples=["0123456789012345"],
    )
    number: _AddressNumber | None = Field(
        None,
        description="SMS, MMS, Viber or WhatsApp: the phone number of the message recipient "
        "in the E.164 format. Don't use a leading + or 00 when entering a phone number, "
        "start with the country code, for example, 447700900000. Not used by Messenger.",
        examples=["447700900000"],
    )


class FromAddress(StrictModel):
    type: Annotated[Channel, Strict(False)] = Field(
        description=_CHANNEL_DESCRIPTION + " Must be the same as `to.type`.", examples=["sms"]
    )
    id: _AddressId | None = Field(
        None,
        description="Your ID for the platform that you are sending from. Messenger: the "
        "`to.id` value you received in the inbound messenger event. Viber: your Service "
        "Message ID. Not used by SMS, MMS or WhatsApp.",
        examples=["0123456789012345"],
    )
    number: _AddressNumber | None = Field(
        None,
        description="SMS or MMS: the phone number of the message sender in the E.164 format. "
        "WhatsApp: your WhatsApp Business Number. Not used by Messenger or Viber.",
        examples=["447700900000"],
    )


class ImageContent(StrictModel):
    url: _Url = Field(
        description="The URL of the image attachment. `messenger` and `mms` support .jpg, "
        ".jpeg, .png and .gif; `viber_service_msg` and `whatsapp` support .jpg, .jpeg and .png.",
        examples=["https://example.com/image.jpg"],
    )
    caption: _Caption | None = Field(
        None,
        description="Additional text to accompany the image. Supported by WhatsApp and MMS.",
        examples=["Additional text to accompany the image."],
    )


class AudioContent(StrictModel):
    url: _Url = Field(
        description="The URL of the audio attachment. `messenger` supports .mp3. `whatsapp` "
        "supports .aac, .m4a, .amr, .mp3 and .opus.",
        examples=["https://example.com/audio.mp3"],
    )


class VideoContent(StrictModel):
    url: _Url = Field(
        description="The URL of the video attachment. `messenger` supports .mp4; `whatsapp` "
        "supports .mp4 and .3gpp (H.264 video and AAC audio only).",
        examples=["https://example.com/video.mp4"],
    )


class FileContent(StrictModel):
    url: _Url = Field(
        description="The URL of the file attachment. `messenger` supports a wide range of "
        "attachments including .zip, .csv and .pdf. `whatsapp` supports .pdf, .doc(x), "
        ".ppt(x) and .xls(x).",
        examples=["https://example.com/file.zip"],
    )
    caption: _Caption | None = Field(
        None,
        description="Additional text to accompany the file. Supported by WhatsApp and MMS.",
        examples=["Additional text to accompany the image."],
    )


class TemplateParameter(StrictModel):
    default: str = Field(
        description="The parameters are an array. The first value being {{1}} in the template.",
        examples=["1234"],
    )


class TemplateContent(StrictModel):
    name: str | None = Field(
        None,
        description="The name of the template. Required when `content.type` is `template`.",
        examples=["whatsapp:hsm:technology:vonage:verify"],
    )
    # fail_fast: the first invalid parameter is reported, not every one of thousands (their
    # errors cost more to find and word than the rest of the request together).
    parameters: list[TemplateParameter] | None = Field(
        None, description="The values of the template's placeholders, in order.", fail_fast=True
    )


class MessageContent(StrictModel):
    type: Annotated[ContentType, Strict(False)] = Field(
        description="The type of message that you are sending. Messenger supports `text`, "
        "`image`, `audio`, `video` and `file`. Viber Business Messages supports `image` and "
        "`text`. WhatsApp supports `template`, `text`, `image`, `audio`, `video` and `file`. "
        "SMS supports `text`. MMS supports `image`. The object of the same name must be given.",
        examples=["text"],
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="The text of the message. Messenger: limited to 640 characters. SMS or "
        "Viber: 1000 characters. WhatsApp: 4096 characters.",
        examples=["Vonage Verification code: 64873. Valid for 10 minutes."],
    )
    image: ImageContent | None = Field(None, description="Required when `type` is `image`.")
    audio: AudioContent | None = Field(None, description="Required when `type` is `audio`.")
    video: VideoContent | None = Field(None, description="Required when `type` is `video`.")
    file: FileContent | None = Field(None, description="Required when `type` is `file`.")
    template: TemplateContent | None = Field(
        None, description="Required when `type` is `template` (WhatsApp only)."
    )


class ViberServiceOptions(StrictModel):
    category: Annotated[ViberCategory, Strict(False)] | None = Field(
        None,
        description="The use of different category tags enables the business to send messages "
        "for different use cases. The first message sent from a business to a user must be "
        "personal, informative and targeted, not promotional. Defaults to `transaction`.",
        examples=["transaction"],
    )
    ttl: int | None = Field(
        None,
        ge=TTL_RANGE[0],
        le=TTL_RANGE[1],
        description="Only valid for Viber Business Messages. The time-to-live of the message "
        "in seconds: if it is not delivered within that time, it is deleted.",
        examples=[600],
    )


class MessengerOptions(StrictModel):
    category: Annotated[MessengerCategory, Strict(False)] | None = Field(
        None,
        description="Vonage maps `category` to Facebook Messenger's `messaging_type`, which "
        "must comply with its Messaging Types policy. If `message_tag` is used, then an "
        "additional `tag` is mandatory. Defaults to `response`.",
        examples=["message_tag"],
    )
    tag: str | None = Field(
        None,
        description="A Messenger message tag, required when `category` is `message_tag`. The "
        "full list is on developers.facebook.com.",
        examples=["ticket_update"],
    )


class WhatsAppOptions(StrictModel):
    policy: Annotated[WhatsAppPolicy, Strict(False)] | None = Field(
        None,
        description="How a Message Template's language is chosen: `deterministic` delivers it "
        "in exactly the language and locale asked for; `fallback` (deprecated by WhatsApp) "
        "uses the language of the user's device if available.",
        examples=["deterministic"],
    )
    locale: str | None = Field(
        None,
        pattern=BCP47_PATTERN,
        description="The locale as a BCP 47 language tag: `en-GB` refers to the `en_GB` "
        "template for WhatsApp.",
        examples=["en-GB"],
    )


class MessageProperty(StrictModel):
    content: MessageContent = Field(
        description="The content of the message, as in the Messages API."
    )
    viber_service_msg: ViberServiceOptions | None = Field(
        None, description="Options for Viber Business Messages."
    )
    messenger: MessengerOptions | None = Field(None, description="Options for Messenger.")
    whatsapp: WhatsAppOptions | None = Field(None, description="Options for WhatsApp.")


class Failover(StrictModel):
    expiry_time: int = Field(
        ge=EXPIRY_TIME_RANGE[0],
        le=EXPIRY_TIME_RANGE[1],
        description="In seconds. Minimum value is 15 and maximum value is 86,400 seconds (1 day).",
        examples=[600],
    )
    condition_status: Annotated[ConditionStatus, Strict(False)] = Field(
        description="The status the message must reach within `expiry_time` before failing "
        "over. Options are delivered or read.",
        examples=["delivered"],
    )


class WorkflowMessage(StrictModel):
    to: ToAddress = Field(description="The recipient; `to.type` is the message's channel.")
    from_: FromAddress = Field(alias="from", description="The sender, on the same channel.")
    message: MessageProperty = Field(description="The message, as in the Messages API.")
    failover: Failover | None = Field(
        None,
        description="When to fail over to the next message. All messages except the last must "
        "contain a failover attribute.",
    )


_EXAMPLE_REQUEST: JsonDict = {
    "template": "failover",
    "workflow": [
        {
            "to": {"type": "whatsapp", "number": "447700900000"},
            "from": {"type": "whatsapp", "number": "447700900001"},
            "message": {"content": {"type": "text", "text": "Your code is 64873."}},
            "failover": {"expiry_time": 600, "condition_status": "read"},
        },
        {
            "to": {"type": "sms", "number": "447700900000"},
            "from": {"type": "sms", "number": "447700900001"},
            "message": {"content": {"type": "text", "text": "Your code is 64873."}},
        },
    ],
}


class CreateWorkflowRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_REQUEST]})

    template: Literal["failover"] = Field(
        description="The template that the Dispatch API will execute. The only available "
        "value is failover.",
        examples=["failover"],
    )
    workflow: list[WorkflowMessage] = Field(
        min_length=1,
        max_length=10,
        description="The messages to try in order, each reflecting the Messages API's message "
        "object. All messages except the last must contain a `failover` object.",
    )
