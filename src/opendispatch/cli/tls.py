"""HTTPS served directly: the server's TLS context, loaded and checked before anything starts.

Some of Vonage's SDKs speak only https to their API host, so `serve --tls-cert --tls-key`
serves it without a proxy in front. The files are read here, before the port is bound or the
database opened, so that a wrong file stops the start in one line that names it (through
`cli/startup.py`'s `cannot_start`) rather than failing later, in uvicorn, with OpenSSL's
`[SSL] PEM lib (_ssl.c:3926)`, which names neither the file nor the problem. OpenSSL's own
reading stays the final word (`load_cert_chain`); `cryptography` reads the files first only to
say which one is wrong and how.

The private key is never logged, and neither is anything read from its file: messages name
the path only. A key protected by a passphrase is refused: OpenSSL would otherwise ask for the
passphrase on the terminal, and a server started by a supervisor would wait forever.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from opendispatch.errors import ConfigurationError

__all__ = ["server_tls_context"]

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context for the certificate chain in `cert_file` (PEM, the server's own
    certificate first, then any intermediates) and its private key in `key_file` (PEM,
    unencrypted); `ConfigurationError` naming the file and the problem otherwise."""
    certificate = _certificate(cert_file)
    key = _private_key(key_file)
    if key.public_key().public_bytes(*_SPKI) != certificate.public_key().public_bytes(*_SPKI):
        raise ConfigurationError(
            f"the private key in --tls-key {key_file} does not match the certificate in "
            f"--tls-cert {cert_file} (the first certificate in that file must be the server's)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Python's default already; said here because it is a promise (README, Configuration).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A TLS 1.2 client may not ask for renegotiations: each costs the server a handshake.
    context.options |= ssl.OP_NO_RENEGOTIATION
    # HTTP/1.1 is all this server speaks; a client offering h2 as well is told so.
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigurationError(
            f"OpenSSL cannot use --tls-cert {cert_file} with --tls-key {key_file} ({exc})"
        ) from exc
    return context


def _certificate(path: str) -> x509.Certificate:
    try:
        chain = x509.load_pem_x509_certificates(_read(path, "--tls-cert"))
    except ValueError:
        chain = []
    if not chain:
        raise ConfigurationError(
            f"--tls-cert {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )
    return chain[0]


def _private_key(path: str) -> PrivateKeyTypes:
    data = _read(path, "--tls-key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise ConfigurationError(
            f"--tls-key {path} is protected by a passphrase, which a server cannot type: "
            "give it unencrypted (openssl pkey -in KEY -out PLAIN), readable only by the "
            "server's user"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(
            f"--tls-key {path} holds no PEM private key (-----BEGIN PRIVATE KEY-----) this "
            "server can use"
        ) from exc


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {flag} {path} ({exc.strerror or type(exc).__name__})"
        ) from exc


def _no_passphrase() -> bytes:
    """OpenSSL's callback for an encrypted key, instead of its prompt on the terminal (the key
    was read unencrypted above; this covers a file replaced in between)."""
    raise ConfigurationError("the --tls-key file is protected by a passphrase")
