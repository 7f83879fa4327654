"""`/openapi.json`: schemas generated from the models the handlers really use.

Paths are written out here (there are few, and their prose matters); every schema comes from
pydantic, so the document cannot drift from the validation or the responses.
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from opendispatch import __version__
from opendispatch.api.request_models import CreateWorkflowRequest
from opendispatch.api.response_models import (
    DispatchAccepted,
    ErrorBody,
    Health,
    ReplayedWebhooks,
    WebhookEntry,
    WebhookPage,
    WorkflowPage,
    WorkflowView,
)
from opendispatch.api.webhook_routes import ReplayFilter

__all__ = ["openapi_document"]

_MODELS: list[type[BaseModel]] = [
    CreateWorkflowRequest,
    DispatchAccepted,
    ErrorBody,
    Health,
    ReplayFilter,
    ReplayedWebhooks,
    WebhookEntry,
    WebhookPage,
    WorkflowPage,
    WorkflowView,
]
_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Invalid request: every invalid field is named in `invalid_parameters`.",
        401: "Missing or invalid credentials.",
        404: "No such workflow (or webhook) for this application.",
        409: "The webhook is pending: it is already on its way.",
        413: "The body is larger than the server accepts.",
        415: "The body is not JSON.",
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


def _paths() -> dict[str, Any]:
    create = {
        "operationId": "createWorkflow",
        "summary": "Create a workflow",
        "description": (
            "Stores the workflow durably and answers 202 with its `dispatch_uuid`. "
            "Every message but the last must carry a `failover`; a `failover` on the last "
            "message is accepted and sets the condition that message must meet within its "
            "`expiry_time` for the workflow to complete."
        ),
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(CreateWorkflowRequest)}},
        },
        "responses": {
            "202": _json(DispatchAccepted, "Accepted: the workflow is stored."),
            **_errors(400, 401, 413, 415, 503),
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
        ],
        "responses": {"200": _json(WorkflowPage, "One page of workflows."), **_errors(400, 401)},
    }
    get = {
        "operationId": "getWorkflow",
        "summary": "One workflow as stored",
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "parameters": [_UUID_PARAMETER],
        "responses": {"200": _json(WorkflowView, "The workflow."), **_errors(401, 404)},
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
    return {
        "/v0.1/webhooks": {"get": webhooks},
        "/v0.1/webhooks/replay": {"post": replay_many},
        "/v0.1/webhooks/{webhook_id}/replay": {"post": replay_one},
        "/v0.1/dispatch": {"post": create, "get": listing},
        "/v0.1/dispatch/{dispatch_uuid}": {"get": get},
        "/workflows/{dispatch_uuid}": {"get": {**get, "operationId": "getWorkflowByHref"}},
        "/health": {"get": health},
    }


def openapi_document() -> bytes:
    _, schemas = models_json_schema(
        [
            (model, "validation" if model is CreateWorkflowRequest else "serialization")
            for model in _MODELS
        ],
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
        "paths": _paths(),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }
    return msgspec.json.encode(document)
