"""Operators' credentials: login tokens, session ids and the forms' CSRF tokens.

A login token and a session id are 256 random bits each, so a single SHA-256 is what is kept
of them: a slow, salted hash protects passwords people choose, and nobody guesses 256 bits.
Comparisons are constant-time. A session's CSRF token is derived from its id (its SHA-256
under another label): it is fixed for the session, needs no storage, and cannot be worked out
without the session cookie, which scripts cannot read (HttpOnly).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from opendispatch.store.operators import OperatorStore

__all__ = [
    "SESSION_LIFETIME_MS",
    "OperatorAuth",
    "Session",
    "csrf_token",
    "csrf_token_matches",
    "new_secret",
    "operator_name_problem",
    "secret_hash",
]

# A working day and then some: an operator signs in once a shift.
SESSION_LIFETIME_MS = 12 * 3_600_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# Compared against when the name is unknown, so that a wrong name costs what a wrong token
# costs (the time of a login says nothing about which names exist).
_NO_OPERATOR_HASH = hashlib.sha256(b"no such operator").hexdigest()


def operator_name_problem(name: str) -> str | None:
    """What is wrong with an operator name, if anything (it appears in logs and pages)."""
    if _NAME.match(name):
        return None
    return (
        "must be 1 to 64 letters, digits and . _ @ -, starting with a letter or a digit, "
        f"not {name!r}"
    )


def new_secret() -> str:
    """256 random bits, URL-safe: a login token or a session id."""
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_token(session_id: str) -> str:
    return hashlib.sha256(b"csrf:" + session_id.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_token_matches(session_id: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(
        csrf_token(session_id).encode(), given.encode("utf-8", "surrogateescape")
    )


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: the id its cookie holds, and whose it is."""

    session_id: str
    operator: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.session_id)


class OperatorAuth:
    """Signing in and out, and who a session cookie belongs to."""

    def __init__(self, operators: OperatorStore) -> None:
        self._operators = operators

    async def login(self, name: str, token: str, *, now_ms: int) -> Session | None:
        """A new session if `token` is `name`'s login token; None otherwise, saying not which
        of the two was wrong."""
        stored = await self._operators.token_hash(name) if len(name) <= 64 else None
        matches = hmac.compare_digest(
            secret_hash(token).encode(), (stored or _NO_OPERATOR_HASH).encode()
        )
        if stored is None or not matches:
            return None
        await self._operators.forget_expired_sessions(now_ms=now_ms)
        session_id = new_secret()
        await self._operators.open_session(
            secret_hash(session_id),
            operator=name,
            now_ms=now_ms,
            expires_at_ms=now_ms + SESSION_LIFETIME_MS,
        )
        return Session(session_id, name)

    async def session(self, session_id: str | None, *, now_ms: int) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        operator = await self._operators.session_operator(secret_hash(session_id), now_ms=now_ms)
        return None if operator is None else Session(session_id, operator)

    async def logout(self, session: Session) -> None:
        await self._operators.close_session(secret_hash(session.session_id))
