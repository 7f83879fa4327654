"""No server-side request forgery: a delivery connects only where the rules allow, judged on
the address it actually connects to; a refused destination is dead at once, with the reason."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

Run = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.fixture
async def run_one_workflow(tmp_path: Path) -> AsyncIterator[Run]:
    """Run one workflow (an SMS the sandbox rejects) for an application whose webhooks go to
    `url`, on a server with `settings`; return the workflow's webhooks as GET shows them."""
    apps: list[DispatchApp] = []

    async def run(
        url: str, *, stored_url: str | None = None, **settings: Any
    ) -> list[dict[str, Any]]:
        path = tmp_path / f"{len(apps)}.db"
        clock = ManualClock(start_ms=int(time.time() * 1000))
        app = DispatchApp(Settings(database=f"sqlite:///{path}", **settings), clock=clock)
        apps.append(app)
        await app.startup()
        # Accepted when the application was created (no address check here, as for a name
        # that pointed elsewhere then); the delivery must judge it again.
        provisioned = await provision_application(app.store, name="ssrf", status_url=url)
        if stored_url is not None:  # a row an older version stored, before URLs were checked
            with sqlite3.connect(path) as connection:
                connection.execute("UPDATE applications SET status_url = ?", (stored_url,))
        credentials = AppCredentials.from_provisioned(provisioned)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = {"template": "failover", "workflow": [step("sms", "447700900001")]}
            created = await client.post("/v0.1/dispatch", json=body, headers=credentials.basic())
            await app.runtime.settled()
            await clock.advance(10_000)
            await app.runtime.settled()
            view = await client.get(
                f"/v0.1/dispatch/{created.json()['dispatch_uuid']}", headers=credentials.basic()
            )
        return list(view.json()["webhooks"])

    yield run
    for app in apps:
        await app.shutdown()


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1: 127.0.0.1 is a loopback address"),
        ("localhost", "localhost: 127.0.0.1 is a loopback address"),  # judged once resolved
        ("2130706433", "2130706433: 127.0.0.1 is a loopback address"),  # 127.0.0.1 as a number
    ],
)
async def test_a_private_destination_is_dead_at_once_and_never_contacted(
    run_one_workflow: Run, host: str, reason: str
) -> None:
    with WebhookReceiver() as receiver:
        webhooks = await run_one_workflow(f"http://{host}:{receiver.url.rpartition(':')[2]}/s")
    assert [(w["kind"], w["state"], w["attempts"], w["last_error"]) for w in webhooks] == [
        ("message_status", "dead", 1, f"refused destination: {reason}"),
        ("final_report", "dead", 1, f"refused destination: {reason}"),
    ]
    assert receiver.received == []


async def test_allow_private_webhooks_lets_them_through(run_one_workflow: Run) -> None:
    with WebhookReceiver() as receiver:
        webhooks = await run_one_workflow(f"{receiver.url}/s", allow_private_webhooks=True)
    assert [(w["state"], w["attempts"]) for w in webhooks] == [("delivered", 1)] * 2
    assert len(receiver.received) == 2


async def test_credentials_in_a_stored_url_are_refused_and_never_logged(
    run_one_workflow: Run, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with WebhookReceiver() as receiver:
        port = receiver.url.rpartition(":")[2]
        webhooks = await run_one_workflow(
            f"{receiver.url}/s",
            stored_url=f"http://user:hunter2@127.0.0.1:{port}/s",
            allow_private_webhooks=True,
        )
    assert [(w["state"], w["attempts"]) for w in webhooks] == [("dead", 1)] * 2
    expected = f"invalid URL: http://***@127.0.0.1:{port}/s must not carry credentials"
    assert webhooks[0]["last_error"] == expected + " (user:password@)"
    assert receiver.received == []
    assert "hunter2" not in caplog.text
    assert "webhook dead" in caplog.text
