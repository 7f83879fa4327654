"""A send whose answer never comes is not sent again: the step's deadline settles it, and a
late callback from the provider is still recorded, forwarded and counted.

Time is driven (`ManualClock`) for the workflow; only the provider's silence is real (the
server waits `provider_timeout_s`, half a second here, for an answer).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.providers.accounts import new_account
from opendispatch.providers.secret_box import SecretBox
from opendispatch.runtime.clock import ManualClock
from opendispatch.store.factory import create_store
from tests.databases import TestDatabase
from tests.fakes.base import CallbackPlan, FakeMessage, FakeProvider
from tests.fakes.twilio import FakeTwilio
from tests.fakes.vonage import FakeVonage
from tests.live import KIND_OF, SECRET_KEY
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

READ_IN_15_S = {"expiry_time": 15, "condition_status": "read"}
WORKFLOW = {
    "template": "failover",
    "workflow": [step("whatsapp", "447700900009", READ_IN_15_S), step("sms", "447700900003")],
}


@dataclass
class Live:
    app: DispatchApp
    client: httpx.AsyncClient
    credentials: AppCredentials
    clock: ManualClock
    vonage: FakeVonage
    twilio: FakeTwilio
    receiver: WebhookReceiver

    async def get(self, dispatch_uuid: str) -> Any:
        answer = await self.client.get(
            f"/v0.1/dispatch/{dispatch_uuid}", headers=self.credentials.basic()
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


async def _register(database_url: str, fakes: dict[str, FakeProvider], status_url: str) -> Any:
    store = create_store(database_url)
    await store.open()
    try:
        for name, fake in fakes.items():
            record = new_account(
                name=name,
                kind_name=KIND_OF[type(fake)],
                base_url=fake.url,
                values=fake.account_settings(),  # type: ignore[attr-defined]
                secret_box=SecretBox(SECRET_KEY),
            )
            await store.save_provider_account(record, replace=False, now_ms=1)
        provisioned = await provision_application(
            store, name="live", status_url=status_url, live=True
        )
        application_id = provisioned.application.application_id
        await store.set_route(application_id, "whatsapp", ["vonage-main"])
        await store.set_route(application_id, "sms", ["twilio-main"])
        return provisioned
    finally:
        await store.close()


@pytest.fixture
async def live(database: TestDatabase) -> AsyncIterator[Live]:
    with WebhookReceiver() as receiver, FakeVonage() as vonage, FakeTwilio() as twilio:
        vonage.hang = True  # reads the request, never answers
        twilio.auto_callbacks = False
        provisioned = await _register(
            database.url, {"vonage-main": vonage, "twilio-main": twilio}, f"{receiver.url}/s"
        )
        clock = ManualClock(start_ms=int(time.time() * 1000))
        settings = Settings(
            database=database.url,
            allow_private_webhooks=True,
            provider_timeout_s=0.5,
            secret_key=SECRET_KEY,
        )
        app = DispatchApp(settings, clock=clock)
        await app.startup()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Live(
                app,
                client,
                AppCredentials.from_provisioned(provisioned),
                clock,
                vonage,
                twilio,
                receiver,
            )
        await app.shutdown()


async def test_a_send_with_no_answer_is_not_sent_again_and_its_deadline_moves_on(live: Live):
    answer = await live.client.post(
        "/v0.1/dispatch", json=WORKFLOW, headers=live.credentials.basic()
    )
    assert answer.status_code == 202
    dispatch_uuid = answer.json()["dispatch_uuid"]
    await live.app.runtime.settled()

    view = await live.get(dispatch_uuid)
    [whatsapp] = view["messages"]
    assert whatsapp["send"]["state"] == "unknown"
    assert whatsapp["send"]["last_error"].startswith("outcome unknown: vonage-main: no answer")
    assert whatsapp["provider"] == "vonage-main"
    assert whatsapp["status"] is None  # nobody knows yet
    assert len(live.vonage.requests) == 1

    await live.clock.advance(16_000)  # the step's deadline passes
    await live.app.runtime.settled()

    view = await live.get(dispatch_uuid)
    whatsapp, sms = view["messages"]
    assert whatsapp["status"] == "rejected"
    assert whatsapp["error"]["code"] == 1400  # given up at its deadline
    assert sms["provider"] == "twilio-main"
    assert [m.to for m in live.twilio.messages] == ["+447700900003"]
    assert len(live.vonage.requests) == 1  # never asked again


async def test_a_late_callback_after_the_deadline_is_recorded_forwarded_and_counted(live: Live):
    answer = await live.client.post(
        "/v0.1/dispatch", json=WORKFLOW, headers=live.credentials.basic()
    )
    dispatch_uuid = answer.json()["dispatch_uuid"]
    await live.app.runtime.settled()
    await live.clock.advance(16_000)
    await live.app.runtime.settled()
    whatsapp_uuid = (await live.get(dispatch_uuid))["messages"][0]["message_uuid"]

    # Vonage did send it after all: its callback comes, long after the step moved on.
    sent = FakeMessage(
        provider_message_id="5c6a5b07-1a77-4a54-a9d9-3bbd1a5b3f0d",
        channel="whatsapp",
        to="447700900009",
        from_="447700900000",
        text="code 1234",
        callback_url="http://t/v0.1/providers/vonage-main/callbacks",
        request={},
        reference=whatsapp_uuid,
    )
    url, headers, body = live.vonage.callback_request(
        CallbackPlan(message=sent, status="delivered")
    )
    landed = await live.client.post(url, content=body, headers=headers)
    assert landed.status_code == 200, landed.text
    await live.app.runtime.settled()

    view = await live.get(dispatch_uuid)
    whatsapp = view["messages"][0]
    assert [entry["status"] for entry in whatsapp["history"]] == ["rejected", "delivered"]
    assert whatsapp["status"] == "rejected"  # a failure is final; the delivery is history
    assert whatsapp["usage"]["price"] == "0.0120"  # the fake Vonage charges WhatsApp at delivered
    assert view["usage"]["price"] == "0.0120"  # the workflow's usage is amended
    late = [w.json for w in live.receiver.received if w.json.get("message_uuid") == whatsapp_uuid]
    assert [w["status"] for w in late] == ["rejected", "delivered"]
