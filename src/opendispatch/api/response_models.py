"""Response models: what `/openapi.json` documents is what the handlers render."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DispatchAccepted",
    "ErrorBody",
    "Health",
    "InvalidParameterBody",
    "Link",
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


class Link(_Model):
    href: str


class WorkflowLinks(_Model):
    self: Link


class WorkflowSummary(_Model):
    dispatch_uuid: str
    template: str = Field(examples=["failover"])
    status: str = Field(
        description="`accepted` (stored, not yet running), `in_progress`, `completed` or `error`."
    )
    created_at: str = Field(description="ISO 8601 UTC with milliseconds.")
    updated_at: str = Field(description="ISO 8601 UTC with milliseconds.")
    links: WorkflowLinks = Field(alias="_links")


class WorkflowView(WorkflowSummary):
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
