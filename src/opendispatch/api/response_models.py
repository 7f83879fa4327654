"""Response models: what `/openapi.json` documents is what the handlers render."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DispatchAccepted",
    "ErrorBody",
    "Health",
    "InjectedStatusAccepted",
    "InvalidParameterBody",
    "Link",
    "MessageView",
    "ReplayedWebhooks",
    "SendView",
    "Usage",
    "WebhookEntry",
    "WebhookEntryLinks",
    "WebhookPage",
    "WebhookPageEmbedded",
    "WebhookView",
    "WorkflowCancelled",
    "WorkflowLinks",
    "WorkflowPage",
    "WorkflowPageLinks",
    "WorkflowSummary",
    "WorkflowView",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class DispatchAccepted(_Model):
    dispatch_uuid: str = Field(
        description="The parent ID for the workflow request.",
        examples=["01937a2c-5b0e-7d3a-9c1e-6f2b8a4d0e51"],
    )
    warnings: list[InvalidParameterBody] = Field(
        default_factory=list,
        description="An extension, present only when there is something to warn about: "
        "fields that are valid but can never take effect, such as a `condition_status` of "
        "`read` on sms or mms, which never report reads. The workflow is accepted anyway.",
    )


class WorkflowCancelled(_Model):
    """The answer to `POST /v0.1/dispatch/{dispatch_uuid}/cancel` (an extension)."""

    dispatch_uuid: str
    status: str = Field(
        description="Always `cancelled`: the workflow was running and now has stopped; its "
        "final report, with this status, follows its status webhooks already due.",
        examples=["cancelled"],
    )


class InvalidParameterBody(_Model):
    name: str = Field(description="Path of the invalid field, e.g. `workflow[0].to.number`.")
    reason: str


class ErrorBody(_Model):
    type: str = Field(examples=["https://www.nexmo.com/messages/Errors#InvalidParams"])
    title: str = Field(examples=["Bad Request"])
    detail: str = Field(examples=["Your request parameters did not validate."])
    instance: str = Field(description="The request id; the server log carries it too.")
    invalid_parameters: list[InvalidParameterBody] = Field(
        description="Every invalid field, by its path; empty for errors that are not about fields."
    )


class Health(_Model):
    status: str = Field(examples=["ok"])
    reason: str | None = Field(
        default=None,
        description="With `failed`: database deleted, replaced, unreadable or damaged.",
        examples=["database deleted"],
    )


class Link(_Model):
    href: str


class WorkflowLinks(_Model):
    self: Link


class WorkflowSummary(_Model):
    dispatch_uuid: str
    template: str = Field(examples=["failover"])
    status: str = Field(
        description="`accepted` (stored, not yet running), `in_progress`, `completed`, `error`, "
        "or `cancelled` (an extension: stopped by `POST .../cancel`)."
    )
    created_at: str = Field(description="ISO 8601 UTC with milliseconds.")
    updated_at: str = Field(description="ISO 8601 UTC with milliseconds.")
    links: WorkflowLinks = Field(alias="_links")


class Usage(_Model):
    price: str = Field(examples=["0.0333"], description="A decimal string.")
    currency: str = Field(examples=["EUR"])


class MessageErrorBody(_Model):
    code: int = Field(examples=[1300])
    reason: str = Field(examples=["Not part of the provider network"])


class StatusEntry(_Model):
    status: str = Field(examples=["delivered"])
    timestamp: str


class MessageLinks(_Model):
    self: Link
    workflow: Link


class SendView(_Model):
    state: str = Field(
        description="`pending`, `sending`, `sent` (a provider accepted it), `failed`, "
        "`cancelled` (its step ended first), or `unknown` (the request reached the provider "
        "and no answer came back: it is not sent again)."
    )
    attempts: int
    provider_message_id: str | None = Field(
        default=None, description="The provider's own id for the message."
    )
    last_error: str | None = Field(
        default=None, description="Why the last attempt did not settle it (each provider tried)."
    )


class MessageView(_Model):
    message_uuid: str
    step: int = Field(description="Position of the message in the submitted workflow (from 0).")
    channel: str
    status: str | None = Field(
        description="The furthest status reached; null until the provider answers."
    )
    sent_at: str = Field(description="When the workflow asked for this message to be sent.")
    history: list[StatusEntry] = Field(description="Every status reported, in arrival order.")
    usage: Usage | None = None
    error: MessageErrorBody | None = None
    provider: str | None = Field(
        default=None,
        description="The provider that carried it: `sandbox`, or a provider account's name "
        "(the last one tried while none has answered).",
        examples=["twilio-main"],
    )
    send: SendView | None = Field(default=None, description="How sending it went.")
    links: MessageLinks = Field(alias="_links")


class WebhookView(_Model):
    webhook_id: str = Field(
        description="Sent as the `webhook-id` header; stable across retries and replays."
    )
    event_id: str = Field(description="The same as `webhook_id` (its earlier name).")
    kind: str = Field(examples=["message_status", "final_report"])
    message_uuid: str | None = None
    status: str = Field(description="The message status forwarded, or the workflow's outcome.")
    url: str
    state: str = Field(
        description="`pending`, `delivered`, `dead` (gave up), or `held` (a final report waiting "
        "for its workflow's earlier webhooks)."
    )
    attempts: int = Field(description="Attempts since it was created, or last replayed.")
    replays: int = Field(default=0, description="How often an operator replayed it.")
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: str | None = Field(default=None, description="When it is tried next.")
    created_at: str
    delivered_at: str | None = None


class WebhookEntryLinks(_Model):
    workflow: Link
    replay: Link = Field(description="POST here to deliver it again (when delivered or dead).")


class WebhookEntry(WebhookView):
    dispatch_uuid: str
    links: WebhookEntryLinks = Field(alias="_links")


class WebhookPageEmbedded(_Model):
    webhooks: list[WebhookEntry]


class WebhookPage(_Model):
    page_size: int
    embedded: WebhookPageEmbedded = Field(alias="_embedded")
    links: WorkflowPageLinks = Field(alias="_links")


class InjectedStatusAccepted(_Model):
    message_uuid: str
    dispatch_uuid: str = Field(description="The workflow the message belongs to.")
    status: str = Field(
        examples=["delivered"],
        description="The status injected: it is applied, forwarded and counted as a "
        "provider's would be.",
    )


class ReplayedWebhooks(_Model):
    replayed: int = Field(description="How many webhooks were put back in the queue.")


class WorkflowView(WorkflowSummary):
    usage: Usage = Field(description="The sum of the messages' prices so far.")
    next_deadline: str | None = Field(
        default=None,
        description="When the current step expires (or the last message's final-status "
        "deadline passes); null once the workflow has ended.",
    )
    messages: list[MessageView] = Field(description="Every message sent so far, in order.")
    webhooks: list[WebhookView] = Field(description="Every webhook and its delivery state.")
    workflow: list[dict[str, Any]] = Field(
        description="The workflow's messages exactly as they were submitted."
    )


class WorkflowPageLinks(_Model):
    self: Link
    next: Link | None = Field(
        default=None, description="The next (older) page; absent on the last page."
    )


class WorkflowPageEmbedded(_Model):
    workflows: list[WorkflowSummary]


class WorkflowPage(_Model):
    page_size: int
    embedded: WorkflowPageEmbedded = Field(alias="_embedded")
    links: WorkflowPageLinks = Field(alias="_links")
