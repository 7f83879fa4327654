"""WebhookClient against a real HTTP receiver (tests/receiver.py): outcomes, never exceptions."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opendispatch.webhooks.client import WebhookClient
from opendispatch.webhooks.destinations import AddressPolicy
from opendispatch.webhooks.payloads import MessageStatusPayload, render_message_status
from opendispatch.webhooks.signing import Signer, verify_webhook
from tests.receiver import WebhookReceiver

JSON = {"Content-Type": "application/json"}

LOCAL = AddressPolicy(allow_private=True)  # the receivers here are on 127.0.0.1


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    async with WebhookClient(timeout_s=2.0, address_policy=LOCAL) as client:
        yield client


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def self_signed_tls_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context whose certificate no client trusts (self-signed for 127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


# -- outcomes ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [200, 201, 204])
async def test_2xx_answer_is_delivered(
    receiver: WebhookReceiver, client: WebhookClient, status: int
) -> None:
    receiver.respond_with(status)
    outcome = await client.post(f"{receiver.url}/status", b"{}", JSON)
    assert outcome.delivered
    assert outcome.status_code == status
    assert outcome.error is None
    assert outcome.elapsed_ms > 0


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 503, 404])
async def test_error_answer_is_not_delivered_and_names_the_status(
    receiver: WebhookReceiver, client: WebhookClient, status: int
) -> None:
    receiver.respond_with(status)
    outcome = await client.post(f"{receiver.url}/status", b"{}", JSON)
    assert not outcome.delivered
    assert outcome.status_code == status
    assert outcome.error == f"HTTP {status}"


@pytest.mark.anyio
async def test_redirect_is_not_followed_and_not_a_delivery(
    receiver: WebhookReceiver, client: WebhookClient
) -> None:
    receiver.respond_with(302)
    outcome = await client.post(f"{receiver.url}/status", b"{}", JSON)
    assert (outcome.delivered, outcome.error) == (False, "HTTP 302")
    assert len(receiver.received) == 1


@pytest.mark.anyio
async def test_closed_port_is_connection_refused(client: WebhookClient) -> None:
    outcome = await client.post(f"http://127.0.0.1:{closed_port()}/status", b"{}", JSON)
    assert not outcome.delivered
    assert outcome.status_code is None
    assert outcome.error == "connection refused"


@pytest.mark.anyio
async def test_slow_receiver_times_out_at_the_client_timeout(receiver: WebhookReceiver) -> None:
    receiver.delay_s = 2.0
    async with WebhookClient(timeout_s=0.2, address_policy=LOCAL) as client:
        outcome = await client.post(f"{receiver.url}/slow", b"{}", JSON)
    assert not outcome.delivered
    assert outcome.status_code is None
    assert outcome.error == "timed out after 0.2 s"
    assert 150 < outcome.elapsed_ms < 1500


@pytest.mark.anyio
async def test_unresolvable_host_is_a_dns_failure(client: WebhookClient) -> None:
    # .invalid is reserved (RFC 6761): resolvers answer "no such name" without asking anyone.
    outcome = await client.post("http://webhooks.example.invalid/status", b"{}", JSON)
    assert not outcome.delivered
    assert outcome.error == "DNS lookup failed for webhooks.example.invalid"


@pytest.mark.anyio
async def test_tls_handshake_with_a_plain_http_server_is_a_tls_error(
    receiver: WebhookReceiver, client: WebhookClient
) -> None:
    outcome = await client.post(receiver.url.replace("http:", "https:") + "/status", b"{}", JSON)
    assert not outcome.delivered
    assert outcome.error is not None
    assert outcome.error.startswith("TLS error"), outcome.error


@pytest.mark.anyio
async def test_untrusted_certificate_is_a_tls_error(client: WebhookClient, tmp_path: Path) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(
        answer, "127.0.0.1", 0, ssl=self_signed_tls_context(tmp_path)
    )
    async with server:
        port = server.sockets[0].getsockname()[1]
        outcome = await client.post(f"https://127.0.0.1:{port}/status", b"{}", JSON)
    assert not outcome.delivered
    assert outcome.error is not None
    assert outcome.error.startswith("TLS error with 127.0.0.1: certificate verify failed")


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["", "ftp://example.com/status", "http://127.0.0.1:99999/"])
async def test_invalid_url_is_an_outcome_not_an_exception(client: WebhookClient, url: str) -> None:
    outcome = await client.post(url, b"{}", JSON)
    assert not outcome.delivered
    assert outcome.error is not None
    assert outcome.error.startswith("invalid URL")


@pytest.mark.anyio
async def test_post_after_close_is_a_programming_error() -> None:
    client = WebhookClient(address_policy=LOCAL)
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.post("http://127.0.0.1:9/", b"{}", JSON)


# -- what the receiver sees --------------------------------------------------------------------


@pytest.mark.anyio
async def test_signed_body_and_headers_arrive_byte_exact(
    receiver: WebhookReceiver, client: WebhookClient
) -> None:
    body = render_message_status(
        MessageStatusPayload(
            message_uuid="aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            to={"type": "sms", "number": "447700900000"},
            from_={"type": "sms", "number": "447700900001"},
            timestamp_ms=1_577_887_200_000,
            status="delivered",
            error=None,
            price="0.0333",
            dispatch_uuid="eeeeeeee-bbbb-cccc-dddd-0123456789ab",
        )
    )
    authorization = Signer().authorization(
        body,
        signature_secret="s3cret-s3cret-s3cret-s3cret-s3cret",
        api_key="abcd1234",
        application_id="11111111-2222-3333-4444-555555555555",
        now_s=1_577_887_200,
        jti="0b4b0a7e-9a5e-4b8e-8d7e-2f6d1b0c3a11",
    )
    headers = {**JSON, "Authorization": authorization, "X-Trace": "t1"}
    outcome = await client.post(f"{receiver.url}/webhooks/message-status", body, headers)
    assert outcome.delivered
    [got] = receiver.received
    assert got.method == "POST"
    assert got.path == "/webhooks/message-status"
    assert got.body == body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == authorization
    assert got.headers["x-trace"] == "t1"
    assert got.headers["content-length"] == str(len(body))
    claims = verify_webhook(
        got.headers["authorization"],
        got.body,
        signature_secret="s3cret-s3cret-s3cret-s3cret-s3cret",
    )
    assert claims["application_id"] == "11111111-2222-3333-4444-555555555555"


@pytest.mark.anyio
async def test_sequential_posts_reuse_one_keep_alive_connection(
    receiver: WebhookReceiver, client: WebhookClient
) -> None:
    for number in range(10):
        outcome = await client.post(f"{receiver.url}/status", b'{"n":%d}' % number, JSON)
        assert outcome.delivered
    assert len({got.peer for got in receiver.received}) == 1


@pytest.mark.anyio
async def test_200_concurrent_posts_all_arrive(
    receiver: WebhookReceiver, client: WebhookClient
) -> None:
    bodies = [b'{"n":%d}' % number for number in range(200)]
    outcomes = await asyncio.gather(
        *(client.post(f"{receiver.url}/status", body, JSON) for body in bodies)
    )
    assert all(outcome.delivered for outcome in outcomes)
    assert sorted(got.body for got in receiver.received) == sorted(bodies)


@pytest.mark.anyio
async def test_fail_next_answers_errors_then_recovers(
    receiver: WebhookReceiver, client: WebhookClient
) -> None:
    receiver.fail_next(2, status=503)
    outcomes = [await client.post(f"{receiver.url}/status", b"{}", JSON) for _ in range(3)]
    assert [outcome.error for outcome in outcomes] == ["HTTP 503", "HTTP 503", None]
    assert [got.answered_status for got in receiver.received] == [503, 503, 200]


# -- the receiver from synchronous code --------------------------------------------------------


def test_receiver_serves_synchronous_callers_and_wait_for_returns_arrivals(
    receiver: WebhookReceiver,
) -> None:
    request = urllib.request.Request(
        f"{receiver.url}/final-report", data=b'{"status":"completed"}', headers=JSON
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    [got] = receiver.wait_for(lambda got: len(got) >= 1, timeout_s=1)
    assert got.json == {"status": "completed"}
    assert got.path == "/final-report"


def test_receiver_wait_for_times_out_listing_what_arrived(receiver: WebhookReceiver) -> None:
    receiver.respond_with(503)
    request = urllib.request.Request(f"{receiver.url}/status", data=b'{"n":1}', headers=JSON)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=5)
    with pytest.raises(AssertionError, match=r"1 webhook\(s\) arrived:\n  POST /status -> 503"):
        receiver.wait_for(lambda got: len(got) >= 2, timeout_s=0.05)
