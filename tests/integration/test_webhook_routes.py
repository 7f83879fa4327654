"""Dead letters you can see and replay: `GET /v0.1/webhooks`, `POST .../replay`, and the CLI,
on both databases, with a real receiver and driven time."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from tests.databases import TestDatabase
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, run_cli, step

pytestmark = pytest.mark.anyio

REJECTED_SMS = {"template": "failover", "workflow": [step("sms", "447700900001")]}


@dataclass
class Env:
    app: DispatchApp
    client: httpx.AsyncClient
    clock: ManualClock
    receiver: WebhookReceiver
    shop: AppCredentials
    other: AppCredentials
    database: TestDatabase

    async def workflow(self, credentials: AppCredentials | None = None) -> str:
        response = await self.client.post(
            "/v0.1/dispatch", json=REJECTED_SMS, headers=(credentials or self.shop).basic()
        )
        assert response.status_code == 202
        await self.app.runtime.settled()
        return str(response.json()["dispatch_uuid"])

    async def advance(self, ms: int) -> None:
        await self.clock.advance(ms)
        await self.app.runtime.settled()

    async def kill_all(self) -> None:
        """Let every pending webhook die: the receiver fails past the 3 s retry period."""
        for _ in range(8):
            await self.advance(1_000)

    async def get(self, path: str, credentials: AppCredentials | None = None) -> httpx.Response:
        return await self.client.get(path, headers=(credentials or self.shop).basic())

    async def post(
        self, path: str, body: Any = None, credentials: AppCredentials | None = None
    ) -> httpx.Response:
        headers = (credentials or self.shop).basic()
        if body is None:
            return await self.client.post(path, headers=headers)
        return await self.client.post(path, json=body, headers=headers)

    async def states(self) -> list[tuple[str, int, int]]:
        rows = await self.database.rows("SELECT state, attempts, replays FROM webhooks ORDER BY id")
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver(status=503) as receiver:
        app = DispatchApp(
            Settings(database=database.url, allow_private_webhooks=True, webhook_retry_period_s=3),
            clock=clock,
        )
        await app.startup()
        shop = await provision_application(
            app.store, name="shop", status_url=f"{receiver.url}/status"
        )
        other = await provision_application(
            app.store, name="other", status_url=f"{receiver.url}/other"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Env(
                app,
                client,
                clock,
                receiver,
                AppCredentials.from_provisioned(shop),
                AppCredentials.from_provisioned(other),
                database,
            )
        await app.shutdown()


async def test_dead_webhooks_are_listed_with_their_attempts_and_last_error(env: Env) -> None:
    dispatch_uuid = await env.workflow()
    await env.kill_all()
    response = await env.get("/v0.1/webhooks?state=dead")
    assert response.status_code == 200
    page = response.json()
    entries = page["_embedded"]["webhooks"]
    assert [(e["kind"], e["state"]) for e in entries] == [
        ("final_report", "dead"),  # newest first
        ("message_status", "dead"),
    ]
    status = entries[1]
    assert status["dispatch_uuid"] == dispatch_uuid
    assert status["attempts"] >= 3
    assert (status["last_status_code"], status["last_error"]) == (503, "HTTP 503")
    assert status["next_attempt_at"] is None
    assert status["_links"]["replay"]["href"] == f"/v0.1/webhooks/{status['webhook_id']}/replay"
    assert status["_links"]["workflow"]["href"] == f"/v0.1/dispatch/{dispatch_uuid}"
    assert "next" not in page["_links"]


async def test_replay_delivers_the_same_body_and_id_newly_signed(env: Env) -> None:
    await env.workflow()
    await env.kill_all()
    dead = (await env.get("/v0.1/webhooks?state=dead")).json()["_embedded"]["webhooks"]
    status = next(e for e in dead if e["kind"] == "message_status")
    first = next(w for w in env.receiver.received if w.path == "/status")
    env.receiver.respond_with(200)
    env.receiver.clear()

    response = await env.post(status["_links"]["replay"]["href"])
    assert response.status_code == 202
    assert (response.json()["state"], response.json()["replays"]) == ("pending", 1)
    await env.advance(0)
    (again,) = env.receiver.received
    assert again.body == first.body
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == status["webhook_id"]
    claims = [
        jwt.decode(w.headers["authorization"].split()[1], options={"verify_signature": False})
        for w in (first, again)
    ]
    assert claims[0]["jti"] != claims[1]["jti"]
    assert claims[0]["payload_hash"] == claims[1]["payload_hash"]
    listed = (await env.get("/v0.1/webhooks?state=delivered")).json()["_embedded"]["webhooks"]
    assert [(e["webhook_id"], e["attempts"], e["replays"]) for e in listed] == [
        (status["webhook_id"], 1, 1)
    ]


async def test_replaying_a_pending_webhook_is_a_conflict_and_changes_nothing(env: Env) -> None:
    await env.workflow()
    pending = (await env.get("/v0.1/webhooks?state=pending")).json()["_embedded"]["webhooks"]
    before = await env.states()
    response = await env.post(pending[0]["_links"]["replay"]["href"])
    assert response.status_code == 409
    assert response.json()["title"] == "Conflict"
    assert await env.states() == before


async def test_another_applications_webhook_is_not_found_for_list_or_replay(env: Env) -> None:
    await env.workflow(env.other)
    await env.kill_all()
    theirs = (await env.get("/v0.1/webhooks", env.other)).json()["_embedded"]["webhooks"]
    assert (await env.get("/v0.1/webhooks")).json()["_embedded"]["webhooks"] == []
    before = await env.states()
    response = await env.post(theirs[0]["_links"]["replay"]["href"])
    assert response.status_code == 404
    assert (await env.post("/v0.1/webhooks/no-such-id/replay")).status_code == 404
    assert await env.states() == before


async def test_replay_with_a_filter_replays_many_and_nothing_else(env: Env) -> None:
    first = await env.workflow()
    await env.workflow()
    await env.workflow(env.other)
    await env.kill_all()
    env.receiver.respond_with(200)

    one = await env.post("/v0.1/webhooks/replay", {"dispatch_uuid": first})
    assert one.json() == {"replayed": 2}
    rest = await env.post("/v0.1/webhooks/replay")  # default: every dead one of this app
    assert rest.json() == {"replayed": 2}
    await env.advance(0)
    mine = (await env.get("/v0.1/webhooks")).json()["_embedded"]["webhooks"]
    theirs = (await env.get("/v0.1/webhooks", env.other)).json()["_embedded"]["webhooks"]
    assert {e["state"] for e in mine} == {"delivered"}
    assert {e["state"] for e in theirs} == {"dead"}
    again = await env.post("/v0.1/webhooks/replay", {"state": "delivered", "dispatch_uuid": first})
    assert again.json() == {"replayed": 2}


async def test_lists_page_newest_first_and_filter_by_workflow(env: Env) -> None:
    uuids = [await env.workflow() for _ in range(3)]
    seen: list[str] = []
    href: str | None = "/v0.1/webhooks?page_size=2"
    while href is not None:
        page = (await env.get(href)).json()
        assert page["page_size"] == 2
        seen += [e["webhook_id"] for e in page["_embedded"]["webhooks"]]
        href = page["_links"].get("next", {}).get("href")
    all_ids = [
        e["webhook_id"] for e in (await env.get("/v0.1/webhooks")).json()["_embedded"]["webhooks"]
    ]
    assert seen == all_ids
    assert len(set(seen)) == 6
    owned = (await env.get(f"/v0.1/webhooks?dispatch_uuid={uuids[1]}")).json()
    assert {e["dispatch_uuid"] for e in owned["_embedded"]["webhooks"]} == {uuids[1]}
    assert len(owned["_embedded"]["webhooks"]) == 2


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("state=lost", "state"),
        ("page_size=0", "page_size"),
        ("page_size=%C2%B2", "page_size"),
        ("page_size=" + "9" * 50, "page_size"),
        ("cursor=abc", "cursor"),
        ("dispatch_uuid=nope", "dispatch_uuid"),
        ("status=dead", "status"),  # a typo must not silently list everything
    ],
)
async def test_bad_list_queries_are_400_naming_the_parameter(
    env: Env, query: str, name: str
) -> None:
    response = await env.get(f"/v0.1/webhooks?{query}")
    assert response.status_code == 400
    assert [p["name"] for p in response.json()["invalid_parameters"]] == [name]


@pytest.mark.parametrize(
    "body",
    [{"state": "pending"}, {"state": "dead", "extra": 1}, {"dispatch_uuid": 5}, [1], "x"],
)
async def test_a_bad_replay_filter_is_400_and_replays_nothing(env: Env, body: Any) -> None:
    await env.workflow()
    await env.kill_all()
    before = await env.states()
    response = await env.post("/v0.1/webhooks/replay", body)
    assert response.status_code == 400
    assert response.json()["invalid_parameters"]
    assert await env.states() == before


async def test_the_cli_lists_and_replays_dead_webhooks(env: Env) -> None:
    await env.workflow()
    await env.kill_all()
    database = env.database.url
    listed = json.loads(
        run_cli("webhooks", "list", "--state", "dead", "--database", database, "--json")
    )
    assert [row["state"] for row in listed] == ["dead", "dead"]
    assert listed[0]["application_id"] == env.shop.application_id
    text = run_cli("webhooks", "list", "--database", database)
    assert text.splitlines()[0].startswith("WEBHOOK_ID")
    env.receiver.respond_with(200)
    env.receiver.clear()
    out = run_cli("webhooks", "replay", listed[1]["webhook_id"], "--database", database)
    assert out.strip() == "replayed 1 webhook"
    out = run_cli("webhooks", "replay", "--all", "--database", database)
    assert out.strip() == "replayed 1 webhook"
    await env.advance(2_000)  # the server finds what another process put back in its queue
    assert sorted(w.headers["webhook-id"] for w in env.receiver.received) == sorted(
        row["webhook_id"] for row in listed
    )
