"""Plain records that cross the storage boundary. No behaviour, no database types."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Application", "ApplicationCredentials", "NewWorkflow", "WorkflowRecord"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Application:
    """What anyone may see of an application: `apps list` prints exactly this."""

    application_id: str
    name: str
    api_key: str
    status_url: str
    final_report_url: str | None
    created_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationCredentials:
    """An application with what verifying and signing need. Never printed or logged.

    `api_secret_hash` is a salted hash (see `auth.secrets`); the signature secret is kept as is
    because signing webhooks needs the secret itself, and the server keeps only the public
    half of the application's RSA key pair.
    """

    application: Application
    api_secret_hash: str
    signature_secret: str
    public_key_pem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewWorkflow:
    """`request_json` is the request body exactly as the client sent it."""

    dispatch_uuid: str
    application_id: str
    template: str
    request_json: str
    created_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRecord:
    dispatch_uuid: str
    application_id: str
    template: str
    status: str
    request_json: str
    created_at_ms: int
    updated_at_ms: int
