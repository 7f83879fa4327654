"""The smallest receivers Python ships frame their answer by closing the connection.

`http.server.BaseHTTPRequestHandler` answers `HTTP/1.0 200 OK` without `Content-Length` and
closes; with `protocol_version = "HTTP/1.1"` and `Connection: close` it does the same in 1.1.
Both are valid (RFC 9112 section 6.3: the body ends when the connection closes), and the
status line is the receiver's verdict: each webhook must arrive exactly once and the final
report must follow, as it does for any other receiver.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from opendispatch.webhooks.client import WebhookClient
from opendispatch.webhooks.destinations import AddressPolicy
from tests.databases import TestDatabase
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

LOCAL = AddressPolicy(allow_private=True)  # the receivers here are on 127.0.0.1


class StdlibReceiver:
    """`http.server` as a newcomer writes it: reads the body, answers 200 with a short body."""

    def __init__(self, *, http11_close: bool) -> None:
        received: list[dict[str, object]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            if http11_close:
                protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(
                    {
                        "path": self.path,
                        "id": self.headers["webhook-id"],
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(200)
                if http11_close:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"thanks")  # no length: the close ends it

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StdlibReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(params=["http/1.0", "http/1.1+close"])
def stdlib_receiver(request: pytest.FixtureRequest) -> Iterator[StdlibReceiver]:
    with StdlibReceiver(http11_close=request.param == "http/1.1+close") as receiver:
        yield receiver


async def test_a_close_delimited_200_is_a_delivery(stdlib_receiver: StdlibReceiver) -> None:
    async with WebhookClient(timeout_s=2.0, address_policy=LOCAL) as client:
        outcomes = [
            await client.post(f"{stdlib_receiver.url}/status", b"{}", {"webhook-id": str(n)})
            for n in range(3)
        ]
    assert [(o.delivered, o.status_code, o.error) for o in outcomes] == [(True, 200, None)] * 3
    assert [r["id"] for r in stdlib_receiver.received] == ["0", "1", "2"]


@pytest.fixture
async def app_posting_to_stdlib(
    database: TestDatabase, stdlib_receiver: StdlibReceiver
) -> AsyncIterator[tuple[DispatchApp, httpx.AsyncClient, AppCredentials, ManualClock]]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    app = DispatchApp(Settings(database=database.url, allow_private_webhooks=True), clock=clock)
    await app.startup()
    provisioned = await provision_application(
        app.store, name="newcomer", status_url=f"{stdlib_receiver.url}/status"
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield app, client, AppCredentials.from_provisioned(provisioned), clock
    await app.shutdown()


async def test_each_webhook_arrives_once_and_the_final_report_follows(
    app_posting_to_stdlib: tuple[DispatchApp, httpx.AsyncClient, AppCredentials, ManualClock],
    stdlib_receiver: StdlibReceiver,
    database: TestDatabase,
) -> None:
    app, client, credentials, clock = app_posting_to_stdlib
    # WhatsApp rejected at once (sandbox: ends in 1), then SMS submitted and delivered.
    body = {"template": "failover", "workflow": [
        step("whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"}),
        step("sms", "447700900005"),
    ]}  # fmt: skip
    response = await client.post("/v0.1/dispatch", json=body, headers=credentials.basic())
    assert response.status_code == 202
    await app.runtime.settled()
    await clock.advance(2_000)  # the sandbox delivers the SMS after 1 s
    await app.runtime.settled()
    await clock.advance(60_000)  # long past any retry, had an attempt been counted as failed
    await app.runtime.settled()

    bodies = [json.loads(r["body"]) for r in stdlib_receiver.received]  # type: ignore[arg-type]
    statuses = [(b["to"]["type"], b["status"]) for b in bodies if "template" not in b]
    finals = [b for b in bodies if "template" in b]
    # Status webhooks are delivered concurrently: their arrival order is not promised (the
    # WhatsApp's rejection and the SMS's submission are due at the same driven instant, and
    # on PostgreSQL one claim can take both: 1 run in CI saw the SMS's first).
    assert sorted(statuses) == [
        ("sms", "delivered"),
        ("sms", "submitted"),
        ("whatsapp", "rejected"),
    ]
    assert [f["status"] for f in finals] == ["completed"]
    ids = [r["id"] for r in stdlib_receiver.received]
    assert len(ids) == len(set(ids)) == 4  # nothing arrived twice
    states = await database.rows("SELECT state, attempts, last_error FROM webhooks")
    assert states == [("delivered", 1, None)] * 4
