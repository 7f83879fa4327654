"""`GET /metrics`: the server's metrics in Prometheus' text format (version 0.0.4).

Prometheus scrapes without an application's credentials, so the route takes none of the
API's: it is open by default (like `/health`, on the same port; put it behind the network
rules that guard the port), or, with `--metrics-token`, it asks for that token as a bearer
token. The token is kept only as its SHA-256 and compared in constant time, the digests being
of equal length whatever was sent. `--no-metrics` removes the route (404).

What a scrape costs: rendering the registry (about a millisecond) and, at most once a second,
reading the queue depths aside (see `metrics/queues.py`); nothing on the hot path waits.
"""

from __future__ import annotations

import hashlib
import hmac

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

from opendispatch.api.http import Request, Response
from opendispatch.errors import Unauthorized
from opendispatch.metrics.queues import QueueDepths

__all__ = ["MetricsRoute"]

_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode()
_CHALLENGE = ((b"www-authenticate", b'Bearer realm="metrics"'),)


class MetricsRoute:
    def __init__(
        self, registry: CollectorRegistry, queues: QueueDepths, *, token: str | None
    ) -> None:
        self._registry = registry
        self._queues = queues
        self._token_digest = None if token is None else _digest(token.encode())

    async def get(self, request: Request) -> Response:
        self._authorize(request)
        await self._queues.refresh()
        return Response(200, generate_latest(self._registry), content_type=_CONTENT_TYPE)

    def _authorize(self, request: Request) -> None:
        if self._token_digest is None:
            return
        given = request.header_values(b"authorization")
        # One header, `Bearer <token>`: two headers are refused, as on the API's routes.
        scheme, _, token = given[0].partition(b" ") if len(given) == 1 else (b"", b"", b"")
        if not (
            scheme.lower() == b"bearer"
            and hmac.compare_digest(_digest(token.strip()), self._token_digest)
        ):
            raise Unauthorized(
                "GET /metrics needs the server's metrics token: "
                "Authorization: Bearer <--metrics-token>.",
                headers=_CHALLENGE,
            )


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
