"""What every group of authenticated routes needs: who is asking, and its inputs read the same
way (a page size, a body validated by a pydantic model), so every route answers alike."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from opendispatch.api.http import Request
from opendispatch.auth.authenticator import Authenticator, Principal
from opendispatch.config import Settings
from opendispatch.errors import InvalidParameter, InvalidRequest
from opendispatch.runtime.service import Runtime
from opendispatch.store.protocol import Store

__all__ = [
    "AuthenticatedRoutes",
    "invalid_parameter",
    "invalid_request_from",
    "is_json_media_type",
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
    ) -> None:
        self._settings = settings
        self._store = store
        self._runtime = runtime
        self._authenticator = authenticator
        self._clock_ms = clock_ms

    async def _principal(self, request: Request) -> Principal:
        return await self._authenticator.authenticate(
            request.header(b"authorization"), now_s=self._clock_ms() / 1000
        )

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
