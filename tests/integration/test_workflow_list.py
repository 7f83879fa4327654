"""`GET /v0.1/dispatch` filtered by status, channel and creation time: workflows run by the
sandbox to their outcomes (driven clock), listed through the ASGI app, on both databases."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from opendispatch.timefmt import iso_ms
from tests.databases import TestDatabase
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio


@dataclass
class Listing:
    app: DispatchApp
    clock: ManualClock
    client: httpx.AsyncClient
    credentials: AppCredentials
    created: dict[str, tuple[str, int]]  # name -> (dispatch_uuid, created at, ms)

    async def post(self, name: str, *steps: dict[str, Any]) -> None:
        body = {"template": "failover", "workflow": list(steps)}
        response = await self.client.post(
            "/v0.1/dispatch", json=body, headers=self.credentials.basic()
        )
        assert response.status_code == 202, response.text
        self.created[name] = (response.json()["dispatch_uuid"], self.clock.now_ms())
        await self.app.runtime.settled()

    async def page(self, url: str) -> dict[str, Any]:
        response = await self.client.get(url, headers=self.credentials.basic())
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def names(self, query: str) -> list[str]:
        """Every workflow the list shows, following `next` to the end, by name."""
        by_uuid = {uuid: name for name, (uuid, _) in self.created.items()}
        names: list[str] = []
        url: str | None = f"/v0.1/dispatch?{query}"
        while url is not None:
            page = await self.page(url)
            names += [by_uuid[w["dispatch_uuid"]] for w in page["_embedded"]["workflows"]]
            url = page["_links"].get("next", {}).get("href")
        return names

    def at(self, name: str) -> str:
        return iso_ms(self.created[name][1])


WHATSAPP_SILENT = step("whatsapp", "447700900004", {"expiry_time": 600, "condition_status": "read"})
WHATSAPP_REJECTED = step(
    "whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"}
)
SMS_DELIVERED = step("sms", "447700900005")
SMS_REJECTED = step("sms", "447700900001")
MMS_REJECTED = {
    **step("mms", "447700900001"),
    "message": {"content": {"type": "image", "image": {"url": "https://example.com/a.png"}}},
}


@pytest.fixture
async def listing(database: TestDatabase) -> AsyncIterator[Listing]:
    """Five workflows a second apart, run by the sandbox to these outcomes (newest last):
    an SMS rejected (error), an SMS delivered (completed), a WhatsApp step waiting to be read
    before its SMS (in progress: the SMS step is not reached), an MMS rejected (error), a
    WhatsApp rejected then its SMS delivered (completed)."""
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver() as receiver:
        app = DispatchApp(Settings(database=database.url, allow_private_webhooks=True), clock=clock)
        await app.startup()
        provisioned = await provision_application(
            app.store, name="shop", status_url=f"{receiver.url}/status"
        )
        other = await provision_application(
            app.store, name="other", status_url=f"{receiver.url}/other"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            made = Listing(app, clock, client, AppCredentials.from_provisioned(provisioned), {})
            for name, steps in [
                ("sms_error", (SMS_REJECTED,)),
                ("sms_completed", (SMS_DELIVERED,)),
                ("whatsapp_running", (WHATSAPP_SILENT, SMS_DELIVERED)),
                ("mms_error", (MMS_REJECTED,)),
                ("whatsapp_then_sms_completed", (WHATSAPP_REJECTED, SMS_DELIVERED)),
            ]:
                await made.post(name, *steps)
                await clock.advance(1000)
                await app.runtime.settled()
            await client.post(  # another application's error is never listed
                "/v0.1/dispatch",
                json={"template": "failover", "workflow": [SMS_REJECTED]},
                headers=AppCredentials.from_provisioned(other).basic(),
            )
            await app.runtime.settled()
            yield made
        await app.shutdown()


async def test_the_list_filters_by_status(listing: Listing):
    statuses = {
        w["dispatch_uuid"]: w["status"]
        for w in (await listing.page("/v0.1/dispatch"))["_embedded"]["workflows"]
    }
    assert sorted(statuses.values()) == ["completed", "completed", "error", "error", "in_progress"]
    assert await listing.names("status=error") == ["mms_error", "sms_error"]
    assert await listing.names("status=in_progress") == ["whatsapp_running"]
    both = ["whatsapp_then_sms_completed", "whatsapp_running", "sms_completed"]
    assert await listing.names("status=completed,in_progress") == both
    assert await listing.names("status=in_progress&status=completed") == both


async def test_the_list_filters_by_a_channel_of_any_step_reached_or_not(listing: Listing):
    assert await listing.names("channel=whatsapp") == [
        "whatsapp_then_sms_completed",
        "whatsapp_running",
    ]
    # The running workflow's SMS step is not reached yet: it has a step on sms all the same.
    assert await listing.names("channel=sms") == [
        "whatsapp_then_sms_completed",
        "whatsapp_running",
        "sms_completed",
        "sms_error",
    ]
    assert await listing.names("channel=mms") == ["mms_error"]
    assert await listing.names("channel=messenger") == []


async def test_the_list_filters_by_creation_time_after_inclusive_before_exclusive(
    listing: Listing,
):
    after, before = listing.at("sms_completed"), listing.at("mms_error")
    assert await listing.names(f"created_after={after}&created_before={before}") == [
        "whatsapp_running",
        "sms_completed",
    ]
    assert await listing.names(f"created_before={after}") == ["sms_error"]
    assert await listing.names(f"created_after={before}") == [
        "whatsapp_then_sms_completed",
        "mms_error",
    ]
    # Any ISO 8601 offset, even with its `+` sent unencoded (it arrives as a space).
    created_ms = listing.created["mms_error"][1]
    in_paris = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created_ms // 1000 + 3600))
    millis = f".{created_ms % 1000:03d}"
    for offset in ("%2B01:00", "+01:00"):
        assert await listing.names(f"created_after={in_paris}{millis}{offset}") == [
            "whatsapp_then_sms_completed",
            "mms_error",
        ]


async def test_every_page_link_keeps_the_filters(listing: Listing):
    after = listing.at("sms_error")
    query = f"status=error,completed&channel=sms&created_after={after}&page_size=1"
    seen, url, pages = [], f"/v0.1/dispatch?{query}", 0
    while url is not None:
        page = await listing.page(url)
        pages += 1
        kept = parse_qs(urlsplit(page["_links"]["self"]["href"]).query)
        assert kept["status"] == ["completed,error"]
        assert kept["channel"] == ["sms"]
        assert kept["created_after"] == [after]
        assert kept["page_size"] == ["1"]
        seen += [w["dispatch_uuid"] for w in page["_embedded"]["workflows"]]
        url = page["_links"].get("next", {}).get("href")
    names = ["whatsapp_then_sms_completed", "sms_completed", "sms_error"]
    assert seen == [listing.created[name][0] for name in names]
    assert pages == 3


async def test_filters_combine(listing: Listing):
    assert await listing.names("status=completed&channel=whatsapp") == [
        "whatsapp_then_sms_completed"
    ]
    after = listing.at("sms_completed")
    assert await listing.names(f"status=error&channel=sms&created_after={after}") == []
