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

Credentials may be cached for a few seconds so a request costs no database read (the server
does so on PostgreSQL, where every change is announced to every process: `forget`); a miss
always reads, so an application created with `opendispatch apps create` works at once, and so
does a secret that does not match a cached entry, so a secret rotated a moment ago works at
once. The secret a rotation replaced is good until the end of its grace period, checked
against the request's time at every request, cached or not.
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
from opendispatch.auth.secrets import verify_rotated_secret
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
    from_cache: bool = False  # read from the store earlier, not for this request


def _secret_is_good(credentials: ApplicationCredentials, api_secret: str, now_s: float) -> bool:
    expires_at_ms = credentials.previous_secret_expires_at_ms
    return verify_rotated_secret(
        api_secret,
        credentials.api_secret_hash,
        credentials.previous_secret_hash,
        previous_valid=expires_at_ms is not None and now_s * 1000 < expires_at_ms,
    )


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
        # Parsed public keys by their PEM text (what a JWT is verified with): parsing one
        # costs more than reading it, and a PEM never changes meaning.
        self._public_keys: dict[str, RSAPublicKey | None] = {}

    def forget(self, application_id: str | None = None) -> None:
        """An application changed (its secret rotated, or it was deleted): its cached
        credentials go, so the next request reads them. None: every application's."""
        if application_id is None:
            self._by_api_key.clear()
            self._by_application.clear()
            return
        self._by_application.pop(application_id, None)
        for api_key, entry in list(self._by_api_key.items()):
            if entry.credentials.application.application_id == application_id:
                del self._by_api_key[api_key]

    def refuse_deleted(self, application_id: str) -> Unauthorized:
        """The 401 for a request whose application was deleted while it was under way."""
        self.forget(application_id)
        return _refuse("Invalid API key or secret.")

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
            return await self._basic(value, now_s)
        if scheme == "bearer":
            return await self._bearer(value, now_s)
        raise _refuse("Unsupported Authorization scheme: use Basic or Bearer (JWT).")

    # -- Basic -----------------------------------------------------------------------------

    async def _basic(self, value: str, now_s: float) -> Principal:
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
        load = self._store.find_credentials_by_api_key
        entry = await self._lookup(self._by_api_key, api_key, load, with_key=False)
        if (
            entry is not None
            and entry.from_cache
            and not _secret_is_good(entry.credentials, api_secret, now_s)
        ):
            # The secret may have been rotated since this entry was read: read it again.
            entry = await self._lookup(self._by_api_key, api_key, load, with_key=False, fresh=True)
        if entry is None or not _secret_is_good(entry.credentials, api_secret, now_s):
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
        fresh: bool = False,
    ) -> _Cached | None:
        now = self._monotonic()
        entry = cache.get(key)
        if entry is not None and entry.fresh_until > now and not fresh:
            entry.from_cache = True
            return entry
        credentials = await load(key)
        if credentials is None:
            cache.pop(key, None)
            return None
        public_key = self._public_key(credentials.public_key_pem) if with_key else None
        entry = _Cached(credentials, public_key, now + self._cache_seconds)
        if self._cache_seconds > 0:
            if len(cache) > 10_000:  # bounded: a flood of distinct keys cannot grow memory
                cache.clear()
            cache[key] = entry
        return entry

    def _public_key(self, pem: str) -> RSAPublicKey | None:
        if pem in self._public_keys:
            return self._public_keys[pem]
        try:
            public_key: RSAPublicKey | None = load_public_key(pem)
        except ConfigurationError:
            public_key = None
        if len(self._public_keys) > 10_000:
            self._public_keys.clear()
        self._public_keys[pem] = public_key
        return public_key
