"""The workflow list's query: `status`, `channel`, `created_after` and `created_before`, with
`page_size` and `cursor`.

Read strictly: an unknown parameter, a repeated single one and every invalid value is a 400
naming it, since a filter the server silently dropped answers a question the client did not
ask. Written back into the page's `self` and `next` links, normalised, so that following
`next` keeps every filter.

Decisions the issue left open:
- `status` takes several values, comma-separated or repeated (`status=in_progress,error`);
  `channel` takes one (a workflow "on sms or whatsapp" and "on sms and whatsapp" differ).
- `channel` matches a workflow with a step on that channel, whether or not the step was
  reached: the channels asked for, as submitted.
- `created_after` is inclusive and `created_before` exclusive, so consecutive ranges
  (`created_after=D1&created_before=D2`, then `created_after=D2...`) neither overlap nor leave
  a gap. Both are ISO 8601; without an offset, UTC; a date alone is its midnight.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from opendispatch.api.http import Request
from opendispatch.api.request_models import Channel
from opendispatch.api.routes import read_query
from opendispatch.engine.model import WorkflowStatus
from opendispatch.errors import InvalidParameter, InvalidRequest
from opendispatch.ids import is_uuid
from opendispatch.store.records import WorkflowFilter
from opendispatch.timefmt import iso_ms

__all__ = ["QUERY_PARAMETERS", "WorkflowQuery", "read_workflow_query"]

QUERY_PARAMETERS: Final = (
    "page_size",
    "cursor",
    "status",
    "channel",
    "created_after",
    "created_before",
)
_STATUSES: Final = tuple(status.value for status in WorkflowStatus)
_CHANNELS: Final = tuple(channel.value for channel in Channel)
# An offset's `+` arrives as a space when the client did not percent-encode it
# (`...T10:00:00+01:00` in a query is `...T10:00:00 01:00` once decoded): put it back.
_OFFSET_AS_SPACE: Final = re.compile(r"(T[0-9:.,]+) ([0-9]{2}(?::?[0-9]{2})?)$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_LATEST_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


@dataclass(frozen=True, slots=True)
class WorkflowQuery:
    page_size: int
    cursor: str | None
    where: WorkflowFilter

    def href(self, cursor: str | None) -> str:
        """This list's URL at `cursor`: the same page size and filters."""
        query = {"page_size": str(self.page_size)}
        where = self.where
        if where.statuses:
            query["status"] = ",".join(s.value for s in WorkflowStatus if s in where.statuses)
        if where.channel is not None:
            query["channel"] = where.channel
        if where.created_after_ms is not None:
            query["created_after"] = iso_ms(where.created_after_ms)
        if where.created_before_ms is not None:
            query["created_before"] = iso_ms(where.created_before_ms)
        if cursor is not None:
            query["cursor"] = cursor
        return f"/v0.1/dispatch?{urlencode(query, safe=',:')}"


def read_workflow_query(request: Request, page_size: Callable[[str | None], int]) -> WorkflowQuery:
    """The query of `GET /v0.1/dispatch`, or a 400 naming every parameter that is wrong."""
    query = read_query(request, QUERY_PARAMETERS, lists=("status",))
    problems: list[InvalidParameter] = []
    try:
        size = page_size(query.one("page_size"))
    except InvalidRequest as exc:
        problems += exc.invalid_parameters
        size = 0

    cursor = query.one("cursor")
    if cursor is not None:
        if is_uuid(cursor):
            cursor = cursor.lower()  # ids compare as lower-case text
        else:
            problems.append(InvalidParameter("cursor", "must be a dispatch_uuid"))

    statuses = query.many("status")
    if any(status not in _STATUSES for status in statuses):
        problems.append(
            InvalidParameter(
                "status",
                f"must be one of {', '.join(_STATUSES)} (several: comma-separated or repeated)",
            )
        )
    channel = query.one("channel")
    if channel is not None and channel not in _CHANNELS:
        problems.append(InvalidParameter("channel", f"must be one of {', '.join(_CHANNELS)}"))

    after_ms = _instant("created_after", query.one("created_after"), problems)
    before_ms = _instant("created_before", query.one("created_before"), problems)
    if after_ms is not None and before_ms is not None and before_ms <= after_ms:
        problems.append(InvalidParameter("created_before", "must be later than created_after"))

    if problems:
        raise InvalidRequest(
            "The list's query parameters did not validate.", invalid_parameters=tuple(problems)
        )
    return WorkflowQuery(
        page_size=size,
        cursor=cursor,
        where=WorkflowFilter(
            statuses=frozenset(WorkflowStatus(status) for status in statuses),
            channel=channel,
            created_after_ms=_clamped(after_ms),
            created_before_ms=_clamped(before_ms),
        ),
    )


def _instant(name: str, text: str | None, problems: list[InvalidParameter]) -> int | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"\1+\2", text))
    except ValueError:
        problems.append(
            InvalidParameter(name, "must be an ISO 8601 time, such as 2026-01-31T00:00:00Z")
        )
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Exact (no float), rounded up: a bound between two milliseconds leaves out the earlier
    # one, whether it is the inclusive `created_after` or the exclusive `created_before`.
    return -((_EPOCH - parsed) // _MILLISECOND)


def _clamped(unix_ms: int | None) -> int | None:
    """Within what the links can write back (and no workflow is older than 1970)."""
    return None if unix_ms is None else min(max(unix_ms, 0), _LATEST_MS)
