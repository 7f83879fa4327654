"""The one exception tree of OpenDispatch.

    OpenDispatchError                 base of everything we raise on purpose
    ├── ConfigurationError            bad settings or command-line input; fatal at start
    ├── engine.failover.InvalidTransition
    │                                 an event the failover engine cannot apply (a bug upstream)
    ├── StoreError                    the database failed; `retryable` says if trying again helps
    │   ├── MigrationError            the schema cannot be brought to the expected version
    │   ├── DatabaseUnavailable       the database is missing, deleted, replaced or damaged:
    │                                 nothing succeeds until an operator acts (503, no retry)
    │   └── ApplicationDeleted        a workflow refused because its application was deleted
    │                                 after its request was authenticated (401)
    └── ApiError                      becomes an HTTP answer in Vonage's error shape
        ├── InvalidRequest (400)      with `invalid_parameters`
        ├── Unauthorized (401)
        ├── Forbidden (403)            authenticated, and not allowed this (a live application
        │                              injecting sandbox statuses)
        ├── NotFound (404)
        ├── MethodNotAllowed (405)
        ├── Conflict (409)             the resource is not in a state that allows this
        ├── PayloadTooLarge (413)
        ├── UnsupportedMediaType (415)
        ├── UnprocessableEntity (422)  well-formed, and not processable as asked (an
        │                              Idempotency-Key used with another body)
        ├── TooManyRequests (429)      the application's --rate-limit; with Retry-After
        ├── HeaderFieldsTooLarge (431)  a request head too large or with too many fields,
        │                              refused by the transport (`api/transport.py`)
        └── ServiceUnavailable (503)   the store is busy or closing; retry

Errors from libraries (sqlite3, asyncpg, PyJWT, pydantic) are converted where they enter our
code, with `raise ... from exc`, so callers only ever catch these.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ApiError",
    "ApplicationDeleted",
    "ConfigurationError",
    "Conflict",
    "DatabaseUnavailable",
    "Forbidden",
    "HeaderFieldsTooLarge",
    "InvalidParameter",
    "InvalidRequest",
    "MethodNotAllowed",
    "MigrationError",
    "NotFound",
    "OpenDispatchError",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "StoreError",
    "TooManyRequests",
    "Unauthorized",
    "UnprocessableEntity",
    "UnsupportedMediaType",
]

# Vonage's APIs name the kind of error with a URL; the Dispatch spec's example uses this base.
ERROR_TYPE_BASE = "https://www.nexmo.com/messages/Errors"


class OpenDispatchError(Exception):
    """Base of every error OpenDispatch raises on purpose."""


class ConfigurationError(OpenDispatchError):
    pass


class StoreError(OpenDispatchError):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class MigrationError(StoreError):
    pass


class DatabaseUnavailable(StoreError):
    """The database file is gone, replaced or damaged: retrying cannot help."""


class ApplicationDeleted(StoreError):
    """The application was deleted between authenticating a request and storing what it
    asked for: nothing was stored, and its credentials are no longer good."""


@dataclass(frozen=True, slots=True)
class InvalidParameter:
    """One entry of `invalid_parameters`: `name` is the field's path, e.g. `workflow[0].to`."""

    name: str
    reason: str


class ApiError(OpenDispatchError):
    """An error the API answers with; the subclass fixes the status, type and title."""

    status: int = 500
    type_fragment: str = "InternalError"
    title: str = "Internal Server Error"

    def __init__(
        self,
        detail: str,
        *,
        invalid_parameters: tuple[InvalidParameter, ...] = (),
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.invalid_parameters = invalid_parameters
        self.headers = headers

    @property
    def type(self) -> str:
        return f"{ERROR_TYPE_BASE}#{self.type_fragment}"


class InvalidRequest(ApiError):
    status = 400
    type_fragment = "InvalidParams"
    title = "Bad Request"


class Unauthorized(ApiError):
    status = 401
    type_fragment = "Unauthorized"
    title = "Unauthorized"


class Forbidden(ApiError):
    status = 403
    type_fragment = "Forbidden"
    title = "Forbidden"


class NotFound(ApiError):
    status = 404
    type_fragment = "NotFound"
    title = "Not Found"


class MethodNotAllowed(ApiError):
    status = 405
    type_fragment = "MethodNotAllowed"
    title = "Method Not Allowed"


class Conflict(ApiError):
    status = 409
    type_fragment = "Conflict"
    title = "Conflict"


class PayloadTooLarge(ApiError):
    status = 413
    type_fragment = "PayloadTooLarge"
    title = "Payload Too Large"


class UnsupportedMediaType(ApiError):
    status = 415
    type_fragment = "UnsupportedMediaType"
    title = "Unsupported Media Type"


class UnprocessableEntity(ApiError):
    status = 422
    type_fragment = "Unprocessable"
    title = "Unprocessable Entity"


class TooManyRequests(ApiError):
    status = 429
    type_fragment = "Throttled"
    title = "Too Many Requests"


class HeaderFieldsTooLarge(ApiError):
    status = 431
    type_fragment = "RequestHeaderFieldsTooLarge"
    title = "Request Header Fields Too Large"


class ServiceUnavailable(ApiError):
    status = 503
    type_fragment = "ServiceUnavailable"
    title = "Service Unavailable"
