"""`/v0.1/webhooks`: an application's webhooks (dead letters first of all), and replay.

A webhook given up as `dead` is not lost: it keeps its body, and an application (or an operator,
with `opendispatch webhooks replay`) can deliver it again once its receiver is fixed. A replay
sends the same body with the same `webhook-id` (receivers that drop repeats see it as one
event), newly signed, with a new retry period. Only settled webhooks (delivered or dead) can be
replayed: one still pending is already on its way (409).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal
from urllib.parse import urlencode

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opendispatch.api.http import Request, Response, json_response
from opendispatch.api.json_body import read_json
from opendispatch.api.routes import (
    AuthenticatedRoutes,
    invalid_parameter,
    invalid_request_from,
    read_query,
)
from opendispatch.api.views import webhook_entry, webhook_page
from opendispatch.errors import Conflict, NotFound
from opendispatch.ids import is_uuid
from opendispatch.store.protocol import Store
from opendispatch.store.records import WebhookFilter

__all__ = ["REPLAY_BATCH", "ReplayFilter", "WebhookRoutes"]

STATES = ("pending", "held", "delivered", "dead")
_QUERY_PARAMETERS = frozenset({"state", "dispatch_uuid", "page_size", "cursor"})
REPLAY_BATCH = 500  # rows per statement when replaying many: the hot path keeps its turn


class ReplayFilter(BaseModel):
    """Which of the application's webhooks to replay (all of its dead ones by default)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    state: Literal["dead", "delivered"] = "dead"
    dispatch_uuid: str | None = Field(
        default=None, description="Only this workflow's webhooks.", pattern=r"^[0-9a-f-]{36}$"
    )


class WebhookRoutes(AuthenticatedRoutes):
    async def list(self, request: Request) -> Response:
        principal = await self._principal(request)
        query = read_query(request, _QUERY_PARAMETERS)
        state = query.one("state")
        if state is not None and state not in STATES:
            raise invalid_parameter("state", "must be one of " + ", ".join(STATES))
        dispatch_uuid = query.one("dispatch_uuid")
        if dispatch_uuid is not None and not is_uuid(dispatch_uuid):
            raise invalid_parameter("dispatch_uuid", "must be a dispatch_uuid")
        page_size = self._page_size(query.one("page_size"))
        cursor = query.one("cursor")
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) < 19):
            raise invalid_parameter("cursor", "must be a cursor this API gave out")
        records = await self._store.list_webhooks_page(
            WebhookFilter(
                application_id=principal.application_id, state=state, dispatch_uuid=dispatch_uuid
            ),
            limit=page_size + 1,  # one more tells whether a next page exists
            before_id=None if cursor is None else int(cursor),
        )
        has_next = len(records) > page_size
        records = records[:page_size]
        kept = {
            name: value
            for name in ("state", "dispatch_uuid")
            if (value := query.one(name)) is not None
        }
        kept["page_size"] = str(page_size)
        self_query = kept | ({"cursor": cursor} if cursor else {})
        next_href = None
        if has_next:
            next_href = f"/v0.1/webhooks?{urlencode(kept | {'cursor': str(records[-1].id)})}"
        body = webhook_page(
            records,
            page_size=page_size,
            self_href=f"/v0.1/webhooks?{urlencode(self_query)}",
            next_href=next_href,
        )
        return json_response(200, body)

    async def replay_one(self, request: Request) -> Response:
        principal = await self._principal(request)
        webhook_id = request.path_params["webhook_id"]
        found = await self._store.find_webhook(webhook_id) if len(webhook_id) <= 64 else None
        if found is None or found.application_id != principal.application_id:
            raise NotFound(f"No webhook {webhook_id} for this application.")
        if not await self._store.replay_webhook(found.id, now_ms=self._clock_ms()):
            raise Conflict(
                f"Webhook {webhook_id} is {found.state}: it is already on its way; only a "
                "delivered or dead webhook can be replayed."
            )
        self._runtime.webhooks_replayed()
        replayed = await self._store.find_webhook(webhook_id)
        assert replayed is not None
        return json_response(202, webhook_entry(replayed).model_dump_json(by_alias=True).encode())

    async def replay_many(self, request: Request) -> Response:
        principal = await self._principal(request)
        body = await request.body(16 * 1024)
        body = body if body.strip() else b"{}"
        read_json(body)  # the same reading of JSON as every other body (depth, NaN)
        try:
            wanted = ReplayFilter.model_validate_json(body)
        except ValidationError as exc:
            raise invalid_request_from(exc, "The replay filter did not validate.") from None
        replayed = await replay_all(
            self._store,
            WebhookFilter(
                application_id=principal.application_id,
                state=wanted.state,
                dispatch_uuid=wanted.dispatch_uuid,
            ),
            now_ms=self._clock_ms(),
        )
        if replayed:
            self._runtime.webhooks_replayed()
        return json_response(202, msgspec.json.encode({"replayed": replayed}))


async def replay_all(
    store: Store,
    which: WebhookFilter,
    *,
    now_ms: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Replay every webhook `which` names, a batch per statement; how many. `progress` is
    told the count so far after each batch (`opendispatch webhooks replay` shows it)."""
    total = 0
    while True:
        replayed = await store.replay_webhooks(which, now_ms=now_ms, limit=REPLAY_BATCH)
        total += replayed
        if progress is not None:
            progress(total)
        if replayed < REPLAY_BATCH:
            return total
