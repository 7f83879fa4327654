"""Retention on both databases: what ended longer ago than `--retention-days` goes, in small
batches; what is running, pending or recent stays; dead letters stay until they expire too."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from tests.databases import TestDatabase
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

DAY_MS = 86_400_000


@dataclass
class Env:
    app: DispatchApp
    client: httpx.AsyncClient
    clock: ManualClock
    receiver: WebhookReceiver
    shop: AppCredentials
    database: TestDatabase

    async def workflow(self, number: str) -> str:
        body = {"template": "failover", "workflow": [step("sms", number)]}
        response = await self.client.post("/v0.1/dispatch", json=body, headers=self.shop.basic())
        assert response.status_code == 202
        await self.app.runtime.settled()
        return str(response.json()["dispatch_uuid"])

    async def advance(self, ms: int) -> None:
        await self.clock.advance(ms)
        await self.app.runtime.settled()

    async def exists(self, dispatch_uuid: str) -> bool:
        response = await self.client.get(
            f"/v0.1/dispatch/{dispatch_uuid}", headers=self.shop.basic()
        )
        return response.status_code == 200

    async def count(self, table: str) -> int:
        return int(await self.database.scalar(f"SELECT count(*) FROM {table}"))


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver() as receiver:
        app = DispatchApp(
            Settings(
                database=database.url,
                allow_private_webhooks=True,
                retention_days=1,
                webhook_retry_period_s=60,
            ),
            clock=clock,
        )
        await app.startup()
        shop = await provision_application(
            app.store, name="shop", status_url=f"{receiver.url}/status"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            credentials = AppCredentials.from_provisioned(shop)
            yield Env(app, client, clock, receiver, credentials, database)
        await app.shutdown()


async def test_ended_workflows_and_their_webhooks_go_after_the_retention(env: Env) -> None:
    old = await env.workflow("447700900001")  # rejected at once: ended, 2 webhooks delivered
    await env.advance(DAY_MS // 2)
    recent = await env.workflow("447700900001")
    running = await env.workflow("447700900004")  # submitted, then silent: runs for 24 h
    assert await env.count("webhooks") == 5
    await env.advance(DAY_MS // 2 + 120_000)  # `old` is past the retention, `recent` is not
    assert not await env.exists(old)
    assert await env.exists(recent)
    assert await env.exists(running)
    remaining = await env.database.rows("SELECT dispatch_uuid FROM webhooks ORDER BY id")
    assert {row[0] for row in remaining} == {recent, running}
    messages = await env.database.rows("SELECT DISTINCT dispatch_uuid FROM messages")
    assert {row[0] for row in messages} == {recent, running}


async def test_a_dead_webhook_stays_until_it_expires_and_keeps_its_workflow(env: Env) -> None:
    env.receiver.respond_with(503)
    dead_one = await env.workflow("447700900001")
    for _ in range(12):  # past the 60 s retry period: both webhooks die
        await env.advance(10_000)
    states = await env.database.rows("SELECT state FROM webhooks")
    assert {row[0] for row in states} == {"dead"}
    env.receiver.respond_with(200)
    await env.advance(DAY_MS - 180_000)
    assert await env.exists(dead_one)  # not yet a day since they died
    assert (await env.client.post("/v0.1/webhooks/replay", headers=env.shop.basic())).json() == {
        "replayed": 2
    }
    await env.advance(0)  # delivered at once
    assert {row[0] for row in await env.database.rows("SELECT state FROM webhooks")} == {
        "delivered"
    }
    await env.advance(DAY_MS // 2)  # a new day started for them when they were replayed
    assert await env.exists(dead_one)
    assert await env.count("webhooks") == 2
    await env.advance(DAY_MS // 2 + 120_000)
    assert not await env.exists(dead_one)
    assert await env.count("webhooks") == 0


async def test_expired_rows_go_in_batches_of_the_given_size(env: Env) -> None:
    for _ in range(5):
        await env.workflow("447700900001")
    store = env.app.store
    before = env.clock.now_ms() + 1
    batches = []
    while True:
        expired = await store.delete_expired(before_ms=before, limit=4)
        batches.append((expired.webhooks, expired.workflows))
        if expired.webhooks < 4 and expired.workflows < 4:
            break
    # Ten webhooks four at a time; workflows once none of their webhooks is left.
    assert [w for w, _ in batches] == [4, 4, 2]
    assert sum(n for _, n in batches) == 5
    assert await env.count("workflows") == 0
    assert await env.count("messages") == 0


async def test_idempotency_keys_are_deleted_a_day_after_their_first_use(env: Env) -> None:
    body = {"template": "failover", "workflow": [step("sms", "447700900001")]}
    headers = {**env.shop.basic(), "Idempotency-Key": "order-1"}
    first = await env.client.post("/v0.1/dispatch", json=body, headers=headers)
    assert first.status_code == 202
    await env.app.runtime.settled()
    await env.advance(DAY_MS - 120_000)
    assert await env.count("idempotency_keys") == 1  # still within its day
    await env.advance(240_000)
    assert await env.count("idempotency_keys") == 0
    # The key is free again: the same request makes a new workflow.
    again = await env.client.post("/v0.1/dispatch", json=body, headers=headers)
    assert again.status_code == 202
    assert "idempotent-replayed" not in again.headers
    assert again.json()["dispatch_uuid"] != first.json()["dispatch_uuid"]
