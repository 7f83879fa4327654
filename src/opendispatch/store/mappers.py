"""Rows (by column name, from either database) to the records that cross the store boundary:
the one place that knows which column becomes which field."""

from __future__ import annotations

import json

from opendispatch.engine.model import MessageStatus, WorkflowStatus
from opendispatch.store.connector import Row
from opendispatch.store.records import (
    Application,
    ApplicationCredentials,
    EarlierRequest,
    InboxEvent,
    LoadedWorkflow,
    MessageForCallback,
    MessageOwner,
    ProviderAccountRecord,
    SendJob,
    SendRecord,
    WebhookJob,
    WebhookRecord,
    WorkflowRecord,
)

__all__ = [
    "application",
    "channel_token",
    "channels_column",
    "credentials",
    "earlier_request",
    "inbox_event",
    "loaded_workflow",
    "message_for_callback",
    "message_owner",
    "provider_account",
    "send_job",
    "send_record",
    "webhook_job",
    "webhook_record",
    "workflow_record",
]


def application(row: Row) -> Application:
    return Application(
        application_id=row["application_id"],
        name=row["name"],
        api_key=row["api_key"],
        status_url=row["status_url"],
        final_report_url=row["final_report_url"],
        created_at_ms=row["created_at_ms"],
        live=bool(row["live"]),
    )


def credentials(row: Row) -> ApplicationCredentials:
    return ApplicationCredentials(
        application=application(row),
        api_secret_hash=row["api_secret_hash"],
        signature_secret=row["signature_secret"],
        public_key_pem=row["public_key_pem"],
        previous_secret_hash=row["previous_secret_hash"],
        previous_secret_expires_at_ms=row["previous_secret_expires_at_ms"],
    )


def channels_column(channels: tuple[str, ...]) -> str:
    """A workflow's channels as its `channels` column stores them: `,whatsapp,sms,`."""
    return "," + ",".join(dict.fromkeys(channels)) + ","


def channel_token(channel: str) -> str:
    """What a `channels` column contains when it has `channel` (commas: `sms` is not `mms`)."""
    return f",{channel},"


def workflow_record(row: Row) -> WorkflowRecord:
    return WorkflowRecord(
        dispatch_uuid=row["dispatch_uuid"],
        application_id=row["application_id"],
        template=row["template"],
        status=WorkflowStatus(row["status"]),
        request_json=row["request_json"],
        created_at_ms=row["created_at_ms"],
        updated_at_ms=row["updated_at_ms"],
    )


def loaded_workflow(row: Row, inbox: tuple[InboxEvent, ...] = ()) -> LoadedWorkflow:
    return LoadedWorkflow(
        record=workflow_record(row),
        state_json=row["state_json"],
        api_key=row["api_key"],
        status_url=row["status_url"],
        final_report_url=row["final_report_url"],
        inbox=inbox,
    )


def earlier_request(row: Row) -> EarlierRequest:
    return EarlierRequest(dispatch_uuid=row["dispatch_uuid"], request_hash=row["request_hash"])


def message_owner(row: Row) -> MessageOwner:
    return MessageOwner(
        message_uuid=row["message_uuid"],
        dispatch_uuid=row["dispatch_uuid"],
        application_id=row["application_id"],
    )


def send_job(row: Row) -> SendJob:
    return SendJob(
        message_uuid=row["message_uuid"],
        dispatch_uuid=row["dispatch_uuid"],
        application_id=row["application_id"] or "",
        step=row["step"],
        channel=row["channel"],
        provider=row["provider"],
        payload_json=row["payload_json"],
        attempts=row["attempts"],
        created_at_ms=row["created_at_ms"],
        due_at_ms=row["next_attempt_at_ms"],
    )


def inbox_event(row: Row) -> InboxEvent:
    return InboxEvent(
        id=row["id"],
        message_uuid=row["message_uuid"],
        status=MessageStatus(row["status"]),
        error_code=row["error_code"],
        error_reason=row["error_reason"],
        price=row["price"],
        due_at_ms=row["due_at_ms"],
        occurred_at_ms=row["occurred_at_ms"],
        # The engine's loads carry the inbox as JSON, without it: it only matters on landing.
        provider_message_id=row.get("provider_message_id"),
    )


def send_record(row: Row) -> SendRecord:
    return SendRecord(
        message_uuid=row["message_uuid"],
        provider=row["provider"],
        send_state=row["send_state"],
        attempts=row["attempts"],
        provider_message_id=row["provider_message_id"],
        last_error=row["last_error"],
    )


def message_for_callback(row: Row) -> MessageForCallback:
    return MessageForCallback(
        message_uuid=row["message_uuid"],
        provider=row["provider"],
        provider_message_id=row["provider_message_id"],
    )


def provider_account(row: Row) -> ProviderAccountRecord:
    return ProviderAccountRecord(
        name=row["name"],
        kind=row["kind"],
        base_url=row["base_url"],
        settings=json.loads(row["settings_json"]),
        sealed_secrets=row["secrets"],
        created_at_ms=row["created_at_ms"],
        updated_at_ms=row["updated_at_ms"],
    )


def webhook_job(row: Row) -> WebhookJob:
    return WebhookJob(
        id=row["id"],
        event_id=row["event_id"],
        dispatch_uuid=row["dispatch_uuid"],
        application_id=row["application_id"],
        kind=row["kind"],
        url=row["url"],
        payload=row["payload"],
        attempts=row["attempts"],
        created_at_ms=row["created_at_ms"],
        replays=row["replays"],
        retry_from_ms=row["retry_from_ms"],
    )


def webhook_record(row: Row) -> WebhookRecord:
    return WebhookRecord(
        id=row["id"],
        event_id=row["event_id"],
        dispatch_uuid=row["dispatch_uuid"],
        application_id=row["application_id"],
        kind=row["kind"],
        message_uuid=row["message_uuid"],
        status=_webhook_status(row["kind"], row["status"]),
        url=row["url"],
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at_ms=row["next_attempt_at_ms"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at_ms=row["created_at_ms"],
        delivered_at_ms=row["delivered_at_ms"],
        replays=row["replays"],
    )


def _webhook_status(kind: str, status: str) -> MessageStatus | WorkflowStatus:
    return WorkflowStatus(status) if kind == "final_report" else MessageStatus(status)
