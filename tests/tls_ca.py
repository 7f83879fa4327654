"""A throwaway certificate authority for tests that speak HTTPS to a real server process.

    ca = make_test_ca(tmp_path)
    server.start("--tls-cert", str(ca.cert), "--tls-key", str(ca.key))
    httpx.get(f"https://127.0.0.1:{port}/health", verify=ca.client_context())

`make_test_ca` writes PEM files into a directory: the CA's certificate (`ca_cert`, what a client
is told to trust: httpx's `verify=`, `SSL_CERT_FILE`, Node's `NODE_EXTRA_CA_CERTS`, a JVM trust
store), and a server certificate it signed (`cert`) with its private key (`key`). The server
certificate names 127.0.0.1, ::1 and localhost (IP and DNS subject alternative names), so a
client verifies the host name as it would for a real one. A client that trusts only the
system's CAs refuses it. Two calls make two unrelated CAs: a key of one does not match a
certificate of the other.

Keys are ECDSA P-256 (instant to make, and what every TLS client speaks); the certificates
carry the extensions strict verifiers require (Python 3.13's `VERIFY_X509_STRICT` among them):
key usages, basic constraints and key identifiers.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestCA", "make_test_ca"]

_VALID_FOR = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class TestCA:
    """Paths of the PEM files one `make_test_ca` wrote."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    ca_cert: Path  # the CA's certificate: what clients trust
    cert: Path  # the server's certificate (127.0.0.1, ::1, localhost): --tls-cert
    key: Path  # its private key, unencrypted: --tls-key

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this CA alone, verifying host names (httpx's `verify=`)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_test_ca(directory: Path) -> TestCA:
    """A new CA and a server certificate it signed, written to `directory` (created if need
    be) as `test-ca.pem`, `server.pem` and `server-key.pem`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpenDispatch test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    server_cert = (
        _builder(server_name, ca_name, server_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), False)
        .add_extension(authority, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    made = TestCA(
        ca_cert=directory / "test-ca.pem",
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
    )
    made.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    made.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    made.key.touch(mode=0o600)  # as an operator keeps a key: readable by its owner only
    made.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return made


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # a clock a little behind
        .not_valid_after(now + _VALID_FOR)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
