"""What a kind of provider (Vonage, Twilio, WhatsApp Cloud, Telnyx) must say about itself, and
the pure adapter each registered account gets.

An adapter does no I/O. It turns a message into the HTTP request the provider documents,
reads the provider's answer into a `SendResult`, checks a callback's signature and reads the
statuses it reports. The runtime owns everything else: the HTTP client (`providers.http`),
rate limits and circuit breakers (`runtime.provider_pacing`), fallback along a route, and the
inbox the statuses land in. So every provider's wire contract can be tested byte for byte
without a network, and against its local fake (`tests/fakes/`) with one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import (
    Accepted,
    OutboundMessage,
    Rejected,
    Unavailable,
)

__all__ = [
    "CAPABILITY_CODE",
    "AccountAdapter",
    "AccountConfig",
    "CallbackRefused",
    "CallbackRequest",
    "CallbackStatus",
    "HttpAnswer",
    "HttpRequest",
    "ProviderKind",
    "Setting",
    "cannot_carry",
    "hash_setting",
    "matches_hashed",
]

# Recorded when an account's provider cannot express a message (a channel or content type it
# does not carry): provider-side, so the next provider of the route is tried.
CAPABILITY_CODE = 1420


def cannot_carry(reason: str) -> Rejected:
    """This provider cannot express the message (its channel or content): try the next."""
    return Rejected(error=MessageError(code=CAPABILITY_CODE, reason=reason), provider_side=True)


_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_setting(value: str) -> str:
    """A `hashed` setting as stored: scrypt, since an operator may choose a guessable one."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(value.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def matches_hashed(presented: str, stored: str) -> bool:
    """Whether `presented` is the value `stored` was hashed from (constant-time compare)."""
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
        salt, digest = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(presented.encode(), salt=salt, **_SCRYPT)
    return hmac.compare_digest(candidate, digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One `--set KEY=VALUE` a kind accepts. `secret` ones are encrypted at rest and never
    shown; `KEY_file=PATH` on the command line reads the value from a file."""

    key: str
    description: str
    secret: bool = False
    required: bool = False  # alternatives ("this or that") are checked by `check_settings`
    # Only ever compared with what a caller presents (WhatsApp's `verify_token`): stored as a
    # salted hash, and the adapter gets the hash (compare with `matches_hashed`).
    hashed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountConfig:
    """A registered provider account, secrets decrypted: what its adapter is built from."""

    name: str
    kind: str
    base_url: str  # scheme, host and port, no trailing slash: "https://api.twilio.com"
    settings: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackRequest:
    """A callback as it reached `/v0.1/providers/{name}/callbacks`.

    `url` is the address the provider used: the server's `--public-url` joined with the path
    and the raw query string, never the Host the request arrived with (behind a proxy they
    differ, and signatures that cover the URL cover the public one)."""

    method: str
    url: str
    query: Sequence[tuple[str, str]]  # decoded, in order, repeats kept
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    received_at_ms: int


class CallbackRefused(Exception):
    """The callback is not answered 2xx and changes nothing. `status_code`: 401 forged or
    unsigned, 403 wrong verify token, 400 unreadable, 503 to ask for a retry (Vonage's rare
    unsigned callbacks come again signed after a 5xx)."""

    def __init__(self, reason: str, *, status_code: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackStatus:
    """One status a callback reports.

    `message_uuid`: our reference, when the callback carries it (every adapter sends one with
    each message: Vonage `client_ref`, Twilio and Telnyx a query parameter of the callback
    URL, WhatsApp `biz_opaque_callback_data`). `status` None: a status with no Dispatch
    meaning (Vonage `buffered`, Telnyx `delivery_unconfirmed`): acknowledged, not applied."""

    provider_message_id: str
    message_uuid: str | None
    status: MessageStatus | None
    occurred_at_ms: int
    error: MessageError | None = None
    price: str | None = None
    raw_status: str = ""  # the provider's own word, for logs


class AccountAdapter(Protocol):
    """One account's wire contract. Pure: no I/O, `now_ms` comes in."""

    def send_request(
        self, message: OutboundMessage, *, callback_url: str | None, now_ms: int
    ) -> HttpRequest | Rejected:
        """The documented request for `message`, or a provider-side `Rejected` (via
        `cannot_carry`) when this provider cannot carry its channel or content. `callback_url`
        (None without `--public-url`) is this account's callback endpoint; the adapter adds
        the message's reference where the provider's API allows it."""
        ...

    def read_answer(
        self, message: OutboundMessage, answer: HttpAnswer, *, now_ms: int
    ) -> Accepted | Rejected | Unavailable:
        """2xx: `Accepted` with the provider's message id. 429: `Unavailable(throttled=True)`
        with `retry_after_ms` from `Retry-After` or `x-ratelimit-reset` when given. 5xx:
        `Unavailable`. Other 4xx: `Rejected` with the provider's code and text, `provider_side`
        for credentials, balance, quota and account errors."""
        ...

    def verify_callback(self, request: CallbackRequest) -> None:
        """Raise `CallbackRefused` unless the request is signed exactly as the provider signs."""
        ...

    def read_callback(self, request: CallbackRequest) -> list[CallbackStatus]:
        """The statuses of a verified callback (maybe none: an event we do not track).
        Raise `CallbackRefused(status_code=400)` when the body cannot be read."""
        ...

    def handshake(self, request: CallbackRequest) -> bytes:
        """The answer body to a `GET` on the callback endpoint (WhatsApp Cloud's verification
        handshake); kinds without one raise `CallbackRefused(status_code=405)`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderKind:
    name: str  # as `--kind` spells it
    default_base_url: str
    # Messages per second per account when `--set rate=N` is not given, from the provider's
    # documented limit (see each module).
    default_rate_per_s: float
    channels: frozenset[str]  # the Dispatch channels it carries
    settings: tuple[Setting, ...]
    # Raises ValueError with a message naming the keys, for a set of values that cannot work
    # (a missing key, neither of two alternatives, a malformed value).
    check_settings: _Check
    adapter: _Build
    notes: tuple[str, ...] = field(default=())

    def setting(self, key: str) -> Setting | None:
        for setting in self.settings:
            if setting.key == key:
                return setting
        return None


class _Check(Protocol):
    def __call__(self, values: Mapping[str, str], /) -> None: ...


class _Build(Protocol):
    def __call__(self, config: AccountConfig, /) -> AccountAdapter: ...
