"""Vonage's error shape: `{type, title, detail, instance, invalid_parameters}`.

Every error the API answers with goes through `problem_response`, so 400, 401, 404, 405, 413,
415, 503 and 500 all look alike; `instance` is the request id, also written to the server log
so an operator can find the request a user reports.
"""

from __future__ import annotations

import msgspec

from opendispatch.api.http import Response
from opendispatch.errors import ApiError

__all__ = ["problem_response"]

_encode = msgspec.json.Encoder().encode


def problem_response(
    error: ApiError, request_id: str, *, content_type: bytes = b"application/json"
) -> Response:
    """`content_type`: the Dispatch API answers `application/json`, as its spec shows; the
    Messages API v1 `application/problem+json`, as RFC 7807 and Vonage do."""
    body = _encode(
        {
            "type": error.type,
            "title": error.title,
            "detail": error.detail,
            "instance": request_id,
            "invalid_parameters": [
                {"name": parameter.name, "reason": parameter.reason}
                for parameter in error.invalid_parameters
            ],
        }
    )
    return Response(
        error.status,
        body,
        [(b"x-request-id", request_id.encode()), *error.headers],
        content_type=content_type,
    )
