"""Stored workflows rendered as the API shows them (models in `response_models`)."""

from __future__ import annotations

from typing import Any

import msgspec

from opendispatch.api.response_models import (
    Link,
    WorkflowLinks,
    WorkflowPage,
    WorkflowPageEmbedded,
    WorkflowPageLinks,
    WorkflowSummary,
    WorkflowView,
)
from opendispatch.store.records import WorkflowRecord
from opendispatch.timefmt import iso_ms

__all__ = ["workflow_href", "workflow_page", "workflow_view"]


def workflow_href(dispatch_uuid: str) -> str:
    """The `href` the spec's webhook payloads carry; OpenDispatch serves it."""
    return f"/workflows/{dispatch_uuid}"


def _summary_fields(record: WorkflowRecord) -> dict[str, Any]:
    return {
        "dispatch_uuid": record.dispatch_uuid,
        "template": record.template,
        "status": record.status,
        "created_at": iso_ms(record.created_at_ms),
        "updated_at": iso_ms(record.updated_at_ms),
        "_links": WorkflowLinks(self=Link(href=workflow_href(record.dispatch_uuid))),
    }


def workflow_view(record: WorkflowRecord) -> bytes:
    submitted = msgspec.json.decode(record.request_json)
    view = WorkflowView(**_summary_fields(record), workflow=submitted["workflow"])
    return view.model_dump_json(by_alias=True).encode()


def workflow_page(
    records: list[WorkflowRecord], *, page_size: int, self_href: str, next_href: str | None
) -> bytes:
    page = WorkflowPage(
        page_size=page_size,
        _embedded=WorkflowPageEmbedded(
            workflows=[WorkflowSummary(**_summary_fields(record)) for record in records]
        ),
        _links=WorkflowPageLinks(
            self=Link(href=self_href), next=None if next_href is None else Link(href=next_href)
        ),
    )
    return page.model_dump_json(by_alias=True, exclude_none=True).encode()
