"""After downtime, the outcome follows when things happened, not which worker woke first.

A status that happened before its step's deadline must win over the deadline also when the
server was down and both are overdue at restart (with real providers this is the normal case:
callbacks queue up while a server is down). Found by probing: 100 workflows [WhatsApp read
after 2 s, expiry 15 s, read] -> [SMS], the server killed after 0.3 s and restarted 20 s
later: every one of them sent the SMS. Here time is driven: the server stops, the clock moves
20 s, a new server starts on the same database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

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

READ_IN_TIME = {"expiry_time": 15, "condition_status": "read"}
# WhatsApp to a number ending in 5: the sandbox reports delivered after 1 s, read after 2 s.
TWO_STEPS = {"template": "failover", "workflow": [
    step("whatsapp", "447700900005", READ_IN_TIME), step("sms", "447700900005"),
]}  # fmt: skip
ONE_STEP = {"template": "failover", "workflow": [step("whatsapp", "447700900005", READ_IN_TIME)]}

Run = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def across_downtime(database: TestDatabase) -> AsyncIterator[Run]:
    """Accept `count` workflows, let the WhatsApp messages go out, stop the server, move time
    on by `down_ms`, start a new server on the same database; return what GET shows."""
    servers: list[DispatchApp] = []

    async def run(body: dict[str, Any], *, count: int, down_ms: int) -> dict[str, Any]:
        start = int(time.time() * 1000)
        with WebhookReceiver() as receiver:
            settings = Settings(database=database.url, allow_private_webhooks=True)
            first = DispatchApp(settings, clock=ManualClock(start_ms=start))
            servers.append(first)
            await first.startup()
            provisioned = await provision_application(
                first.store, name="downtime", status_url=f"{receiver.url}/s"
            )
            credentials = AppCredentials.from_provisioned(provisioned)
            transport = httpx.ASGITransport(app=first)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                uuids = [
                    (
                        await client.post("/v0.1/dispatch", json=body, headers=credentials.basic())
                    ).json()["dispatch_uuid"]
                    for _ in range(count)
                ]
                await first.runtime.settled()  # the WhatsApp messages are sent
            await first.shutdown()  # down: the read happens (at 2 s), the deadline (15 s) passes

            clock = ManualClock(start_ms=start + down_ms)
            second = DispatchApp(settings, clock=clock)
            servers.append(second)
            await second.startup()
            await second.runtime.settled()
            await clock.advance(5_000)  # whatever was sent at the restart gets its statuses
            await second.runtime.settled()
            transport = httpx.ASGITransport(app=second)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                views = [
                    (await client.get(f"/v0.1/dispatch/{u}", headers=credentials.basic())).json()
                    for u in uuids
                ]
        return {"views": views, "sends": await database.rows("SELECT channel FROM sandbox_sends")}

    yield run
    for server in servers:
        if server.ready:
            await server.shutdown()


async def test_a_read_before_the_deadline_wins_over_the_deadline_after_downtime(
    across_downtime: Run,
) -> None:
    seen = await across_downtime(TWO_STEPS, count=20, down_ms=20_000)
    assert {view["status"] for view in seen["views"]} == {"completed"}
    assert sorted({channel for (channel,) in seen["sends"]}) == ["whatsapp"]  # no SMS
    for view in seen["views"]:
        [message] = view["messages"]
        assert [entry["status"] for entry in message["history"]] == [
            "submitted",
            "delivered",
            "read",
        ]


async def test_a_last_step_read_in_time_completes_after_downtime(across_downtime: Run) -> None:
    seen = await across_downtime(ONE_STEP, count=20, down_ms=20_000)
    assert {view["status"] for view in seen["views"]} == {"completed"}


async def test_a_message_never_read_still_fails_over_after_downtime(across_downtime: Run) -> None:
    """The other side of the rule: with nothing in time to meet the step, the deadline that
    passed during the downtime moves the workflow on at the restart (WhatsApp to a number
    ending in 3: delivered, never read; then the SMS, delivered)."""
    never_read = {"template": "failover", "workflow": [
        step("whatsapp", "447700900003", READ_IN_TIME), step("sms", "447700900003"),
    ]}  # fmt: skip
    seen = await across_downtime(never_read, count=5, down_ms=20_000)
    assert {view["status"] for view in seen["views"]} == {"completed"}  # by the SMS
    assert sorted(channel for (channel,) in seen["sends"]) == ["sms"] * 5 + ["whatsapp"] * 5
    for view in seen["views"]:
        whatsapp, sms = view["messages"]
        assert [entry["status"] for entry in whatsapp["history"]] == ["submitted", "delivered"]
        assert [entry["status"] for entry in sms["history"]] == ["submitted", "delivered"]
