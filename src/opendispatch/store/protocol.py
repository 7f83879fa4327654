"""The storage protocol: domain operations, one implementation per database.

Handlers and workers depend on this and nothing below it; `tests/integration/test_store.py`
runs one suite against every implementation.
"""

from __future__ import annotations

from typing import Protocol

from opendispatch.store.records import (
    Application,
    ApplicationCredentials,
    NewWorkflow,
    WorkflowRecord,
)

__all__ = ["Store"]


class Store(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date (safe to run from several processes)."""

    async def close(self) -> None:
        """Commit what is pending, then release connections."""

    async def create_application(self, credentials: ApplicationCredentials) -> None: ...

    async def list_applications(self) -> list[Application]: ...

    async def find_credentials_by_api_key(self, api_key: str) -> ApplicationCredentials | None: ...

    async def find_credentials(self, application_id: str) -> ApplicationCredentials | None: ...

    async def create_workflow(self, workflow: NewWorkflow) -> None:
        """Returns only once the workflow is durable: this is what a 202 promises."""

    async def get_workflow(self, application_id: str, dispatch_uuid: str) -> WorkflowRecord | None:
        """The workflow, if it exists and belongs to this application."""

    async def list_workflows(
        self, application_id: str, *, limit: int, before: str | None = None
    ) -> list[WorkflowRecord]:
        """Newest first; `before` is the last `dispatch_uuid` of the previous page."""
