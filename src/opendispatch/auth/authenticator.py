"""Who is calling: HTTP Basic `api_key:api_secret`, or a Bearer JWT signed RS256.

The JWT form is what Vonage's SDKs generate for an application: claims `application_id`,
`iat`, `jti`, and usually `exp`. `exp` is honoured when present (with a small leeway for
clock skew); a token without one is refused once its `iat` is older than `max_token_age_s`.
Dates are finite numbers (PyJWT reads `NaN` and `Infinity`, and every comparison with NaN is
false, so such a token would never expire). A token's `jti` is good for one request unless
`replay` is `allow` (see `replay.py`).

What the caller sends is checked before it reaches the database: an identifier that is not
printable text of a sane length (a NUL, which PostgreSQL refuses in text, or a lone
surrogate, which no database can encode) is refused like an unknown one.

Credentials are cached for a few seconds so a request costs no database read; a miss always
reads, so an application created with `opendispatch apps create` works at once.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from opendispatch.auth.keys import load_public_key
from opendispatch.auth.replay import JwtReplay, SeenTokens
from opendispatch.auth.secrets import verify_secret
from opendispatch.errors import ConfigurationError, Unauthorized
from opendispatch.store.protocol import Store
from opendispatch.store.records import ApplicationCredentials

__all__ = ["Authenticator", "Principal"]

_CHALLENGE = ((b"www-authenticate", b'Basic realm="opendispatch", Bearer'),)
_MAX_IDENTIFIER = 256  # characters of an api key, application id or jti


def _is_identifier(value: object) -> bool:
    """Printable text that any database can store and compare (no NUL, no lone surrogate)."""
    return isinstance(value, str) and 0 < len(value) <= _MAX_IDENTIFIER and value.isprintable()


def _is_date(value: object) -> bool:
    """A NumericDate (RFC 7519): a finite JSON number, never NaN, Infinity or a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: always exactly one application."""

    credentials: ApplicationCredentials

    @property
    def application_id(self) -> str:
        return self.credentials.application.application_id


@dataclass(slots=True)
class _Cached:
    credentials: ApplicationCredentials
    public_key: RSAPublicKey | None
    fresh_until: float


def _refuse(detail: str) -> Unauthorized:
    return Unauthorized(detail, headers=_CHALLENGE)


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float = 5.0,
        jwt_leeway_s: int = 30,
        max_token_age_s: int = 86_400,
        replay: JwtReplay = JwtReplay.REFUSE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._seen = SeenTokens(store) if replay is JwtReplay.REFUSE else None
        self._cache_seconds = cache_seconds
        self._leeway = jwt_leeway_s
        self._max_token_age = max_token_age_s
        self._monotonic = monotonic
        self._by_api_key: dict[str, _Cached] = {}
        self._by_application: dict[str, _Cached] = {}

    async def authenticate_headers(self, values: Sequence[bytes], *, now_s: float) -> Principal:
        """From every `Authorization` header of a request: two are refused, never one picked."""
        if len(values) > 1:
            raise _refuse("Send one Authorization header, not several.")
        return await self.authenticate(values[0] if values else None, now_s=now_s)

    async def authenticate(self, authorization: bytes | None, *, now_s: float) -> Principal:
        if not authorization:
            raise _refuse("Missing Authorization header: use Basic or Bearer (JWT) auth.")
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "basic":
            return await self._basic(value)
        if scheme == "bearer":
            return await self._bearer(value, now_s)
        raise _refuse("Unsupported Authorization scheme: use Basic or Bearer (JWT).")

    # -- Basic -----------------------------------------------------------------------------

    async def _basic(self, value: str) -> Principal:
        try:
            # ValueError: not base64 (binascii.Error), or not ASCII at all (`Basic \xff\xfe`).
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise _refuse("Malformed Basic credentials.") from None
        api_key, colon, api_secret = decoded.partition(":")
        if not colon:
            raise _refuse("Malformed Basic credentials: expected api_key:api_secret.")
        if not _is_identifier(api_key):
            raise _refuse("Invalid API key or secret.")  # the same words as an unknown key
        entry = await self._lookup(
            self._by_api_key, api_key, self._store.find_credentials_by_api_key, with_key=False
        )
        if entry is None or not verify_secret(api_secret, entry.credentials.api_secret_hash):
            raise _refuse("Invalid API key or secret.")
        return Principal(entry.credentials)

    # -- JWT -------------------------------------------------------------------------------

    async def _bearer(self, token: str, now_s: float) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _refuse("Malformed JWT.") from None
        if header.get("alg") != "RS256":
            raise _refuse("JWTs must be signed with RS256.")
        application_id = unverified.get("application_id")
        if not isinstance(application_id, str) or not application_id:
            raise _refuse("The JWT has no application_id claim.")
        if not _is_identifier(application_id):
            raise _refuse("The JWT could not be verified.")  # as for an unknown application
        entry = await self._lookup(
            self._by_application, application_id, self._store.find_credentials, with_key=True
        )
        if entry is None or entry.public_key is None:
            raise _refuse("The JWT could not be verified.")
        claims, remember_until_s = self._verify(token, entry.public_key, now_s)
        if self._seen is not None:
            first = await self._seen.first_use(
                application_id,
                claims["jti"],
                expires_at_ms=math.ceil(remember_until_s * 1000),
                now_ms=math.floor(now_s * 1000),
            )
            if not first:
                raise _refuse(
                    "This JWT has been used already: sign a new one (with a new jti) per request."
                )
        return Principal(entry.credentials)

    def _verify(self, token: str, key: RSAPublicKey, now_s: float) -> tuple[dict[str, Any], float]:
        """Signature by PyJWT; every time check here, against the `now_s` we were given.

        Returns the claims, and until when the token is good (what its `jti` is kept for)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={
                    "require": ["iat", "jti", "application_id"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse(f"The JWT has no {exc.claim} claim.") from None
        except jwt.PyJWTError:
            raise _refuse("The JWT could not be verified.") from None
        iat, exp, nbf = claims["iat"], claims.get("exp"), claims.get("nbf")
        for name, value in (("iat", iat), ("exp", exp), ("nbf", nbf)):
            if value is not None and not _is_date(value):
                raise _refuse(f"The JWT's {name} claim must be a finite number.")
        if not _is_identifier(claims["jti"]):
            raise _refuse(
                f"The JWT's jti claim must be printable text of 1 to {_MAX_IDENTIFIER} characters."
            )
        if iat > now_s + self._leeway or (nbf is not None and nbf > now_s + self._leeway):
            raise _refuse("The JWT is not valid yet (iat or nbf in the future).")
        if exp is not None and now_s > exp + self._leeway:
            raise _refuse("The JWT has expired.")
        if exp is None and now_s - iat > self._max_token_age + self._leeway:
            raise _refuse(
                f"The JWT has no exp claim and was issued more than {self._max_token_age} s ago."
            )
        good_until = iat + self._max_token_age if exp is None else exp
        return claims, good_until + self._leeway

    # -- cache -----------------------------------------------------------------------------

    async def _lookup(
        self,
        cache: dict[str, _Cached],
        key: str,
        load: Callable[[str], Awaitable[ApplicationCredentials | None]],
        *,
        with_key: bool,
    ) -> _Cached | None:
        now = self._monotonic()
        entry = cache.get(key)
        if entry is not None and entry.fresh_until > now:
            return entry
        credentials = await load(key)
        if credentials is None:
            cache.pop(key, None)
            return None
        public_key = None
        if with_key:
            try:
                public_key = load_public_key(credentials.public_key_pem)
            except ConfigurationError:
                public_key = None
        entry = _Cached(credentials, public_key, now + self._cache_seconds)
        if len(cache) > 10_000:  # bounded: a flood of distinct keys cannot grow memory
            cache.clear()
        cache[key] = entry
        return entry
