"""Accepting a workflow: the checks the API makes, and the door for a command beside it.

`POST /v0.1/dispatch` is how clients submit. A command on the server's machine
(`opendispatch send`) has the database but not the application's API secret (only its hash
is stored), so it cannot call the API as a client would. `submit` stores the workflow
exactly as the API does instead: the same validation, the same refusal of a live
application's channel that has no provider route (`require_routes`, which the API calls
too), the same first transition (`Shell.accept`) written by the same store operation. Then
it wakes the servers (`Store.notify`: NOTIFY on PostgreSQL, the wake socket on SQLite) with
the announcements a server makes after a transition, and they send the first message as if
the API had accepted it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opendispatch.api.request_models import WorkflowMessage
from opendispatch.api.validation import condition_warnings, validate_create_workflow_json
from opendispatch.errors import InvalidParameter, InvalidRequest, NotFound
from opendispatch.ids import uuid7
from opendispatch.runtime.routing import Routes
from opendispatch.runtime.shell import Shell
from opendispatch.store.database import DatabaseStore
from opendispatch.store.records import NewWorkflow, Transition

__all__ = ["Submitted", "announcements", "dispatch_channels", "require_routes", "submit"]


async def require_routes(
    routes: Routes, application_id: str, channels: Sequence[tuple[str, str]]
) -> None:
    """A live application never falls back to the sandbox: every channel it uses must have a
    provider route, or nothing is stored (400 naming each one). `channels`: each step's
    channel, with the name of the request's field that chose it (`workflow[0].to.type`)."""
    problems = []
    for name, channel in channels:
        route = await routes.route(application_id, channel)
        if not route.stops:
            problems.append(InvalidParameter(name, route.missing or "no route"))
    if problems:
        raise InvalidRequest(
            "This live application has no provider for a channel of the workflow.",
            invalid_parameters=tuple(problems),
        )


def dispatch_channels(messages: Sequence[WorkflowMessage]) -> list[tuple[str, str]]:
    """The channels of a Dispatch workflow, for `require_routes`."""
    return [
        (f"workflow[{index}].to.type", message.to.type.value)
        for index, message in enumerate(messages)
    ]


def announcements(transition: Transition) -> list[str]:
    """What a transition gives the workers to do, as servers announce it to each other (see
    `Runtime._heard`)."""
    payloads = []
    if transition.sends:
        payloads.append("sends")
    if transition.webhooks:
        payloads.append("webhooks")
    if transition.due_at_ms is not None:
        payloads.append(f"timers:{transition.due_at_ms}")
    return payloads


@dataclass(frozen=True, slots=True)
class Submitted:
    dispatch_uuid: str
    steps: int
    # What is valid but can never take effect, as the API's 202 lists it in `warnings`.
    warnings: tuple[InvalidParameter, ...] = ()


async def submit(
    store: DatabaseStore,
    *,
    routes: Routes,
    shell: Shell,
    application_id: str,
    body: bytes,
    max_messages: int,
    now_ms: int,
) -> Submitted:
    """Validate and store `body` (a `POST /v0.1/dispatch` body) for the application, durable
    once this returns, and wake the servers. Raises `NotFound` for an application that does
    not exist (or was deleted), `InvalidRequest` as the API would answer 400, and
    `ApplicationDeleted` if it is deleted while this runs."""
    application = await store.get_application(application_id)
    if application is None:
        raise NotFound(f"no application {application_id}")
    valid = validate_create_workflow_json(body, max_messages=max_messages)
    if application.live:
        await require_routes(routes, application_id, dispatch_channels(valid.messages))
    workflow = NewWorkflow(
        dispatch_uuid=uuid7(now_ms),
        application_id=application_id,
        template=valid.template,
        request_json=body.decode(),
        created_at_ms=now_ms,
        channels=tuple(message.to.type.value for message in valid.messages),
    )
    transition = shell.accept(
        workflow,
        status_url=application.status_url,
        final_report_url=application.final_report_url,
        now_ms=now_ms,
    )
    await store.create_workflow(workflow, transition)
    await store.notify(announcements(transition))
    return Submitted(
        dispatch_uuid=workflow.dispatch_uuid,
        steps=len(valid.messages),
        warnings=tuple(condition_warnings(valid.messages)),
    )
