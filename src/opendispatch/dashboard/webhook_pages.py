"""Webhooks in trouble across applications: dead ones (given up) and failing ones (still being
retried after a failed attempt), and replaying them, one or every dead one matching.

Replay is the API's (`POST /v0.1/webhooks/.../replay`, `opendispatch webhooks replay`): the
same body and `webhook-id`, newly signed, with a new retry period, delivered at once.
"""

from __future__ import annotations

import logging

from opendispatch.api.http import Request, Response
from opendispatch.api.webhook_routes import replay_all
from opendispatch.auth.operators import Session
from opendispatch.dashboard.web import DashboardError, PageGroup, query
from opendispatch.ids import is_uuid
from opendispatch.store.records import WebhookFilter
from opendispatch.webhooks.destinations import redact_url

__all__ = ["PAGE_SIZE", "WebhookPages"]

log = logging.getLogger("opendispatch.dashboard")

PAGE_SIZE = 50
_STATES = ("dead", "failing")


class WebhookPages(PageGroup):
    async def list(self, request: Request, session: Session) -> Response:
        applications = await self._store.list_applications()
        names = {app.application_id: app.name for app in applications}
        state = query(request, "state") or "dead"
        application_id = query(request, "application") or None
        before = query(request, "before")
        problems = {}
        if state not in _STATES:
            problems["state"] = "dead or failing"
        if application_id is not None and application_id not in names:
            problems["application"] = "no such application"
        if before is not None and not (before.isascii() and before.isdigit() and len(before) < 19):
            problems["before"] = "not a page this dashboard gave out"
        webhooks = []
        if not problems:
            read = self._browse.dead_webhooks if state == "dead" else self._browse.failing_webhooks
            webhooks = await read(
                application_id=application_id,
                limit=PAGE_SIZE + 1,
                before_id=None if before is None else int(before),
            )
        next_url = None
        if len(webhooks) > PAGE_SIZE:
            webhooks = webhooks[:PAGE_SIZE]
            next_url = self._pages.url(
                "/webhooks", state=state, application=application_id, before=webhooks[-1].id
            )
        notice = None
        if query(request, "notice") == "replayed":
            notice = "The webhook was queued for delivery again."
        elif query(request, "notice") == "not_replayed":
            notice = "That webhook is on its way already: only a delivered or dead one replays."
        elif (count := query(request, "replayed")) is not None and count.isdigit():
            notice = (
                f"{int(count)} dead webhook{'s' if count != '1' else ''} queued for delivery again."
            )
        return self._pages.page(
            "webhooks.html",
            400 if problems else 200,
            session=session,
            section="webhooks",
            applications=applications,
            names=names,
            state=state,
            application_id=application_id or "",
            problems=problems,
            webhooks=[(webhook, redact_url(webhook.url)) for webhook in webhooks],
            next_url=next_url,
            paged=before is not None,
            notice=notice,
        )

    async def replay_one(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> Response:
        webhook_id = request.path_params["webhook_id"]
        found = await self._store.find_webhook(webhook_id) if len(webhook_id) <= 64 else None
        if found is None:
            raise DashboardError(404, "No such webhook", f"There is no webhook {webhook_id}.")
        replayed = await self._store.replay_webhook(found.id, now_ms=self._clock.now_ms())
        if replayed:
            self._runtime.webhooks_replayed()
        log.info(
            "operator %s replayed webhook %s of application %s (workflow %s)%s",
            session.operator,
            found.event_id,
            found.application_id,
            found.dispatch_uuid,
            "" if replayed else f": not replayed, it is {found.state}",
        )
        back = form.get("return_to", "")  # the timeline it was replayed from, or the list
        if not (back.startswith("/workflows/") and is_uuid(back.removeprefix("/workflows/"))):
            back = "/webhooks"
        notice = "replayed" if replayed else "not_replayed"
        separator = "&" if "?" in back else "?"
        return self._pages.redirect(self._pages.url(back) + f"{separator}notice={notice}")

    async def replay_many(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> Response:
        application_id = form.get("application") or None
        if application_id is not None and application_id not in {
            app.application_id for app in await self._store.list_applications()
        }:
            raise DashboardError(400, "No such application", "Nothing was replayed.")
        count = await replay_all(
            self._store,
            WebhookFilter(application_id=application_id, state="dead"),
            now_ms=self._clock.now_ms(),
        )
        if count:
            self._runtime.webhooks_replayed()
        log.info(
            "operator %s replayed %d dead webhooks (application %s)",
            session.operator,
            count,
            application_id or "any",
        )
        return self._pages.redirect(
            self._pages.url("/webhooks", application=application_id, replayed=count)
        )
