"""RSA key pairs for JWT authentication: the application signs, the server keeps the public half."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opendispatch.errors import ConfigurationError

__all__ = ["KeyPair", "generate_key_pair", "load_public_key", "public_key_pem_from_file_text"]


class KeyPair:
    __slots__ = ("private_key_pem", "public_key_pem")

    def __init__(self, private_key_pem: str, public_key_pem: str) -> None:
        self.private_key_pem = private_key_pem
        self.public_key_pem = public_key_pem


def generate_key_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return KeyPair(private_pem, _public_pem(key.public_key()))


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ConfigurationError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigurationError("the key must be an RSA key (JWTs are signed RS256)")
    return key


def public_key_pem_from_file_text(text: str) -> str:
    """Accept a PEM public key, or a PEM private key (only its public half is kept)."""
    if "PRIVATE KEY" in text:
        try:
            private = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot read the private key: {exc}") from exc
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ConfigurationError("the key must be an RSA key (JWTs are signed RS256)")
        return _public_pem(private.public_key())
    return _public_pem(load_public_key(text))


def _public_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
