"""uvicorn's httptools protocol with limits, so that a hostile client cannot starve the server.

uvicorn with httptools bounds neither the size of a request's head nor the time to send it,
and closes a connection only after a response (its keep-alive timer): a client could hold a
socket forever, or grow one header without end (60 MB took the RSS from 63 to 395 MB). Here,
before any application code runs:

- a head larger than `max_header_bytes`, or with more than `max_header_fields` fields, is
  answered 431 and the connection closed;
- a head not complete `header_timeout_s` after the connection opened (or the next request
  began), or a body not complete `body_timeout_s` after its head, closes the connection;
- beyond `max_connections` open connections, a new one is closed at once, which keeps file
  descriptors for the clients already served (and for the database and webhooks).

Deadlines are checked by one sweep per server twice a second, not a timer per request: a
request costs an attribute write, not a timer armed and cancelled. Refusals are logged at most
once per kind every ten seconds, with a count, so a flood cannot flood the log as well.
uvicorn's own plain-text 400 is answered in Vonage's error shape.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from opendispatch.api.problems import problem_response
from opendispatch.errors import ApiError, HeaderFieldsTooLarge, InvalidRequest

__all__ = ["TransportLimits", "guarded_http_protocol"]

log = logging.getLogger("opendispatch.transport")

_SWEEP_INTERVAL_S = 0.5
_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportLimits:
    max_header_bytes: int = 64 * 1024
    max_header_fields: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; `data_received` answers 431."""


class _RefusalLog:
    """One warning per kind of refusal per interval, counting the ones it kept quiet."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def note(self, now: float, reason: str, client: tuple[str, int] | None) -> None:
        logged_at, quiet = self._last.get(reason, (-math.inf, 0))
        if now - logged_at < _LOG_INTERVAL_S:
            self._last[reason] = (logged_at, quiet + 1)
            return
        self._last[reason] = (now, 0)
        more = f" (and {quiet} more since the last such line)" if quiet else ""
        log.warning("refused %s: %s%s", client[0] if client else "a client", reason, more)


class _Guard:
    """What the connections of one server share: limits, the refusal log, the sweep."""

    def __init__(self, limits: TransportLimits) -> None:
        self.limits = limits
        self.header_timeout_s = limits.header_timeout_s
        self.body_timeout_s = limits.body_timeout_s
        self.refusals = _RefusalLog()
        # The loop's clock as of the last sweep: deadlines are set from it, a plain attribute
        # read per request, and are as precise as the sweep that checks them anyway.
        self.now = 0.0
        self._sweep: asyncio.TimerHandle | None = None

    def start_sweeping(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        if self._sweep is None:
            self.now = loop.time()
            self._sweep = loop.call_later(_SWEEP_INTERVAL_S, self._expire, loop, connections)

    def _expire(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        now = self.now = loop.time()
        for connection in [c for c in connections if isinstance(c, GuardedHttpProtocol)]:
            deadline = connection.deadline
            if deadline is not None and deadline <= now:
                connection.expire(now)
        self._sweep = loop.call_later(_SWEEP_INTERVAL_S, self._expire, loop, connections)


class GuardedHttpProtocol(HttpToolsProtocol):
    guard: _Guard  # set on the subclass `guarded_http_protocol` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # When the current read (head or body) must be done by, on the loop's clock; None
        # while the application works on a request or the connection waits between requests
        # (uvicorn's keep-alive timer covers that).
        self.deadline: float | None = None
        self._in_head = True
        self._head_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        if len(self.connections) >= guard.limits.max_connections:
            self.transport = transport
            self._refused = True
            transport.close()
            reason = f"{guard.limits.max_connections} connections open already (max)"
            guard.refusals.note(self.loop.time(), reason, transport.get_extra_info("peername"))
            return
        super().connection_made(transport)
        guard.start_sweeping(self.loop, self.connections)
        self.deadline = guard.now + guard.header_timeout_s

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no WebSockets here (ws="none"): the request was served as plain HTTP
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Refused):
                fields = self.guard.limits.max_header_fields
                self._refuse_head(
                    f"more than {fields} header fields",
                    f"The request has more than {fields} header fields.",
                )
            else:
                self.guard.refusals.note(self.loop.time(), "not valid HTTP/1.1", self.client)
                self.send_400_response("The request is not valid HTTP/1.1.")
            return
        if self._in_head:
            # Counted whole: a read that also ends the previous request's body counts a little
            # more than the head itself, which errs on the side of the server.
            self._head_bytes += len(data)
            limit = self.guard.limits.max_header_bytes
            if self._head_bytes > limit:
                self._refuse_head(
                    f"request head larger than {limit} bytes",
                    f"The request line and header fields are larger than {limit} bytes.",
                )
        elif self.deadline is None and (self.cycle is None or self.cycle.response_complete):
            # Bytes between requests that start none (blank lines): still bound by a deadline.
            self.deadline = self.guard.now + self.guard.header_timeout_s

    # The parser's callbacks, once per request: kept to a few attribute writes (measured).

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._in_head = True
        self._head_bytes = 0
        guard = self.guard
        self.deadline = guard.now + guard.header_timeout_s

    def on_headers_complete(self) -> None:
        self._in_head = False
        guard = self.guard
        if len(self.headers) > guard.limits.max_header_fields:
            raise _Refused
        self.deadline = guard.now + guard.body_timeout_s
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self.deadline = None
        HttpToolsProtocol.on_message_complete(self)

    def expire(self, now: float) -> None:
        """Called by the sweep once the deadline has passed: close, and say so."""
        self.deadline = None
        if self.transport.is_closing():
            return
        if self._in_head:
            reason = f"request head not complete within {self.guard.limits.header_timeout_s:g} s"
        else:
            reason = f"request body not complete within {self.guard.limits.body_timeout_s:g} s"
        self.guard.refusals.note(now, reason, self.client)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse, in Vonage's shape."""
        self._answer_and_close(InvalidRequest(msg))

    def _refuse_head(self, reason: str, detail: str) -> None:
        self._refused = True
        self.deadline = None
        self.guard.refusals.note(self.loop.time(), reason, self.client)
        self._answer_and_close(HeaderFieldsTooLarge(detail))

    def _answer_and_close(self, error: ApiError) -> None:
        response = problem_response(error, str(uuid.uuid4()))
        head = [STATUS_LINE[error.status]]
        for name, value in [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
            (b"connection", b"close"),
            *response.headers,
        ]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", response.body]))
        self.transport.close()


def guarded_http_protocol(limits: TransportLimits) -> type[HttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)`, its connections sharing `limits`."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"guard": _Guard(limits)})
