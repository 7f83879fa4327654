"""The Messages API v1's error answers: RFC 7807 bodies with Vonage's own `type` URLs and
titles, so a v1 client (and its SDK) reads our refusals as it reads Vonage's.

Every error the server raises is an `ApiError` with a status; on a `/v1/` path it is answered
through `as_messages_problem`, which keeps its status, detail, `invalid_parameters` and
headers and gives it v1's type and title. Refused parameters are 422 `Invalid params`
(`#1150`), as Vonage answers them; the rest follow Vonage's general error pages.
"""

from __future__ import annotations

from typing import Final

from opendispatch.errors import ApiError, InvalidParameter

__all__ = ["MessagesProblem", "as_messages_problem", "invalid_params"]

_GENERAL: Final = "https://developer.vonage.com/api-errors"
_MESSAGES: Final = "https://developer.vonage.com/api-errors/messages"

# status -> (type, title) of Vonage's answers; a status not here keeps its reason phrase.
_PROBLEMS: Final[dict[int, tuple[str, str]]] = {
    400: (f"{_GENERAL}#bad-request", "Bad Request"),
    401: (f"{_GENERAL}#unauthorized", "Unauthorized"),
    403: (f"{_GENERAL}#forbidden", "Forbidden"),
    404: (f"{_GENERAL}#not-found", "Not Found"),
    405: (f"{_GENERAL}#method-not-allowed", "Method Not Allowed"),
    409: (f"{_GENERAL}#conflict", "Conflict"),
    413: (f"{_GENERAL}#payload-too-large", "Payload Too Large"),
    415: (f"{_GENERAL}#unsupported-media-type", "Unsupported Media Type"),
    422: (f"{_MESSAGES}#1150", "Invalid params"),
    429: (f"{_GENERAL}#rate-limit", "Rate Limit Hit"),
    431: (f"{_GENERAL}#request-header-fields-too-large", "Request Header Fields Too Large"),
    500: (f"{_MESSAGES}#1030", "Internal error"),
    503: (f"{_GENERAL}#service-unavailable", "Service Unavailable"),
}


class MessagesProblem(ApiError):
    """An error answered in the Messages API v1's words."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        invalid_parameters: tuple[InvalidParameter, ...] = (),
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(detail, invalid_parameters=invalid_parameters, headers=headers)
        self.status = status
        self._type, self.title = _PROBLEMS.get(status, (f"{_GENERAL}#error", "Error"))

    @property
    def type(self) -> str:
        return self._type


def invalid_params(detail: str, parameters: tuple[InvalidParameter, ...]) -> MessagesProblem:
    return MessagesProblem(422, detail, invalid_parameters=parameters)


def as_messages_problem(error: ApiError) -> ApiError:
    """`error` as v1 answers it. A refused body (400 naming fields) is 422 there: v1 answers
    every invalid parameter so, a missing body or broken JSON included."""
    if isinstance(error, MessagesProblem):
        return error
    status = error.status
    if status == 400 and error.invalid_parameters:
        status = 422
    return MessagesProblem(
        status,
        error.detail,
        invalid_parameters=error.invalid_parameters,
        headers=error.headers,
    )
