"""Stored workflows rendered as the API shows them (models in `response_models`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from opendispatch.api.response_models import (
    Link,
    MessageErrorBody,
    MessageLinks,
    MessageView,
    SendView,
    StatusEntry,
    Usage,
    WebhookEntry,
    WebhookEntryLinks,
    WebhookPage,
    WebhookPageEmbedded,
    WebhookView,
    WorkflowLinks,
    WorkflowPage,
    WorkflowPageEmbedded,
    WorkflowPageLinks,
    WorkflowSummary,
    WorkflowView,
)
from opendispatch.engine.model import MessageState, WorkflowState
from opendispatch.runtime.shell import decode_state
from opendispatch.store.records import LoadedWorkflow, SendRecord, WebhookRecord, WorkflowRecord
from opendispatch.timefmt import iso_ms
from opendispatch.webhooks.payloads import total_price

__all__ = [
    "message_href",
    "message_view",
    "webhook_entry",
    "webhook_page",
    "webhook_replay_href",
    "workflow_href",
    "workflow_page",
    "workflow_view",
]

_CURRENCY = "EUR"


def workflow_href(dispatch_uuid: str) -> str:
    """The `href` the spec's webhook payloads carry; OpenDispatch serves it."""
    return f"/workflows/{dispatch_uuid}"


def message_href(dispatch_uuid: str, message_uuid: str) -> str:
    return f"/workflows/{dispatch_uuid}/messages/{message_uuid}"


def _summary_fields(record: WorkflowRecord) -> dict[str, Any]:
    return {
        "dispatch_uuid": record.dispatch_uuid,
        "template": record.template,
        "status": record.status,
        "created_at": iso_ms(record.created_at_ms),
        "updated_at": iso_ms(record.updated_at_ms),
        "_links": WorkflowLinks(self=Link(href=workflow_href(record.dispatch_uuid))),
    }


def _message(
    state: WorkflowState, message: MessageState, send: SendRecord | None = None
) -> MessageView:
    status = message.status
    return MessageView(
        message_uuid=message.message_uuid,
        step=message.step,
        channel=state.steps[message.step].channel,
        status=None if status is None else status.value,
        sent_at=iso_ms(message.sent_at_ms),
        history=[
            StatusEntry(status=record.status.value, timestamp=iso_ms(record.at_ms))
            for record in message.history
        ],
        usage=None if message.price is None else Usage(price=message.price, currency=_CURRENCY),
        error=None
        if message.error is None
        else MessageErrorBody(code=message.error.code, reason=message.error.reason),
        provider=message.provider or (send.provider if send is not None else None) or None,
        send=None
        if send is None
        else SendView(
            state=send.send_state,
            attempts=send.attempts,
            provider_message_id=send.provider_message_id,
            last_error=send.last_error,
        ),
        _links=MessageLinks(
            self=Link(href=message_href(state.dispatch_uuid, message.message_uuid)),
            workflow=Link(href=workflow_href(state.dispatch_uuid)),
        ),
    )


def _webhook_fields(webhook: WebhookRecord) -> dict[str, Any]:
    return dict(
        webhook_id=webhook.event_id,
        event_id=webhook.event_id,
        kind=webhook.kind,
        message_uuid=webhook.message_uuid,
        status=webhook.status,
        url=webhook.url,
        state=webhook.state,
        attempts=webhook.attempts,
        replays=webhook.replays,
        last_status_code=webhook.last_status_code,
        last_error=webhook.last_error,
        next_attempt_at=None
        if webhook.next_attempt_at_ms is None
        else iso_ms(webhook.next_attempt_at_ms),
        created_at=iso_ms(webhook.created_at_ms),
        delivered_at=None if webhook.delivered_at_ms is None else iso_ms(webhook.delivered_at_ms),
    )


def _webhook(webhook: WebhookRecord) -> WebhookView:
    return WebhookView(**_webhook_fields(webhook))


def webhook_replay_href(webhook_id: str) -> str:
    return f"/v0.1/webhooks/{webhook_id}/replay"


def webhook_entry(webhook: WebhookRecord) -> WebhookEntry:
    return WebhookEntry(
        **_webhook_fields(webhook),
        dispatch_uuid=webhook.dispatch_uuid,
        _links=WebhookEntryLinks(
            workflow=Link(href=f"/v0.1/dispatch/{webhook.dispatch_uuid}"),
            replay=Link(href=webhook_replay_href(webhook.event_id)),
        ),
    )


def webhook_page(
    webhooks: list[WebhookRecord], *, page_size: int, self_href: str, next_href: str | None
) -> bytes:
    page = WebhookPage(
        page_size=page_size,
        _embedded=WebhookPageEmbedded(webhooks=[webhook_entry(w) for w in webhooks]),
        _links=WorkflowPageLinks(
            self=Link(href=self_href), next=None if next_href is None else Link(href=next_href)
        ),
    )
    body = page.model_dump(by_alias=True)  # entries keep their nulls; a last page has no next
    if next_href is None:
        del body["_links"]["next"]
    return msgspec.json.encode(body)


def workflow_view(
    loaded: LoadedWorkflow, webhooks: list[WebhookRecord], sends: Sequence[SendRecord] = ()
) -> bytes:
    record = loaded.record
    state = None if loaded.state_json is None else decode_state(loaded.state_json)
    by_message = {send.message_uuid: send for send in sends}
    messages = (
        []
        if state is None
        else [_message(state, m, by_message.get(m.message_uuid)) for m in state.messages]
    )
    price = total_price(() if state is None else (m.price for m in state.messages))
    view = WorkflowView(
        **_summary_fields(record),
        usage=Usage(price=price, currency=_CURRENCY),
        next_deadline=None if state is None or state.due_at_ms is None else iso_ms(state.due_at_ms),
        messages=messages,
        webhooks=[_webhook(webhook) for webhook in webhooks],
        workflow=msgspec.json.decode(record.request_json)["workflow"],
    )
    return view.model_dump_json(by_alias=True).encode()


def message_view(
    loaded: LoadedWorkflow, message_uuid: str, sends: Sequence[SendRecord] = ()
) -> bytes | None:
    if loaded.state_json is None:
        return None
    state = decode_state(loaded.state_json)
    message = state.message(message_uuid)
    if message is None:
        return None
    send = next((send for send in sends if send.message_uuid == message_uuid), None)
    return _message(state, message, send).model_dump_json(by_alias=True).encode()


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
