"""`/openapi.json`: schemas generated from the models the handlers really use.

Paths are written out here (there are few, and their prose matters); every schema comes from
pydantic, so the document cannot drift from the validation or the responses. Every route the
server serves has its path here (`tests/integration/test_openapi.py` checks), including the
ones no client calls (providers' callbacks, the docs' files), so the document is the whole
surface an operator exposes. `/docs` shows this document (see `docs.py`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from opendispatch import __version__
from opendispatch.api.messages_v1.models import MessageAccepted, SendMessageRequest
from opendispatch.api.request_models import Channel, CreateWorkflowRequest
from opendispatch.api.response_models import (
    DispatchAccepted,
    ErrorBody,
    Health,
    InjectedStatusAccepted,
    MessageView,
    ReplayedWebhooks,
    WebhookEntry,
    WebhookPage,
    WorkflowCancelled,
    WorkflowPage,
    WorkflowView,
)
from opendispatch.api.sandbox_routes import InjectedStatus
from opendispatch.api.webhook_routes import ReplayFilter
from opendispatch.engine.model import WorkflowStatus

__all__ = ["openapi_document"]

_MODELS: list[type[BaseModel]] = [
    CreateWorkflowRequest,
    SendMessageRequest,
    MessageAccepted,
    DispatchAccepted,
    ErrorBody,
    Health,
    InjectedStatus,
    InjectedStatusAccepted,
    MessageView,
    ReplayFilter,
    ReplayedWebhooks,
    WebhookEntry,
    WebhookPage,
    WorkflowCancelled,
    WorkflowPage,
    WorkflowView,
]
_REQUESTS = (CreateWorkflowRequest, SendMessageRequest)
_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(
    model: type[BaseModel], description: str, media_type: str = "application/json"
) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Invalid request: every invalid field is named in `invalid_parameters`.",
        401: "Missing or invalid credentials.",
        403: "Injection is switched off (`--no-sandbox-injection`), or the application is "
        "live (its statuses come from its providers).",
        404: "No such workflow (or message, or webhook) for this application.",
        409: "The webhook is pending: it is already on its way.",
        413: "The body is larger than the server accepts.",
        415: "The body is not JSON.",
        422: "The `Idempotency-Key` was used within the last 24 hours with a different body: "
        "nothing is stored.",
        503: "The database is busy (retry after the `Retry-After` header), or lost or "
        "damaged (no `Retry-After`).",
    }
    return {str(status): _json(ErrorBody, words[status]) for status in statuses}


_UUID_PARAMETER = {
    "name": "dispatch_uuid",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_MESSAGE_UUID_PARAMETER = {**_UUID_PARAMETER, "name": "message_uuid"}

_LIST_FILTERS: list[dict[str, Any]] = [
    {
        "name": "status",
        "in": "query",
        "description": "Only workflows in one of these statuses: comma-separated "
        "(`status=in_progress,error`) or repeated.",
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "items": {"enum": [s.value for s in WorkflowStatus]}},
    },
    {
        "name": "channel",
        "in": "query",
        "description": "Only workflows with a step on this channel, reached or not.",
        "schema": {"enum": [c.value for c in Channel]},
    },
    {
        "name": "created_after",
        "in": "query",
        "description": "Only workflows created at or after this time (ISO 8601; without an "
        "offset, UTC; a date alone is its midnight).",
        "schema": {"type": "string", "examples": ["2026-01-31T00:00:00Z"]},
    },
    {
        "name": "created_before",
        "in": "query",
        "description": "Only workflows created before this time (exclusive: ranges side by "
        "side neither overlap nor leave a gap).",
        "schema": {"type": "string", "examples": ["2026-02-01T00:00:00Z"]},
    },
]


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: another request of this application with the same key and the "
        "same body (byte for byte) within 24 hours stores nothing and gets the first "
        "request's 202 (with `Idempotent-Replayed: true`); with a different body it is 422. "
        "A request refused otherwise (400, 401, 413, 415, 503) leaves the key unused."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}


def _paths(*, metrics: bool) -> dict[str, Any]:
    create = {
        "operationId": "createWorkflow",
        "summary": "Create a workflow",
        "description": (
            "Stores the workflow durably and answers 202 with its `dispatch_uuid`. "
            "Every message but the last must carry a `failover`; a `failover` on the last "
            "message is accepted and sets the condition that message must meet within its "
            "`expiry_time` for the workflow to complete. Also served at `/v0.1/dispatch/`."
        ),
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "parameters": [_IDEMPOTENCY_KEY],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(CreateWorkflowRequest)}},
        },
        "responses": {
            "202": {
                **_json(
                    DispatchAccepted,
                    "Accepted: the workflow is stored; or, for a repeat of a request with the "
                    "same `Idempotency-Key` and body, the first request's answer. `warnings` "
                    "(an extension) appears only when a field is valid but can never take "
                    "effect.",
                ),
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "`true` when this is the answer to an earlier request "
                        "with the same `Idempotency-Key` (no new workflow was stored).",
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                },
            },
            **_errors(400, 401, 413, 415, 422, 503),
        },
    }
    send_message = {
        "operationId": "sendMessage",
        "summary": "Send a message (Messages API v1)",
        "description": (
            "Vonage's Messages API v1, on the same engine. One message, optionally with a "
            "`failover` list of complete messages sent in order, each when the one before it "
            "is rejected or undeliverable. Status webhooks in v1's shape (or v0.1's, by "
            "`webhook_version`) go to the message's `webhook_url` or else the application's "
            "status URL, signed as every webhook is; there is no final report. "
            "`opendispatch` on a message is OpenDispatch's extension: Dispatch's timed "
            "condition. Errors use Vonage's v1 types and titles: invalid fields are 422 "
            "`Invalid params`."
        ),
        "tags": ["Messages"],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "parameters": [_IDEMPOTENCY_KEY],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(SendMessageRequest)}},
        },
        "responses": {
            "202": {
                **_json(
                    MessageAccepted,
                    "Accepted: the message (and its failover list) is stored, and will be sent.",
                ),
                "headers": {
                    "Location": {
                        "description": "The workflow: `/v0.1/dispatch/{workflow_id}`.",
                        "schema": {"type": "string"},
                    }
                },
            },
            # v1 answers RFC 7807's own media type, with Vonage's v1 types and titles.
            **{
                status: _json(ErrorBody, description, "application/problem+json")
                for status, description in (
                    ("401", "Missing or invalid credentials (`#unauthorized`)."),
                    ("413", "The body is larger than the server accepts."),
                    ("415", "The body is not JSON."),
                    (
                        "422",
                        "`Invalid params` (`#1150`): every invalid field is named in "
                        "`invalid_parameters`; or an `Idempotency-Key` reused with another body.",
                    ),
                    ("429", "`Rate Limit Hit`: over the application's `--rate-limit`."),
                    ("503", "At capacity or the database busy: retry after `Retry-After`."),
                )
            },
        },
    }
    listing = {
        "operationId": "listWorkflows",
        "summary": "List this application's workflows, newest first",
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "parameters": [
            {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            {
                "name": "cursor",
                "in": "query",
                "description": "The `_links.next` of the previous page carries it.",
                "schema": {"type": "string"},
            },
            *_LIST_FILTERS,
        ],
        "description": "Filters combine; `_links.self` and `_links.next` carry them, so "
        "following `next` keeps them. An unknown query parameter is 400, never ignored. "
        "Also served at `/v0.1/dispatch/`.",
        "responses": {"200": _json(WorkflowPage, "One page of workflows."), **_errors(400, 401)},
    }
    get = {
        "operationId": "getWorkflow",
        "summary": "One workflow as stored",
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "parameters": [_UUID_PARAMETER],
        "responses": {"200": _json(WorkflowView, "The workflow."), **_errors(401, 404)},
    }
    cancel = {
        "operationId": "cancelWorkflow",
        "summary": "Stop a running workflow (an extension: Vonage's Dispatch API has no cancel)",
        "description": (
            "No further message is sent and the workflow's deadline is cleared; its final "
            "report, with status `cancelled`, follows the status webhooks already due. A "
            "message already on its way to a provider cannot be recalled: its statuses are "
            "still forwarded and its price counted. Answered once the cancel is durable."
        ),
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "parameters": [_UUID_PARAMETER],
        "responses": {
            "200": _json(WorkflowCancelled, "Cancelled."),
            **_errors(401, 404),
            "409": _json(
                ErrorBody, "The workflow has already ended (completed, error or cancelled)."
            ),
        },
    }
    health = {
        "operationId": "health",
        "summary": "Ready to serve",
        "responses": {
            "200": _json(Health, "The server is ready."),
            "503": _json(
                Health, "Starting or stopping, or `failed`: the database is lost or damaged."
            ),
        },
    }
    auth: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"basicAuth": []}]
    webhooks = {
        "operationId": "listWebhooks",
        "summary": "This application's webhooks, newest first (dead letters with state=dead)",
        "security": auth,
        "parameters": [
            {
                "name": "state",
                "in": "query",
                "schema": {"enum": ["pending", "held", "delivered", "dead"]},
            },
            {"name": "dispatch_uuid", "in": "query", "schema": {"type": "string"}},
            {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {"200": _json(WebhookPage, "One page of webhooks."), **_errors(400, 401)},
    }
    replay_one = {
        "operationId": "replayWebhook",
        "summary": "Deliver a delivered or dead webhook again",
        "description": "The same body and `webhook-id`, newly signed, with a new retry period.",
        "security": auth,
        "parameters": [
            {"name": "webhook_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "202": _json(WebhookEntry, "Queued for delivery."),
            **_errors(401, 404, 409),
        },
    }
    replay_many = {
        "operationId": "replayWebhooks",
        "summary": "Replay every webhook matching a filter (by default, every dead one)",
        "security": auth,
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _ref(ReplayFilter)}},
        },
        "responses": {
            "202": _json(ReplayedWebhooks, "How many were queued again."),
            **_errors(400, 401),
        },
    }
    message = {
        "operationId": "getMessage",
        "summary": "One message of a workflow: its status history, usage, error and send",
        "description": "The `href` of a workflow's `messages[]._links.self`.",
        "security": auth,
        "parameters": [_UUID_PARAMETER, _MESSAGE_UUID_PARAMETER],
        "responses": {"200": _json(MessageView, "The message."), **_errors(401, 404)},
    }
    inject = {
        "operationId": "injectSandboxStatus",
        "summary": "Sandbox: report a status for a message, as its provider would",
        "description": "For sandbox applications (not live ones), unless the server runs "
        "with `--no-sandbox-injection`. The status is applied, forwarded as a webhook and "
        "counted in the usage like a provider's. `timestamp` (default: now) may not be "
        "before the message was submitted, nor more than five minutes ahead of the "
        "server's clock.",
        "security": auth,
        "parameters": [_MESSAGE_UUID_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(InjectedStatus)}},
        },
        "responses": {
            "202": _json(InjectedStatusAccepted, "Accepted: the status is on its way."),
            **_errors(400, 401, 403, 404, 415),
        },
    }
    provider = [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "The provider account's name (`opendispatch providers add`).",
            "schema": {"type": "string"},
        }
    ]
    callbacks = {
        "post": {
            "operationId": "providerCallback",
            "summary": "Providers: where a provider account's status callbacks arrive",
            "description": "Not for applications: each provider signs its callbacks its own "
            "way, and the account checks that signature. Answered 200 once what the callback "
            "reports is stored. Give providers `--public-url` joined with this path.",
            "tags": ["Providers"],
            "parameters": provider,
            "responses": {
                "200": {"description": "Stored."},
                **_errors(400, 401, 403, 404, 503),
            },
        },
        "get": {
            "operationId": "providerCallbackHandshake",
            "summary": "Providers: the verification handshake WhatsApp Cloud requires",
            "tags": ["Providers"],
            "parameters": provider,
            "responses": {
                "200": {
                    "description": "The challenge, echoed.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(400, 403, 404),
            },
        },
    }
    openapi = {
        "operationId": "openapi",
        "summary": "This document",
        "tags": ["Server"],
        "responses": {"200": {"description": "OpenAPI 3.1, as JSON."}},
    }
    docs = {
        "operationId": "docs",
        "summary": "Interactive documentation of this document",
        "description": "Swagger UI, served by this server (no CDN). `/docs/` redirects here.",
        "tags": ["Server"],
        "responses": {
            "200": {"description": "The page.", "content": {"text/html": {}}},
            "308": {"description": "From `/docs/` to `/docs`."},
        },
    }
    docs_asset = {
        "operationId": "docsAsset",
        "summary": "The files the documentation page loads",
        "tags": ["Server"],
        "parameters": [
            {
                "name": "asset",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "examples": ["swagger-ui-bundle.js"]},
            }
        ],
        "responses": {"200": {"description": "The file."}, **_errors(404)},
    }
    for operation in (create, listing, get, message):
        operation["tags"] = ["Workflows"]
    for operation in (webhooks, replay_one, replay_many):
        operation["tags"] = ["Webhooks"]
    inject["tags"] = ["Sandbox"]
    health["tags"] = ["Server"]
    metrics_operation = {
        "operationId": "metrics",
        "summary": "The server's metrics, in Prometheus' text format (version 0.0.4)",
        "description": (
            "Open, unless the server runs with a metrics token: then only to "
            "`Authorization: Bearer <token>`. Absent (404) with `--no-metrics`."
        ),
        "tags": ["Server"],
        "security": [{}, {"metricsToken": []}],
        "responses": {
            "200": {
                "description": "Counters and histograms of this process; queue depths read "
                "from the database.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_errors(401),
        },
    }
    return {
        "/v0.1/webhooks": {"get": webhooks},
        "/v0.1/webhooks/replay": {"post": replay_many},
        "/v0.1/webhooks/{webhook_id}/replay": {"post": replay_one},
        "/v0.1/dispatch": {"post": create, "get": listing},
        "/v1/messages": {"post": send_message},
        "/v0.1/dispatch/{dispatch_uuid}": {"get": get},
        "/v0.1/dispatch/{dispatch_uuid}/cancel": {"post": cancel},
        "/workflows/{dispatch_uuid}": {"get": {**get, "operationId": "getWorkflowByHref"}},
        "/workflows/{dispatch_uuid}/messages/{message_uuid}": {"get": message},
        "/v0.1/sandbox/messages/{message_uuid}/status": {"post": inject},
        "/v0.1/providers/{name}/callbacks": callbacks,
        "/health": {"get": health},
        "/openapi.json": {"get": openapi},
        "/docs": {"get": docs},
        "/docs/{asset}": {"get": docs_asset},
        **({"/metrics": {"get": metrics_operation}} if metrics else {}),
    }


def openapi_document(*, metrics: bool = True) -> bytes:
    """`metrics`: the server serves `GET /metrics` (not with `--no-metrics`)."""
    _, schemas = models_json_schema(
        [(model, "validation" if model in _REQUESTS else "serialization") for model in _MODELS],
        ref_template=_REF,
    )
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenDispatch",
            "version": __version__,
            "description": (
                "A self-hosted server for the Vonage Dispatch API: failover workflows across "
                "WhatsApp, Messenger, Viber, SMS and MMS."
            ),
        },
        # Relative: resolved against where the document was fetched, so "Try it out" in
        # /docs calls this server, under whatever path prefix a proxy serves it.
        "servers": [{"url": "./", "description": "This server"}],
        "tags": [
            {"name": "Workflows", "description": "The Dispatch API: create and read workflows."},
            {"name": "Messages", "description": "The Messages API v1, with failover."},
            {"name": "Webhooks", "description": "The webhooks sent, and replaying them."},
            {"name": "Sandbox", "description": "Trying workflows without a provider."},
            {"name": "Providers", "description": "Callbacks from real providers."},
            {"name": "Server", "description": "Health, metrics and documentation."},
        ],
        "paths": _paths(metrics=metrics),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "metricsToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
    return msgspec.json.encode(document)
