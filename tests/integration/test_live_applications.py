"""Live applications at the API: never the sandbox, refused without a route, and the
callback endpoint's checks (unknown accounts, a reference that does not match)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.providers.accounts import new_account
from opendispatch.providers.secret_box import SecretBox
from tests.databases import TestDatabase
from tests.fakes.base import CallbackPlan
from tests.fakes.telnyx import FakeTelnyx
from tests.live import SECRET_KEY
from tests.support import AppCredentials, step, two_step_workflow

pytestmark = pytest.mark.anyio


@dataclass
class Api:
    app: DispatchApp
    client: httpx.AsyncClient
    live: AppCredentials
    sandbox: AppCredentials
    telnyx: FakeTelnyx


@pytest.fixture
async def api(database: TestDatabase) -> AsyncIterator[Api]:
    with FakeTelnyx() as telnyx:
        settings = Settings(
            database=database.url,
            secret_key=SECRET_KEY,
            public_url="http://t",
            allow_private_webhooks=True,
        )
        app = DispatchApp(settings, run_workers=False)
        await app.startup()
        record = new_account(
            name="telnyx-main",
            kind_name="telnyx",
            base_url=telnyx.url,
            values=telnyx.account_settings(),
            secret_box=SecretBox(SECRET_KEY),
        )
        await app.store.save_provider_account(record, replace=False, now_ms=1)
        live = await provision_application(
            app.store, name="live", status_url="http://127.0.0.1:9/s", live=True
        )
        sandbox = await provision_application(
            app.store, name="sandbox", status_url="http://127.0.0.1:9/s"
        )
        await app.store.set_route(live.application.application_id, "sms", ["telnyx-main"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Api(
                app,
                client,
                AppCredentials.from_provisioned(live),
                AppCredentials.from_provisioned(sandbox),
                telnyx,
            )
        await app.shutdown()


async def test_a_live_workflow_using_a_channel_without_a_route_is_refused_and_not_stored(
    api: Api,
):
    answer = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=api.live.basic()
    )
    assert answer.status_code == 400
    problem = answer.json()
    assert problem["invalid_parameters"] == [
        {
            "name": "workflow[0].to.type",
            "reason": "this live application has no provider route for whatsapp "
            f"(opendispatch apps route {api.live.application_id} --channel whatsapp "
            "--providers ...)",
        }
    ]
    listed = await api.client.get("/v0.1/dispatch", headers=api.live.basic())
    assert listed.json()["_embedded"]["workflows"] == []


async def test_a_live_workflow_on_routed_channels_is_accepted(api: Api):
    body = {"template": "failover", "workflow": [step("sms", "447700900003")]}
    answer = await api.client.post("/v0.1/dispatch", json=body, headers=api.live.basic())
    assert answer.status_code == 202


async def test_a_sandbox_application_never_needs_a_route(api: Api):
    answer = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=api.sandbox.basic()
    )
    assert answer.status_code == 202


async def test_sandbox_statuses_cannot_be_injected_into_a_live_applications_messages(api: Api):
    body = {"template": "failover", "workflow": [step("sms", "447700900003")]}
    answer = await api.client.post("/v0.1/dispatch", json=body, headers=api.live.basic())
    view = await api.client.get(answer.headers["location"], headers=api.live.basic())
    message_uuid = view.json()["messages"][0]["message_uuid"]
    injected = await api.client.post(
        f"/v0.1/sandbox/messages/{message_uuid}/status",
        json={"status": "delivered"},
        headers=api.live.basic(),
    )
    assert injected.status_code == 403
    assert "live application" in injected.json()["detail"]


async def test_callbacks_to_an_account_that_does_not_exist_are_404(api: Api):
    answer = await api.client.post("/v0.1/providers/nobody/callbacks", content=b"{}")
    assert answer.status_code == 404


async def test_a_signed_callback_replayed_with_another_messages_reference_is_refused(api: Api):
    """Telnyx signs the body, not the URL carrying our reference: the provider's own id in the
    body must match the one recorded for the message the reference names."""
    body = {"template": "failover", "workflow": [step("sms", "447700900003")]}
    answer = await api.client.post("/v0.1/dispatch", json=body, headers=api.live.basic())
    dispatch_uuid = answer.json()["dispatch_uuid"]
    await api.app.runtime.start()  # send it: the message gets Telnyx's id
    try:
        await api.app.runtime.settled()
        api.telnyx.wait_for(lambda fake: len(fake.messages) == 1)
    finally:
        await api.app.runtime.stop()
    view = await api.client.get(f"/v0.1/dispatch/{dispatch_uuid}", headers=api.live.basic())
    message = view.json()["messages"][0]
    assert message["send"]["provider_message_id"] == api.telnyx.messages[0].provider_message_id
    # A genuine Telnyx callback about some other message, pointed at ours.
    other = api.telnyx.messages[0]
    other.provider_message_id = "40317e1e-0000-4000-8000-000000000000"
    _, headers, signed = api.telnyx.callback_request(
        CallbackPlan(message=other, status="delivered")
    )
    forged = await api.client.post(
        f"/v0.1/providers/telnyx-main/callbacks?message_uuid={message['message_uuid']}",
        content=signed,
        headers=headers,
    )
    assert forged.status_code == 403
    after = await api.client.get(f"/v0.1/dispatch/{dispatch_uuid}", headers=api.live.basic())
    assert [h["status"] for h in after.json()["messages"][0]["history"]] == ["submitted"]
