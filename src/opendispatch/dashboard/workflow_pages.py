"""Workflows: the list across applications (filtered, newest first, a page at a time), one
workflow's timeline, and cancelling one that is still running (the API's cancel: no further
step is sent, its deadline is cleared, its final report says `cancelled`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from opendispatch.api.http import Request, Response
from opendispatch.api.request_models import Channel
from opendispatch.auth.operators import Session
from opendispatch.dashboard.timeline import timeline
from opendispatch.dashboard.web import DashboardError, PageGroup, query, uuid7_ms
from opendispatch.engine.model import WorkflowStatus
from opendispatch.ids import is_uuid
from opendispatch.runtime.service import CancelOutcome
from opendispatch.store.browse import WorkflowFilter
from opendispatch.store.records import WorkflowRecord
from opendispatch.timefmt import parse_iso_ms

__all__ = ["PAGE_SIZE", "STATUSES", "WorkflowPages", "WorkflowRow"]

log = logging.getLogger("opendispatch.dashboard")

PAGE_SIZE = 50
STATUSES = tuple(status.value for status in WorkflowStatus)
CHANNELS = tuple(channel.value for channel in Channel)
_NOTICES = {
    "cancelled": "The workflow was cancelled: no further step will be sent.",
    "ended": "The workflow had already ended: nothing was cancelled.",
    "replayed": "The webhook was queued for delivery again.",
    "not_replayed": "That webhook is still on its way: only a delivered or dead one can be "
    "replayed.",
}


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """A workflow as the list shows it."""

    record: WorkflowRecord
    application: str
    channels: tuple[str, ...]
    recipients: tuple[str, ...]


def _row(record: WorkflowRecord, names: dict[str, str]) -> WorkflowRow:
    try:
        steps = msgspec.json.decode(record.request_json).get("workflow") or []
    except (msgspec.DecodeError, AttributeError):
        steps = []
    channels, recipients = [], []
    for step in steps:
        to = step.get("to") if isinstance(step, dict) else None
        if isinstance(to, dict):
            channels.append(str(to.get("type", "")))
            recipient = to.get("number", to.get("id"))
            if isinstance(recipient, str) and recipient not in recipients:
                recipients.append(recipient)
    return WorkflowRow(
        record,
        names.get(record.application_id, record.application_id),
        tuple(channels),
        tuple(recipients),
    )


def _recipient(given: str) -> str:
    """A number as people type it (`+44 7700 900001`) as the API stores it (`447700900001`)."""
    return "".join(given.split()).removeprefix("+")


def _time_ms(given: str, name: str, problems: dict[str, str]) -> int | None:
    if not given:
        return None
    try:
        return parse_iso_ms(given.strip())
    except (ValueError, OverflowError):
        problems[name] = "a date and time such as 2026-11-30T18:00 (UTC)"
        return None


class WorkflowPages(PageGroup):
    async def list(self, request: Request, session: Session) -> Response:
        applications = await self._store.list_applications()
        names = {app.application_id: app.name for app in applications}
        given = {
            name: (query(request, name) or "").strip()
            for name in ("application", "status", "channel", "recipient", "from", "until")
        }
        problems: dict[str, str] = {}
        if given["application"] and given["application"] not in names:
            problems["application"] = "no such application"
        if given["status"] and given["status"] not in STATUSES:
            problems["status"] = "one of " + ", ".join(STATUSES)
        if given["channel"] and given["channel"] not in CHANNELS:
            problems["channel"] = "one of " + ", ".join(CHANNELS)
        recipient = _recipient(given["recipient"])
        if len(recipient) > 50:
            problems["recipient"] = "at most 50 characters"
        created_from = _time_ms(given["from"], "from", problems)
        created_until = _time_ms(given["until"], "until", problems)
        before = query(request, "before") or None
        if before is not None and not is_uuid(before):
            problems["before"] = "not a page this dashboard gave out"
        context: dict[str, Any] = {
            "session": session,
            "section": "workflows",
            "applications": applications,
            "statuses": STATUSES,
            "channels": CHANNELS,
            "given": given,
            "problems": problems,
            "rows": [],
            "next_url": None,
            "searched_only_to_ms": None,
            "first_page_url": self._pages.url("/workflows", **given),
            "paged": before is not None,
        }
        if problems:
            return self._pages.page("workflows.html", 400, **context)
        page = await self._browse.workflows(
            WorkflowFilter(
                application_id=given["application"] or None,
                status=given["status"] or None,
                channel=given["channel"] or None,
                recipient=recipient or None,
                created_from_ms=created_from,
                created_until_ms=created_until,
            ),
            limit=PAGE_SIZE,
            before=before.lower() if before else None,
        )
        context["rows"] = [_row(record, names) for record in page.workflows]
        if page.next_before is not None:
            context["next_url"] = self._pages.url("/workflows", **given, before=page.next_before)
        if page.searched_only_to is not None:
            context["searched_only_to_ms"] = uuid7_ms(page.searched_only_to)
        return self._pages.page("workflows.html", **context)

    async def timeline(self, request: Request, session: Session) -> Response:
        dispatch_uuid = request.path_params["dispatch_uuid"].lower()
        loaded = await self._store.load_workflow(dispatch_uuid) if is_uuid(dispatch_uuid) else None
        if loaded is None:
            raise DashboardError(404, "No such workflow", f"There is no workflow {dispatch_uuid}.")
        sends = await self._store.send_records(dispatch_uuid)
        webhooks = await self._store.list_webhooks(dispatch_uuid)
        names = {app.application_id: app.name for app in await self._store.list_applications()}
        view = timeline(loaded, sends, webhooks)
        return self._pages.page(
            "timeline.html",
            session=session,
            section="workflows",
            view=view,
            application=names.get(view.application_id, view.application_id),
            notice=_NOTICES.get(query(request, "notice") or ""),
            now_ms=self._clock.now_ms(),
        )

    async def cancel(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        dispatch_uuid = request.path_params["dispatch_uuid"].lower()
        loaded = await self._store.load_workflow(dispatch_uuid) if is_uuid(dispatch_uuid) else None
        if loaded is None:
            raise DashboardError(404, "No such workflow", f"There is no workflow {dispatch_uuid}.")
        application_id = loaded.record.application_id
        outcome = await self._runtime.cancel(application_id, dispatch_uuid)
        log.info(
            "operator %s cancelled workflow %s of application %s: %s",
            session.operator,
            dispatch_uuid,
            application_id,
            outcome,
        )
        if outcome == CancelOutcome.NOT_FOUND:
            raise DashboardError(404, "No such workflow", f"There is no workflow {dispatch_uuid}.")
        return self._pages.redirect(
            self._pages.url(f"/workflows/{dispatch_uuid}", notice=str(outcome))
        )
