"""`Idempotency-Key` on `POST /v0.1/dispatch`: a client that retries a request it got no
answer to (a timeout, a dropped connection) gets the first request's answer, not a second
workflow.

The key is the client's (per application), printable ASCII of 1 to 255 characters. A request
is the same as the first one with its key when its body has the same bytes: the SHA-256 of
the exact body is stored with the key, so a body that differs in anything, whitespace or key
order included, is a different request (422), as the workflow stored is the body byte for
byte. The store decides who was first, in the transaction that stores the workflow (see
`Store.create_workflow`); here are the header's syntax and the answers.
"""

from __future__ import annotations

import hashlib

from opendispatch.api.http import Request
from opendispatch.errors import InvalidParameter, InvalidRequest, UnprocessableEntity
from opendispatch.store.records import EarlierRequest, IdempotencyKey

__all__ = ["HEADER", "REPLAYED", "idempotency_key", "same_request", "with_body"]

HEADER = b"idempotency-key"
# On the answer to a repeat, as Stripe marks its replays.
REPLAYED = (b"idempotent-replayed", b"true")
_MAX_LENGTH = 255


def idempotency_key(request: Request) -> str | None:
    """The request's key, if it sent one; 400 naming the header if it is not usable."""
    if request.header(HEADER) is None:  # most requests: one lookup in a dict built anyway
        return None
    values = request.header_values(HEADER)
    if len(values) > 1:
        raise _invalid("must be sent once")
    (value,) = values
    if not 1 <= len(value) <= _MAX_LENGTH or not all(0x20 <= byte <= 0x7E for byte in value):
        raise _invalid(f"must be 1 to {_MAX_LENGTH} printable ASCII characters")
    return value.decode("ascii")


def with_body(key: str, body: bytes) -> IdempotencyKey:
    return IdempotencyKey(key=key, request_hash=hashlib.sha256(body).hexdigest())


def same_request(earlier: EarlierRequest, key: IdempotencyKey) -> None:
    """A request whose key was used already gets the first request's 202 (with `REPLAYED`)
    if it is the same request; else 422, nothing stored, the key still the first one's."""
    if earlier.request_hash != key.request_hash:
        raise UnprocessableEntity(
            "This Idempotency-Key was used within the last 24 hours with a different request "
            "body: send the same body to get the first answer again, or use a new key.",
            invalid_parameters=(InvalidParameter("Idempotency-Key", "used with another body"),),
        )


def _invalid(reason: str) -> InvalidRequest:
    return InvalidRequest(
        "The Idempotency-Key header is not valid.",
        invalid_parameters=(InvalidParameter("Idempotency-Key", reason),),
    )
