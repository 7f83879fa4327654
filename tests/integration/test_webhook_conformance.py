"""HTTP conformance of webhook delivery: every case a real receiver on 127.0.0.1 (raw sockets
where a framework cannot produce the answer), delivered through the server's own worker.

Each case asserts what a user sees in the webhook's record: delivered or not, the attempts
made, the status code and the reason stored. The rule behind the cases: the answer's status
line is the receiver's verdict (2xx delivered, anything else retried, 3xx never followed); how
the receiver frames the rest of its answer changes nothing.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from tests.raw_receiver import Exchange, RawReceiver
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

TIMEOUT_S = 0.5
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass(frozen=True)
class Record:
    """A status webhook's record, as GET and the webhooks list show it."""

    state: str
    attempts: int
    last_status_code: int | None
    last_error: str | None


@dataclass
class Sender:
    """A server (ASGI app, real workers, SQLite file) whose one application's status webhooks go
    to the URL under test; its final reports go to an ordinary receiver, out of the way."""

    app: DispatchApp
    client: httpx.AsyncClient
    credentials: AppCredentials
    clock: ManualClock

    async def send_one(self) -> str:
        """One workflow whose SMS the sandbox rejects at once: one status webhook."""
        body = {"template": "failover", "workflow": [step("sms", "447700900001")]}
        response = await self.client.post(
            "/v0.1/dispatch", json=body, headers=self.credentials.basic()
        )
        assert response.status_code == 202, response.text
        await self.app.runtime.settled()
        return str(response.json()["dispatch_uuid"])

    async def record(self, dispatch_uuid: str) -> Record:
        response = await self.client.get(
            f"/v0.1/dispatch/{dispatch_uuid}", headers=self.credentials.basic()
        )
        (status,) = [w for w in response.json()["webhooks"] if w["kind"] == "message_status"]
        return Record(
            status["state"], status["attempts"], status["last_status_code"], status["last_error"]
        )

    async def advance(self, ms: int) -> None:
        await self.clock.advance(ms)
        await self.app.runtime.settled()


SenderFactory = Callable[..., Awaitable[Sender]]


@pytest.fixture
async def sender(tmp_path: Path) -> AsyncIterator[SenderFactory]:
    made: list[tuple[DispatchApp, httpx.AsyncClient]] = []

    async def make(status_url: str, **settings: Any) -> Sender:
        clock = ManualClock(start_ms=int(time.time() * 1000))
        app = DispatchApp(
            Settings(
                database=f"sqlite:///{tmp_path / f'sender-{len(made)}.db'}",
                allow_private_webhooks=True,
                webhook_timeout_s=TIMEOUT_S,
                **settings,
            ),
            clock=clock,
        )
        await app.startup()
        provisioned = await provision_application(
            app.store,
            name="conformance",
            status_url=status_url,
            final_report_url=f"{finals.url}/final",
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        made.append((app, client))
        return Sender(app, client, AppCredentials.from_provisioned(provisioned), clock)

    with WebhookReceiver() as finals:
        yield make
        for app, client in made:
            await client.aclose()
            await app.shutdown()


# -- answers, as receivers frame them ----------------------------------------------------------


def answer(*chunks: bytes, close: bool = False, pause_s: float = 0.0) -> Any:
    async def script(exchange: Exchange) -> None:
        for chunk in chunks:
            await exchange.send(chunk)
            if pause_s:
                await asyncio.sleep(pause_s)
        if close:
            exchange.close()

    return script


async def status_then_reset(exchange: Exchange) -> None:
    await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart of it")
    await asyncio.sleep(0.05)  # the status reaches the sender before the reset does
    exchange.reset()


async def reset_before_answering(exchange: Exchange) -> None:
    exchange.reset()


async def close_before_answering(exchange: Exchange) -> None:
    exchange.close()


async def never_answer(exchange: Exchange) -> None:
    await exchange.hang()


async def trickle_headers(exchange: Exchange) -> None:
    # 20 bytes a second: the status line alone would take longer than the timeout.
    await exchange.send_slowly(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", every_s=0.05)


async def huge_body(exchange: Exchange) -> None:
    size = 16 * 1024 * 1024
    await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    chunk = b"x" * (1024 * 1024)
    for _ in range(size // len(chunk)):
        await exchange.send(chunk)


def chunked_in_pieces(exchange: Exchange) -> Awaitable[None]:
    whole = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    return exchange.send_slowly(whole, every_s=0.001)  # one byte per packet


DELIVERED = Record("delivered", 1, 200, None)

CASES: dict[str, tuple[Any, Record]] = {
    "http/1.0 with content-length": (
        answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True),
        DELIVERED,
    ),
    "http/1.0 without content-length": (
        answer(b"HTTP/1.0 200 OK\r\n\r\nthanks", close=True),
        DELIVERED,
    ),
    "http/1.1 close-delimited": (
        answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthanks", close=True),
        DELIVERED,
    ),
    "chunked body": (
        answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        DELIVERED,
    ),
    "chunked body split across packets": (chunked_in_pieces, DELIVERED),
    "204 no content": (
        answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Record("delivered", 1, 204, None),
    ),
    "202 accepted, empty": (
        answer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"),
        Record("delivered", 1, 202, None),
    ),
    "304-style empty answer": (
        answer(b"HTTP/1.1 304 Not Modified\r\n\r\n"),
        Record("pending", 1, 304, "HTTP 304"),
    ),
    "100 continue before the answer": (
        answer(b"HTTP/1.1 100 Continue\r\n\r\n", OK, pause_s=0.02),
        DELIVERED,
    ),
    "103 early hints before the answer": (
        answer(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n", OK),
        DELIVERED,
    ),
    "large body, settled on the status": (huge_body, DELIVERED),
    "status line, then a reset mid-body": (status_then_reset, DELIVERED),
    "400": (
        answer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
        Record("pending", 1, 400, "HTTP 400"),
    ),
    "410": (
        answer(b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n"),
        Record("pending", 1, 410, "HTTP 410"),
    ),
    "500": (
        answer(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
        Record("pending", 1, 500, "HTTP 500"),
    ),
    "503, close-delimited": (
        answer(b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy", close=True),
        Record("pending", 1, 503, "HTTP 503"),
    ),
    "never answers": (never_answer, Record("pending", 1, None, f"timed out after {TIMEOUT_S} s")),
    "trickles its headers": (
        trickle_headers,
        Record("pending", 1, None, f"timed out after {TIMEOUT_S} s"),
    ),
    "resets before answering": (
        reset_before_answering,
        Record("pending", 1, None, "connection reset"),
    ),
    "closes before answering": (
        close_before_answering,
        Record("pending", 1, None, "server disconnected before answering"),
    ),
    "not http": (
        answer(b"SSH-2.0-OpenSSH_9.6\r\n", close=True),
        Record("pending", 1, None, "invalid HTTP response: Expected HTTP/, RTSP/ or ICE/"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_conformance(sender: SenderFactory, case: str) -> None:
    script, expected = CASES[case]
    with RawReceiver(script) as receiver:
        delivering = await sender(f"{receiver.url}/status")
        record = await delivering.record(await delivering.send_one())
    assert record == expected
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed_and_not_a_delivery(
    sender: SenderFactory, status: int
) -> None:
    with RawReceiver(answer(OK)) as elsewhere:
        redirect = (
            f"HTTP/1.1 {status} Moved\r\nLocation: {elsewhere.url}/stolen\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        with RawReceiver(answer(redirect)) as receiver:
            delivering = await sender(f"{receiver.url}/status")
            record = await delivering.record(await delivering.send_one())
    assert record == Record("pending", 1, status, f"HTTP {status}")
    assert elsewhere.requests == []


@pytest.mark.parametrize("status", [400, 500, 503])
async def test_a_failed_attempt_is_retried_per_the_policy_then_given_up(
    sender: SenderFactory, status: int
) -> None:
    failing = answer(f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n".encode())
    with RawReceiver(failing) as receiver:
        # Retries after 0.5-1 s, then 1-2 s, ...; given up after 3 s.
        delivering = await sender(f"{receiver.url}/status", webhook_retry_period_s=3)
        dispatch_uuid = await delivering.send_one()
        await delivering.advance(1_000)
        assert await delivering.record(dispatch_uuid) == Record(
            "pending", 2, status, f"HTTP {status}"
        )
        for _ in range(5):
            await delivering.advance(1_000)
        record = await delivering.record(dispatch_uuid)
    assert (record.state, record.last_status_code) == ("dead", status)
    assert 3 <= record.attempts == len(receiver.requests) <= 4


async def test_a_kept_alive_connection_the_receiver_closed_meanwhile_costs_no_attempt(
    sender: SenderFactory,
) -> None:
    closed = threading.Event()

    async def answer_then_close_idle(exchange: Exchange) -> None:
        await exchange.send(OK)  # keep-alive as far as the answer says
        await asyncio.sleep(0.05)
        exchange.close()  # ... but the receiver closes the idle connection
        closed.set()

    with RawReceiver(answer_then_close_idle) as receiver:
        delivering = await sender(f"{receiver.url}/status")
        first = await delivering.send_one()
        await asyncio.to_thread(closed.wait, 5)
        second = await delivering.send_one()
        records = [await delivering.record(first), await delivering.record(second)]
    assert records == [DELIVERED, DELIVERED]
    assert [request.connection for request in receiver.requests] == [1, 2]


async def test_kept_alive_connections_are_reused(sender: SenderFactory) -> None:
    with RawReceiver(answer(OK)) as receiver:
        delivering = await sender(f"{receiver.url}/status")
        uuids = [await delivering.send_one() for _ in range(3)]
        records = [await delivering.record(u) for u in uuids]
    assert records == [DELIVERED] * 3
    assert {request.connection for request in receiver.requests} == {1}


# -- addresses and URLs --------------------------------------------------------------------------


async def test_an_ipv6_literal_url_with_a_query_and_a_port(sender: SenderFactory) -> None:
    with RawReceiver(answer(OK), host="::1") as receiver:
        delivering = await sender(f"{receiver.url}/hooks/status?tenant=7&kind=a%20b")
        record = await delivering.record(await delivering.send_one())
    assert record == DELIVERED
    (request,) = receiver.requests
    assert request.request_line == "POST /hooks/status?tenant=7&kind=a%20b HTTP/1.1"
    assert request.headers["host"] == f"[::1]:{receiver.port}"


async def test_a_non_default_port_is_in_the_host_header(sender: SenderFactory) -> None:
    with RawReceiver(answer(OK)) as receiver:
        delivering = await sender(f"{receiver.url}/status")
        assert await delivering.record(await delivering.send_one()) == DELIVERED
    (request,) = receiver.requests
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.request_line == "POST /status HTTP/1.1"


# -- https ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


def tls_server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


async def test_https_with_a_trusted_ca_is_delivered_with_sni(
    sender: SenderFactory, test_ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    test_ca.cert_pem.write_to_path(str(ca_file))
    tls = tls_server_context(test_ca, "localhost")
    with RawReceiver(answer(OK), tls=tls) as receiver:
        url = f"https://localhost:{receiver.port}/status"
        delivering = await sender(url, webhook_ca_file=str(ca_file))
        assert await delivering.record(await delivering.send_one()) == DELIVERED
    assert receiver.server_names == ["localhost"]  # SNI names the URL's host


async def test_https_with_an_untrusted_ca_fails_with_the_certificate_reason(
    sender: SenderFactory, test_ca: trustme.CA
) -> None:
    tls = tls_server_context(test_ca, "localhost")
    with RawReceiver(answer(OK), tls=tls) as receiver:
        delivering = await sender(f"https://localhost:{receiver.port}/status")
        record = await delivering.record(await delivering.send_one())
    assert (record.state, record.attempts, record.last_status_code) == ("pending", 1, None)
    assert record.last_error == (
        "TLS error with localhost: certificate verify failed: "
        "unable to get local issuer certificate"
    )
    assert receiver.requests == []


async def test_https_checks_the_host_name(
    sender: SenderFactory, test_ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    test_ca.cert_pem.write_to_path(str(ca_file))
    tls = tls_server_context(test_ca, "receiver.example")  # trusted, but not for localhost
    with RawReceiver(answer(OK), tls=tls) as receiver:
        delivering = await sender(
            f"https://localhost:{receiver.port}/status", webhook_ca_file=str(ca_file)
        )
        record = await delivering.record(await delivering.send_one())
    assert record.state == "pending"
    assert record.last_error is not None
    assert record.last_error.startswith("TLS error with localhost: certificate verify failed")
    assert "localhost" in record.last_error.rpartition(":")[2]
    assert receiver.requests == []
