"""`POST /v1/messages` end to end: the ASGI app with its runtime and workers, a real database
(SQLite and PostgreSQL), the sandbox provider and a real HTTP webhook receiver; time driven.

What a team moving from Vonage's Messages API v1 sees: the 202's ids, failover on a rejection
(and only on one), status webhooks in v1's shape (or v0.1's) at the message's `webhook_url`,
signed as every webhook is, and the workflow readable with the Dispatch API's GET."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from opendispatch.webhooks.signing import verify_webhook
from tests.conftest import Api
from tests.databases import TestDatabase
from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import AppCredentials

pytestmark = pytest.mark.anyio

SENDER = "447700900000"


def whatsapp(to: str, **fields: Any) -> dict[str, Any]:
    return {
        "channel": "whatsapp",
        "message_type": "text",
        "to": to,
        "from": SENDER,
        "text": "Your code is 64873",
        **fields,
    }


def sms(to: str, **fields: Any) -> dict[str, Any]:
    return {
        "channel": "sms",
        "message_type": "text",
        "to": to,
        "from": "Shop",
        "text": "64873",
        **fields,
    }


@dataclass
class Env:
    app: DispatchApp
    clock: ManualClock
    client: httpx.AsyncClient
    receiver: WebhookReceiver
    credentials: AppCredentials

    async def send(self, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/messages", json=body, headers={**self.credentials.basic(), **headers}
        )
        assert response.status_code == 202, response.text
        await self.app.runtime.settled()
        return dict(response.json())

    async def advance(self, ms: int) -> None:
        await self.clock.advance(ms)
        await self.app.runtime.settled()

    def arrived(self, path: str = "/status") -> list[ReceivedWebhook]:
        return [webhook for webhook in self.receiver.received if webhook.path == path]

    def statuses(self, path: str = "/status") -> list[tuple[str, str]]:
        return sorted((w.json["channel"], w.json["status"]) for w in self.arrived(path))

    async def workflow(self, workflow_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v0.1/dispatch/{workflow_id}", headers=self.credentials.basic()
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver() as receiver:
        app = DispatchApp(Settings(database=database.url, allow_private_webhooks=True), clock=clock)
        await app.startup()
        provisioned = await provision_application(
            app.store,
            name="shop",
            status_url=f"{receiver.url}/status",
            final_report_url=f"{receiver.url}/final",
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Env(app, clock, client, receiver, AppCredentials.from_provisioned(provisioned))
        await app.shutdown()


# -- the 202 --------------------------------------------------------------------------------


async def test_a_message_without_failover_answers_its_message_uuid_only(env: Env):
    response = await env.client.post(
        "/v1/messages", json=sms("447700900006"), headers=env.credentials.basic()
    )

    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"message_uuid"}
    workflow_id = response.headers["location"].rsplit("/", 1)[-1]
    view = await env.workflow(workflow_id)
    assert view["template"] == "messages_v1"
    assert [m["message_uuid"] for m in view["messages"]] == [answer["message_uuid"]]


async def test_with_failover_the_202_gives_the_first_message_and_the_workflow(env: Env):
    answer = await env.send(whatsapp("447700900005", failover=[sms("447700900006")]))

    assert set(answer) == {"message_uuid", "workflow_id"}
    view = await env.workflow(answer["workflow_id"])
    assert view["messages"][0]["message_uuid"] == answer["message_uuid"]
    assert [step["to"]["type"] for step in view["workflow"]] == ["whatsapp", "sms"]


async def test_jwt_authentication_works_as_for_the_dispatch_api(env: Env):
    response = await env.client.post(
        "/v1/messages", json=sms("447700900006"), headers=env.credentials.bearer()
    )

    assert response.status_code == 202, response.text


# -- failover -------------------------------------------------------------------------------


async def test_a_rejected_whatsapp_fails_over_to_sms_at_once(env: Env):
    answer = await env.send(
        whatsapp("447700900001", client_ref="order-1", failover=[sms("447700900006")])
    )
    await env.advance(1000)

    assert env.statuses() == [
        ("sms", "delivered"),
        ("sms", "submitted"),
        ("whatsapp", "rejected"),
    ]
    view = await env.workflow(answer["workflow_id"])
    assert view["status"] == "completed"
    assert [(m["channel"], m["status"]) for m in view["messages"]] == [
        ("whatsapp", "rejected"),
        ("sms", "delivered"),
    ]
    assert env.arrived("/final") == []  # v1 has no final report


async def test_undeliverable_fails_over_too_and_the_last_failure_ends_in_error(env: Env):
    answer = await env.send(whatsapp("447700900002", failover=[sms("447700900001")]))
    await env.advance(1000)

    view = await env.workflow(answer["workflow_id"])
    assert [(m["channel"], m["status"]) for m in view["messages"]] == [
        ("whatsapp", "undeliverable"),
        ("sms", "rejected"),
    ]
    assert view["status"] == "error"


async def test_a_delivered_message_never_sends_its_failover(env: Env):
    # The sandbox delivers and never reads a number ending in 3: v1 fails over on a
    # rejection only, so however long it waits, the SMS is never sent.
    answer = await env.send(whatsapp("447700900003", failover=[sms("447700900006")]))
    await env.advance(1000)
    await env.advance(3_600_000)

    view = await env.workflow(answer["workflow_id"])
    assert view["status"] == "completed"
    assert [m["channel"] for m in view["messages"]] == ["whatsapp"]
    assert env.statuses() == [("whatsapp", "delivered"), ("whatsapp", "submitted")]


async def test_the_opendispatch_extension_fails_over_on_a_missed_condition(env: Env):
    # OpenDispatch's extension: not read within 60 s, the SMS goes (as Dispatch's failover).
    first = whatsapp("447700900003", opendispatch={"expiry_time": 60, "condition_status": "read"})
    answer = await env.send({**first, "failover": [sms("447700900006")]})
    await env.advance(59_999)
    assert [m["channel"] for m in (await env.workflow(answer["workflow_id"]))["messages"]] == [
        "whatsapp"
    ]

    await env.advance(1)
    await env.advance(1000)

    view = await env.workflow(answer["workflow_id"])
    assert [(m["channel"], m["status"]) for m in view["messages"]] == [
        ("whatsapp", "delivered"),
        ("sms", "delivered"),
    ]
    assert view["status"] == "completed"


# -- status webhooks ------------------------------------------------------------------------


async def test_status_webhooks_are_v1_shaped_signed_and_linked_to_the_workflow(env: Env):
    answer = await env.send(
        whatsapp(
            "447700900001",
            client_ref="order-1",
            failover=[sms("447700900006", client_ref="order-1-sms")],
        )
    )
    await env.advance(1000)

    by_status = {(w.json["channel"], w.json["status"]): w for w in env.arrived()}
    rejected = by_status[("whatsapp", "rejected")]
    claims = verify_webhook(
        rejected.headers["authorization"],
        rejected.body,
        signature_secret=env.credentials.signature_secret,
    )
    assert claims["application_id"] == env.credentials.application_id
    body = rejected.json
    assert list(body) == [
        "message_uuid",
        "to",
        "from",
        "timestamp",
        "status",
        "error",
        "client_ref",
        "channel",
        "workflow_id",
    ]
    assert body["message_uuid"] == answer["message_uuid"]
    assert (body["to"], body["from"]) == ("447700900001", SENDER)
    assert body["client_ref"] == "order-1"
    assert body["workflow_id"] == answer["workflow_id"]
    assert body["error"]["type"] == "https://developer.vonage.com/api-errors/messages#1300"
    assert body["error"]["title"] == 1300
    assert "sandbox" in body["error"]["detail"]
    delivered = by_status[("sms", "delivered")].json
    assert (delivered["to"], delivered["from"]) == ("447700900006", "Shop")
    assert delivered["client_ref"] == "order-1-sms"
    assert delivered["usage"] == {"currency": "EUR", "price": "0.0070"}
    assert delivered["workflow_id"] == answer["workflow_id"]
    assert delivered["timestamp"].endswith("Z")


async def test_a_single_message_status_has_no_workflow_id(env: Env):
    await env.send(sms("447700900006"))
    await env.advance(1000)

    assert env.statuses() == [("sms", "delivered"), ("sms", "submitted")]
    assert all("workflow_id" not in w.json for w in env.arrived())
    assert all("client_ref" not in w.json for w in env.arrived())


async def test_each_message_webhook_url_receives_its_own_statuses(env: Env):
    url = f"{env.receiver.url}/per-message"
    await env.send(whatsapp("447700900001", webhook_url=url, failover=[sms("447700900006")]))
    await env.advance(1000)

    assert [w.json["status"] for w in env.arrived("/per-message")] == ["rejected"]
    assert env.statuses("/status") == [("sms", "delivered"), ("sms", "submitted")]


async def test_webhook_version_v0_1_gets_the_v0_1_shape(env: Env):
    await env.send(
        {
            **sms("447700900006"),
            "channel": "viber_service",
            "from": "Shop",
            "webhook_version": "v0.1",
        }
    )
    await env.advance(1000)
    await env.advance(1000)

    bodies = [w.json for w in env.arrived()]
    assert sorted(body["status"] for body in bodies) == ["delivered", "read", "submitted"]
    for body in bodies:
        assert body["to"] == {"type": "viber_service_msg", "number": "447700900006"}
        assert body["from"] == {"type": "viber_service_msg", "id": "Shop"}
        assert "channel" not in body


async def test_viber_and_messenger_statuses_use_v1_channel_names_and_plain_addresses(env: Env):
    await env.send(
        {
            "channel": "messenger",
            "message_type": "text",
            "to": "user-1",
            "from": "page-1",
            "text": "hi",
            "failover": [
                {
                    **sms("447700900006"),
                    "channel": "viber_service",
                    "from": "Shop",
                    "to": "447700900005",
                }
            ],
        }
    )
    await env.advance(1000)
    await env.advance(1000)

    assert {(w.json["channel"], w.json["to"], w.json["from"]) for w in env.arrived()} == {
        ("messenger", "user-1", "page-1"),
        ("viber_service", "447700900005", "Shop"),
    }
    assert env.statuses() == [
        ("messenger", "rejected"),
        ("viber_service", "delivered"),
        ("viber_service", "read"),
        ("viber_service", "submitted"),
    ]


# -- the same API as v0.1 otherwise ---------------------------------------------------------


async def test_an_idempotency_key_repeat_gets_the_first_answer(env: Env):
    body = whatsapp("447700900005", failover=[sms("447700900006")])
    first = await env.send(body, **{"Idempotency-Key": "k-1"})

    response = await env.client.post(
        "/v1/messages",
        json=body,
        headers={**env.credentials.basic(), "Idempotency-Key": "k-1"},
    )

    assert response.status_code == 202
    assert response.json() == first
    assert response.headers["idempotent-replayed"] == "true"


async def test_the_workflow_list_finds_v1_workflows_by_channel(env: Env):
    answer = await env.send(whatsapp("447700900005", failover=[sms("447700900006")]))

    response = await env.client.get("/v0.1/dispatch?channel=sms", headers=env.credentials.basic())

    listed = response.json()["_embedded"]["workflows"]
    assert [w["dispatch_uuid"] for w in listed] == [answer["workflow_id"]]


# -- errors in v1's words, and nothing stored -------------------------------------------------

GENERAL = "https://developer.vonage.com/api-errors"


@pytest.mark.parametrize(
    ("headers", "content", "status", "type_", "title"),
    [
        ({}, json.dumps(sms("447700900006")), 401, f"{GENERAL}#unauthorized", "Unauthorized"),
        (
            None,
            json.dumps(sms("+447700900006")),
            422,
            f"{GENERAL}/messages#1150",
            "Invalid params",
        ),
        (None, "{not json", 422, f"{GENERAL}/messages#1150", "Invalid params"),
        (None, "", 422, f"{GENERAL}/messages#1150", "Invalid params"),
        (
            {"Content-Type": "text/plain"},
            json.dumps(sms("447700900006")),
            415,
            f"{GENERAL}#unsupported-media-type",
            "Unsupported Media Type",
        ),
    ],
)
async def test_refusals_are_rfc_7807_with_vonage_v1_types_and_store_nothing(
    api: Api,
    headers: dict[str, str] | None,
    content: str,
    status: int,
    type_: str,
    title: str,
):
    # None: an application's credentials and JSON; {}: no credentials at all.
    if headers is None:
        sent_headers = {**api.alice.basic(), "Content-Type": "application/json"}
    else:
        sent_headers = {**(api.alice.basic() if headers else {}), **headers}

    response = await api.client.post("/v1/messages", content=content, headers=sent_headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["title"]) == (type_, title)
    assert body["instance"] == response.headers["x-request-id"]
    if status == 422:
        assert body["invalid_parameters"], body
    listed = await api.client.get("/v0.1/dispatch", headers=api.alice.basic())
    assert listed.json()["_embedded"]["workflows"] == []


async def test_an_invalid_field_is_named_as_v1_names_it(api: Api):
    body = whatsapp("447700900005", failover=[sms("447700900006", text="x" * 1001)])

    response = await api.client.post("/v1/messages", json=body, headers=api.alice.basic())

    assert response.status_code == 422
    assert response.json()["invalid_parameters"] == [
        {"name": "failover[0].text", "reason": "must be at most 1000 characters for sms"}
    ]


async def test_other_methods_are_refused_in_v1_words(api: Api):
    response = await api.client.get("/v1/messages", headers=api.alice.basic())

    assert response.status_code == 405
    assert response.json()["type"] == f"{GENERAL}#method-not-allowed"
    assert response.headers["allow"] == "POST"


async def test_past_the_rate_limit_v1_gets_vonages_rate_limit_hit(database: TestDatabase):
    clock = ManualClock(start_ms=int(time.time() * 1000))
    app = DispatchApp(Settings(database=database.url, rate_limit=1), clock=clock, run_workers=False)
    await app.startup()
    try:
        shop = AppCredentials.from_provisioned(
            await provision_application(app.store, name="shop", status_url="http://x.test/")
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            statuses = [
                (await client.post("/v1/messages", json=sms("447700900006"), headers=shop.basic()))
                for _ in range(2)
            ]
    finally:
        await app.shutdown()

    assert [response.status_code for response in statuses] == [202, 429]
    refused = statuses[1]
    assert refused.json()["type"] == f"{GENERAL}#rate-limit"
    assert refused.json()["title"] == "Rate Limit Hit"
    assert refused.headers["retry-after"] == "1"
    assert await database.scalar("SELECT count(*) FROM workflows") == 1
