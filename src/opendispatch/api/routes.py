"""What every group of authenticated routes needs: who is asking, and its inputs read the same
way (a page size, a body validated by a pydantic model), so every route answers alike."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from urllib.parse import parse_qs

from pydantic import ValidationError

from opendispatch.api.http import Request
from opendispatch.api.rate_limit import RateLimiter
from opendispatch.auth.authenticator import Authenticator, Principal
from opendispatch.config import Settings
from opendispatch.errors import InvalidParameter, InvalidRequest, TooManyRequests
from opendispatch.runtime.service import Runtime
from opendispatch.store.protocol import Store

__all__ = [
    "AuthenticatedRoutes",
    "QueryParameters",
    "invalid_parameter",
    "invalid_request_from",
    "is_json_media_type",
    "read_query",
]


class AuthenticatedRoutes:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        runtime: Runtime,
        authenticator: Authenticator,
        clock_ms: Callable[[], int],
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._rate_limiter = rate_limiter
        self._settings = settings
        self._store = store
        self._runtime = runtime
        self._authenticator = authenticator
        self._clock_ms = clock_ms

    async def _principal(self, request: Request) -> Principal:
        """Who is asking, once the application is within its `--rate-limit`."""
        now_ms = self._clock_ms()
        principal = await self._authenticator.authenticate_headers(
            request.header_values(b"authorization"), now_s=now_ms / 1000
        )
        if self._rate_limiter is not None:
            wait_s = self._rate_limiter.admit(principal.application_id, now_ms)
            if wait_s > 0:
                raise TooManyRequests(
                    f"This application may make {self._rate_limiter.rate_per_s:g} requests "
                    "per second; try again later.",
                    headers=((b"retry-after", str(max(1, math.ceil(wait_s))).encode()),),
                )
        return principal

    def _page_size(self, given: str | None) -> int:
        """`page_size` from a query: ASCII digits only, within the configured range."""
        if given is None:
            return self._settings.page_size_default
        limit = self._settings.page_size_max
        if not (given.isascii() and given.isdigit() and len(given) <= 4) or not (
            1 <= int(given) <= limit
        ):
            raise invalid_parameter("page_size", f"must be an integer between 1 and {limit}")
        return int(given)


def is_json_media_type(content_type: bytes | None) -> bool:
    """`application/json`, `application/*+json`, any parameters; absent is taken as JSON."""
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


def invalid_parameter(name: str, reason: str) -> InvalidRequest:
    return InvalidRequest(
        f"{name} is not valid.", invalid_parameters=(InvalidParameter(name, reason),)
    )


def invalid_request_from(error: ValidationError, detail: str) -> InvalidRequest:
    """A pydantic validation error as a 400 naming every invalid field by its path."""
    return InvalidRequest(
        detail,
        invalid_parameters=tuple(
            InvalidParameter(".".join(str(part) for part in item["loc"]) or "body", item["msg"])
            for item in error.errors(include_url=False)
        ),
    )


class QueryParameters:
    """A list's query, read by `read_query`: each name known, each single one given once."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    def one(self, name: str) -> str | None:
        given = self._values.get(name)
        return None if given is None else given[0]

    def many(self, name: str) -> list[str]:
        """Every value of a list parameter, whether repeated (`a=x&a=y`) or joined (`a=x,y`)."""
        return [part for given in self._values.get(name, ()) for part in given.split(",")]


def read_query(
    request: Request, known: Collection[str], *, lists: Collection[str] = ()
) -> QueryParameters:
    """The query string, refusing (400, each one named) a parameter the route does not know,
    and a single-valued one given twice: a filter the server ignored, or one of two values it
    picked, would answer a question the client did not ask."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(raw, keep_blank_values=True)
    unknown = sorted(set(values) - set(known))
    repeated = sorted(
        name
        for name, given in values.items()
        if len(given) > 1 and name in known and name not in lists
    )
    if unknown or repeated:
        raise InvalidRequest(
            "Unknown query parameter." if unknown else "A query parameter is given twice.",
            invalid_parameters=tuple(
                [InvalidParameter(name, "is not a parameter of this list") for name in unknown]
                + [InvalidParameter(name, "is given more than once") for name in repeated]
            ),
        )
    return QueryParameters(values)
