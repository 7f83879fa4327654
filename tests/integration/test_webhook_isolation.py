"""One tenant's failing receivers never hold up another's webhooks, and a receiver that is down
for an hour loses nothing, without being hammered meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from tests.databases import TestDatabase
from tests.raw_receiver import Exchange, RawReceiver
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REJECTED_SMS = {"template": "failover", "workflow": [step("sms", "447700900001")]}


async def hang(exchange: Exchange) -> None:
    await exchange.hang()


def server_with(database: TestDatabase, **settings: Any) -> DispatchApp:
    """The server with its default delivery limits (256 in all, 64 per application) and time
    that stands still unless a test moves it."""
    return DispatchApp(
        Settings(database=database.url, allow_private_webhooks=True, **settings),
        clock=ManualClock(start_ms=int(time.time() * 1000)),
    )


@pytest.fixture
async def server(database: TestDatabase) -> AsyncIterator[tuple[DispatchApp, httpx.AsyncClient]]:
    app = server_with(database, webhook_timeout_s=2.0)
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield app, client
    await app.shutdown()


async def create(app: DispatchApp, name: str, url: str) -> AppCredentials:
    provisioned = await provision_application(app.store, name=name, status_url=url)
    return AppCredentials.from_provisioned(provisioned)


def owner(body: dict[str, Any]) -> str:
    return str(body.get("dispatch_uuid") or body["_links"]["workflow"]["dispatch_uuid"])


async def test_four_hung_receivers_do_not_delay_a_fifth_applications_webhooks(
    database: TestDatabase,
) -> None:
    """The case measured before the fix: four applications whose receivers accept and never
    answer, each with a backlog and about 50 new workflows a second, beside a healthy one;
    the default 5 s timeout. Before, the four took all 256 delivery slots (64 each) and the
    healthy application's webhooks waited for their timeouts. Bound: each of the healthy
    application's webhooks arrives within 1 s of its workflow's 202, under one hung timeout."""
    app = server_with(database)  # webhook timeout: the default 5 s
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://t")
    try:
        with (
            RawReceiver(hang) as r1,
            RawReceiver(hang) as r2,
            RawReceiver(hang) as r3,
            RawReceiver(hang) as r4,
            WebhookReceiver() as healthy,
        ):
            hung_receivers = (r1, r2, r3, r4)
            hung = [
                await create(app, f"hung-{n}", f"{r.url}/s") for n, r in enumerate(hung_receivers)
            ]
            good = await create(app, "healthy", f"{healthy.url}/s")
            accepted_at: dict[str, float] = {}

            async def post(credentials: AppCredentials) -> str:
                response = await client.post(
                    "/v0.1/dispatch", json=REJECTED_SMS, headers=credentials.basic()
                )
                assert response.status_code == 202
                return str(response.json()["dispatch_uuid"])

            async def hung_load(credentials: AppCredentials, count: int, every_s: float) -> None:
                for _ in range(count):
                    await post(credentials)
                    await asyncio.sleep(every_s)

            # A backlog of 70 each: enough to fill 64 slots apiece, had they been given.
            await asyncio.gather(*(hung_load(c, 70, 0) for c in hung))
            await asyncio.sleep(0.5)  # their deliveries are under way, hanging

            async def healthy_load() -> None:
                for _ in range(20):
                    dispatch_uuid = await post(good)
                    accepted_at[dispatch_uuid] = time.monotonic()
                    await asyncio.sleep(0.1)

            await asyncio.gather(*(hung_load(c, 100, 0.02) for c in hung), healthy_load())
            arrived = await asyncio.to_thread(
                healthy.wait_for, lambda got: len(got) >= 2 * len(accepted_at), 10
            )
            requests_to_hung = [len(r.requests) for r in hung_receivers]
    finally:
        await client.aclose()
        await app.shutdown()
    latencies = sorted(w.received_at - accepted_at[owner(w.json)] for w in arrived)
    assert len(latencies) == 40
    assert latencies[-1] < 1.0, f"p50 {latencies[20]:.3f} s, max {latencies[-1]:.3f} s"
    # Each hung receiver got at most its endpoint's first limit (8): the rest waited.
    assert all(1 <= n <= 8 for n in requests_to_hung), requests_to_hung


async def test_a_receiver_down_for_an_hour_gets_everything_when_it_returns_without_a_storm(
    server: tuple[DispatchApp, httpx.AsyncClient],
) -> None:
    app, client = server
    clock = app.clock
    assert isinstance(clock, ManualClock)
    with WebhookReceiver(status=503) as down, WebhookReceiver() as other:
        shop = await create(app, "shop", f"{down.url}/s")
        neighbour = await create(app, "neighbour", f"{other.url}/s")
        queued = 0
        # An hour of downtime, a workflow (two webhooks) every minute, and one for the
        # neighbour, whose webhooks keep arriving at once.
        for minute in range(60):
            for credentials in (shop, neighbour):
                response = await client.post(
                    "/v0.1/dispatch", json=REJECTED_SMS, headers=credentials.basic()
                )
                assert response.status_code == 202
            queued += 2
            await app.runtime.settled()
            assert len(other.received) == 2 * (minute + 1)
            for _ in range(6):
                await clock.advance(10_000)
                await app.runtime.settled()
        attempts_while_down = len(down.received)
        # Without backing off, each of the 120 webhooks would have been tried every few
        # minutes (about 1,000 attempts); the endpoint was probed instead.
        assert attempts_while_down <= 40, attempts_while_down

        down.respond_with(200)
        for _ in range(31):  # at most one backoff period (5 minutes) until the next probe
            await clock.advance(10_000)
            await app.runtime.settled()
        delivered = [w for w in down.received if w.answered_status == 200]
    ids = [w.headers["webhook-id"] for w in delivered]
    assert len(ids) == len(set(ids)) == queued  # everything, once
    rows = await app.store.list_webhooks_page(_filter(shop.application_id), limit=500)
    assert {row.state for row in rows} == {"delivered"}


def _filter(application_id: str) -> Any:
    from opendispatch.store.records import WebhookFilter

    return WebhookFilter(application_id=application_id)
