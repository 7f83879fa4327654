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
    WorkflowPage,
    WorkflowView,
)

__all__ = ["openapi_document"]

_MODELS: list[type[BaseModel]] = [
    CreateWorkflowRequest,
    DispatchAccepted,
    ErrorBody,
    Health,
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
        404: "No such workflow for this application.",
        413: "The body is larger than the server accepts.",
        415: "The body is not JSON.",
        503: "The database is busy; retry after the `Retry-After` header.",
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
            "503": _json(Health, "Starting or stopping."),
        },
    }
    return {
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
