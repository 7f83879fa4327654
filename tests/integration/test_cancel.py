"""`POST /v0.1/dispatch/{dispatch_uuid}/cancel`, end to end: the ASGI app with its runtime and
workers, each database, the sandbox and a real webhook receiver; time is driven, never slept.

A cancelled workflow sends nothing more, loses its deadline, and its one final report says
`cancelled`, after its status webhooks already due. Statuses that come afterwards are
forwarded like any late status and change nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from opendispatch.auth.provisioning import provision_application
from tests.databases import TestDatabase
from tests.integration.test_runtime import Env, _env, whatsapp_then_sms
from tests.support import AppCredentials

pytestmark = pytest.mark.anyio

SILENT = "447700900004"  # the sandbox submits, then says nothing more
CONFLICT = "https://www.nexmo.com/messages/Errors#Conflict"
NOT_FOUND = "https://www.nexmo.com/messages/Errors#NotFound"


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    async for made in _env(database):
        yield made


async def cancel(env: Env, dispatch_uuid: str, **headers: str) -> httpx.Response:
    response = await env.client.post(
        f"/v0.1/dispatch/{dispatch_uuid}/cancel", headers=headers or env.credentials.basic()
    )
    await env.app.runtime.settled()
    return response


async def test_cancel_stops_a_running_workflow_and_its_final_report_says_cancelled(env: Env):
    uuid = await env.post(whatsapp_then_sms(SILENT, SILENT, expiry=600))
    assert env.statuses(uuid) == [("whatsapp", "submitted")]

    response = await cancel(env, uuid)

    assert response.status_code == 200, response.text
    assert response.json() == {"dispatch_uuid": uuid, "status": "cancelled"}
    final = env.final(uuid)
    assert final["status"] == "cancelled"
    assert [(m["channel"], m["status"]) for m in final["_links"]["messages"]] == [
        ("whatsapp", "submitted")
    ]
    view = await env.view(uuid)
    assert view["status"] == "cancelled"
    assert view["next_deadline"] is None  # the timer is cleared
    assert [m["channel"] for m in view["messages"]] == ["whatsapp"]
    # Long past the WhatsApp's expiry: the SMS is never sent, no second final report.
    await env.advance(700_000)
    assert len(await env.sandbox_sends()) == 1
    assert env.statuses(uuid) == [("whatsapp", "submitted")]
    assert env.final(uuid)["status"] == "cancelled"


async def test_cancel_of_an_ended_workflow_is_409_in_vonage_shape_and_changes_nothing(env: Env):
    uuid = await env.post(whatsapp_then_sms(SILENT, SILENT))
    assert (await cancel(env, uuid)).status_code == 200

    again = await cancel(env, uuid)

    assert again.status_code == 409
    body = again.json()
    assert body["type"] == CONFLICT
    assert body["title"] == "Conflict"
    assert body["instance"] == again.headers["x-request-id"]
    assert len(env.webhooks(uuid, "final")) == 1


async def test_cancel_of_a_completed_workflow_is_409(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900005", "447700900005"))
    await env.advance(2000)  # delivered, then read: completed
    assert env.final(uuid)["status"] == "completed"

    assert (await cancel(env, uuid)).status_code == 409
    assert (await env.view(uuid))["status"] == "completed"


async def test_final_report_of_a_cancel_waits_for_the_status_webhooks_already_due(env: Env):
    env.receiver.fail_next(2, status=503)  # the `submitted` webhook must be retried
    uuid = await env.post(whatsapp_then_sms(SILENT, SILENT))

    assert (await cancel(env, uuid)).status_code == 200

    [final] = [w for w in (await env.view(uuid))["webhooks"] if w["kind"] == "final_report"]
    assert final["state"] == "held"
    for _ in range(5):
        await env.advance(5_000)  # the retries come due
    arrived = [w for w in env.webhooks(uuid) if w.answered_status == 200]
    assert ["template" in w.json for w in arrived] == [False, True]
    assert arrived[-1].json["status"] == "cancelled"


async def test_statuses_after_a_cancel_are_forwarded_and_counted_but_change_nothing(env: Env):
    uuid = await env.post(whatsapp_then_sms(SILENT, SILENT))
    [whatsapp] = (await env.view(uuid))["messages"]
    assert (await cancel(env, uuid)).status_code == 200

    injected = await env.client.post(
        f"/v0.1/sandbox/messages/{whatsapp['message_uuid']}/status",
        json={"status": "read", "usage": {"price": "0.0200", "currency": "EUR"}},
        headers=env.credentials.basic(),
    )
    assert injected.status_code == 202
    await env.app.runtime.settled()

    assert env.statuses(uuid) == [("whatsapp", "submitted"), ("whatsapp", "read")]
    view = await env.view(uuid)
    assert view["status"] == "cancelled"
    assert view["usage"]["price"] == "0.0200"
    assert env.final(uuid)["status"] == "cancelled"  # still the one final report


async def test_cancel_is_404_for_another_application_an_unknown_or_malformed_uuid(env: Env):
    uuid = await env.post(whatsapp_then_sms(SILENT, SILENT))
    bob = AppCredentials.from_provisioned(
        await provision_application(env.app.store, name="bob", status_url="http://127.0.0.1:9/b")
    )

    for dispatch_uuid, headers in (
        (uuid, bob.basic()),
        ("01937a2c-5b0e-7d3a-9c1e-6f2b8a4d0e51", env.credentials.basic()),
        ("not-a-uuid", env.credentials.basic()),
    ):
        response = await cancel(env, dispatch_uuid, **headers)
        assert response.status_code == 404, response.text
        assert response.json()["type"] == NOT_FOUND
    assert (await env.view(uuid))["status"] == "in_progress"  # bob changed nothing


async def test_cancel_needs_the_same_credentials_as_every_route(env: Env):
    uuid = await env.post(whatsapp_then_sms(SILENT, SILENT))

    anonymous = await env.client.post(f"/v0.1/dispatch/{uuid}/cancel")
    by_jwt = await cancel(env, uuid, **env.credentials.bearer())
    other_method = await env.client.get(
        f"/v0.1/dispatch/{uuid}/cancel", headers=env.credentials.basic()
    )

    assert anonymous.status_code == 401
    assert by_jwt.status_code == 200
    assert other_method.status_code == 405
    assert other_method.headers["allow"] == "POST"


async def test_cancel_is_described_in_the_openapi_document(env: Env):
    document = (await env.client.get("/openapi.json")).json()

    operation = document["paths"]["/v0.1/dispatch/{dispatch_uuid}/cancel"]["post"]
    assert operation["operationId"] == "cancelWorkflow"
    assert set(operation["responses"]) == {"200", "401", "404", "409"}
    cancelled = document["components"]["schemas"]["WorkflowCancelled"]
    assert set(cancelled["properties"]) == {"dispatch_uuid", "status"}
