"""Provider secrets encrypted at rest, with a key the database never sees.

The key comes from `OPENDISPATCH_SECRET_KEY`: a Fernet key (`opendispatch secret-key` prints
a new one), or any string of at least 32 characters, stretched to one with HKDF. Several
keys, comma-separated, rotate them: the first encrypts, any of them decrypts (Fernet's
`MultiFernet`), so a new key goes first and the old one stays until `providers rotate-secrets`
has re-encrypted every account. Fernet is authenticated encryption (AES-128-CBC and
HMAC-SHA256): a wrong key or an altered token is an error, never garbage.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from opendispatch.errors import ConfigurationError

__all__ = ["SECRET_KEY_VARIABLE", "SecretBox", "new_secret_key"]

SECRET_KEY_VARIABLE = "OPENDISPATCH_SECRET_KEY"  # noqa: S105  (a variable name, not a key)
_MIN_PASSPHRASE = 32


def new_secret_key() -> str:
    return Fernet.generate_key().decode()


def _fernet(key: str) -> Fernet:
    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32 and len(key) == 44:
            return Fernet(key.encode())
    except (binascii.Error, ValueError):
        pass
    if len(key) < _MIN_PASSPHRASE:
        raise ConfigurationError(
            f"{SECRET_KEY_VARIABLE} must be a Fernet key (`opendispatch secret-key` prints one) "
            f"or at least {_MIN_PASSPHRASE} characters"
        )
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"opendispatch provider secrets"
    ).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts a provider account's secrets into one token, and back."""

    def __init__(self, keys: str | None) -> None:
        parts = [part.strip() for part in (keys or "").split(",") if part.strip()]
        self._box = MultiFernet([_fernet(part) for part in parts]) if parts else None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> SecretBox:
        return cls(environ.get(SECRET_KEY_VARIABLE))

    @property
    def has_key(self) -> bool:
        return self._box is not None

    def seal(self, secrets: Mapping[str, str]) -> str:
        if self._box is None:
            raise ConfigurationError(
                f"{SECRET_KEY_VARIABLE} is not set: it encrypts provider secrets at rest. "
                "Generate one with `opendispatch secret-key`, keep it safe, and give the same "
                "one to every server process."
            )
        return self._box.encrypt(json.dumps(dict(secrets), sort_keys=True).encode()).decode()

    def open(self, token: str, *, account: str) -> dict[str, str]:
        if self._box is None:
            raise ConfigurationError(
                f"provider account {account!r} has secrets and {SECRET_KEY_VARIABLE} is not "
                "set: set it to the key they were stored with"
            )
        try:
            opened = json.loads(self._box.decrypt(token.encode()))
        except InvalidToken:
            raise ConfigurationError(
                f"cannot decrypt the secrets of provider account {account!r}: "
                f"{SECRET_KEY_VARIABLE} is not a key they were stored with"
            ) from None
        return {str(key): str(value) for key, value in opened.items()}

    def reseal(self, token: str, *, account: str) -> str:
        """The same secrets under the first key (after a rotation)."""
        return self.seal(self.open(token, account=account))
