"""Credentials we generate, and how the ones that only need verifying are stored.

`api_secret` is 192 random bits that we generate, never a human password, so a salted
HMAC-SHA256 is the right hash: brute force over 2**192 is hopeless whatever the hash costs,
and a slow password hash (scrypt, argon2) would add tens of milliseconds to every request
authenticated with HTTP Basic. Comparison is constant time (`hmac.compare_digest`).

A rotated secret (`opendispatch apps rotate-secret --grace`) keeps working beside the new one
until its grace period ends: `verify_rotated_secret`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "hash_secret",
    "new_api_key",
    "new_api_secret",
    "new_signature_secret",
    "verify_rotated_secret",
    "verify_secret",
]

_SCHEME = "hmac-sha256"


def new_api_key() -> str:
    return secrets.token_hex(8)


def new_api_secret() -> str:
    return secrets.token_urlsafe(24)


def new_signature_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest()
    return f"{_SCHEME}${salt.hex()}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != _SCHEME:
        return False
    candidate = hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(candidate, digest)


def verify_rotated_secret(
    secret: str, current: str, previous: str | None, *, previous_valid: bool
) -> bool:
    """The current secret, or the one it replaced while its grace period lasts. Whenever a
    replaced one exists both are checked, each in constant time, so the time taken does not
    tell which one matched, nor whether the grace period is over."""
    matches_current = verify_secret(secret, current)
    if previous is None:
        return matches_current
    matches_previous = verify_secret(secret, previous)
    return matches_current or (matches_previous and previous_valid)
