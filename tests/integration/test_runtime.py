"""Workflows run to their final report: the ASGI app, its runtime and workers, a real SQLite
file, the sandbox provider and a real HTTP webhook receiver; time is driven, never slept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from opendispatch.timefmt import iso_ms, parse_iso_ms
from opendispatch.webhooks.signing import verify_webhook
from tests.databases import TestDatabase
from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import AppCredentials

pytestmark = pytest.mark.anyio

FROM_WA = {"type": "whatsapp", "number": "447700900000"}
FROM_SMS = {"type": "sms", "number": "447700900000"}


def whatsapp_then_sms(
    whatsapp_to: str, sms_to: str, *, condition: str = "read", expiry: int = 600
) -> dict[str, Any]:
    return {
        "template": "failover",
        "workflow": [
            {
                "to": {"type": "whatsapp", "number": whatsapp_to},
                "from": FROM_WA,
                "message": {"content": {"type": "text", "text": "Your code is 1234"}},
                "failover": {"expiry_time": expiry, "condition_status": condition},
            },
            {
                "to": {"type": "sms", "number": sms_to},
                "from": FROM_SMS,
                "message": {"content": {"type": "text", "text": "Your code is 1234"}},
            },
        ],
    }


def sms_only(to: str) -> dict[str, Any]:
    return {"template": "failover", "workflow": [whatsapp_then_sms("1", to)["workflow"][1]]}


@dataclass
class Env:
    app: DispatchApp
    clock: ManualClock
    client: httpx.AsyncClient
    receiver: WebhookReceiver
    credentials: AppCredentials
    database: TestDatabase

    async def post(self, body: dict[str, Any]) -> str:
        response = await self.client.post(
            "/v0.1/dispatch", json=body, headers=self.credentials.basic()
        )
        assert response.status_code == 202, response.text
        await self.app.runtime.settled()
        return str(response.json()["dispatch_uuid"])

    async def advance(self, ms: int) -> None:
        await self.clock.advance(ms)
        await self.app.runtime.settled()

    async def view(self, dispatch_uuid: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v0.1/dispatch/{dispatch_uuid}", headers=self.credentials.basic()
        )
        assert response.status_code == 200
        return dict(response.json())

    def webhooks(self, dispatch_uuid: str, kind: str | None = None) -> list[ReceivedWebhook]:
        found = []
        for webhook in self.receiver.received:
            body = webhook.json
            owner = body.get("dispatch_uuid") or body["_links"]["workflow"]["dispatch_uuid"]
            is_final = "template" in body
            if owner == dispatch_uuid and (kind is None or (kind == "final") == is_final):
                found.append(webhook)
        return found

    def statuses(self, dispatch_uuid: str) -> list[tuple[str, str]]:
        """(channel, status) of every status webhook of the workflow, in arrival order."""
        return [
            (webhook.json["to"]["type"], webhook.json["status"])
            for webhook in self.webhooks(dispatch_uuid, "status")
        ]

    def final(self, dispatch_uuid: str) -> dict[str, Any]:
        finals = self.webhooks(dispatch_uuid, "final")
        assert len(finals) == 1, [w.summary() for w in finals]
        return dict(finals[0].json)

    async def sandbox_sends(self) -> dict[str, int]:
        rows = await self.database.rows("SELECT message_uuid, attempts FROM sandbox_sends")
        return {message_uuid: attempts for message_uuid, attempts in rows}


EnvFactory = Callable[..., Any]


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    async for made in _env(database):
        yield made


async def _env(database: TestDatabase, **settings: Any) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver() as receiver:
        app = DispatchApp(
            Settings(database=database.url, allow_private_webhooks=True, **settings), clock=clock
        )
        await app.startup()
        provisioned = await provision_application(
            app.store,
            name="shop",
            status_url=f"{receiver.url}/status",
            final_report_url=f"{receiver.url}/final",
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Env(
                app, clock, client, receiver, AppCredentials.from_provisioned(provisioned), database
            )
        await app.shutdown()


# -- the failover rules, end to end -----------------------------------------------------------


async def test_read_in_time_completes_without_sending_the_sms(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900005", "447700900005"))
    assert env.statuses(uuid) == [("whatsapp", "submitted")]
    await env.advance(1000)
    await env.advance(1000)
    assert env.statuses(uuid) == [
        ("whatsapp", "submitted"),
        ("whatsapp", "delivered"),
        ("whatsapp", "read"),
    ]
    final = env.final(uuid)
    assert final["status"] == "completed"
    assert [m["channel"] for m in final["_links"]["messages"]] == ["whatsapp"]
    assert len(await env.sandbox_sends()) == 1
    assert (await env.view(uuid))["status"] == "completed"


async def test_delivered_but_unread_whatsapp_fails_over_to_sms_at_expiry(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900003", "447700900006", expiry=600))
    await env.advance(2000)
    assert env.statuses(uuid) == [("whatsapp", "submitted"), ("whatsapp", "delivered")]
    assert env.webhooks(uuid, "final") == []
    await env.advance(597_999)  # one millisecond before the expiry: nothing yet
    assert len(await env.sandbox_sends()) == 1
    await env.advance(1)
    assert env.statuses(uuid)[-1] == ("sms", "submitted")
    await env.advance(1000)
    final = env.final(uuid)
    assert final["status"] == "completed"
    assert [(m["channel"], m["status"]) for m in final["_links"]["messages"]] == [
        ("whatsapp", "delivered"),
        ("sms", "delivered"),
    ]


async def test_rejected_at_submit_fails_over_at_once_without_waiting(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900001", "447700900009"))
    # No time has passed: the rejection alone moved the workflow to the SMS. (Status
    # webhooks are delivered concurrently: their arrival order is not promised.)
    assert sorted(env.statuses(uuid)) == [("sms", "submitted"), ("whatsapp", "rejected")]
    rejected = env.webhooks(uuid, "status")[0].json
    assert rejected["error"]["code"] == 1300
    await env.advance(1000)
    assert env.final(uuid)["status"] == "completed"


async def test_undeliverable_last_message_ends_in_error(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900001", "447700900002"))
    await env.advance(1000)
    assert env.statuses(uuid)[-1] == ("sms", "undeliverable")
    final = env.final(uuid)
    assert final["status"] == "error"
    assert [m["status"] for m in final["_links"]["messages"]] == ["rejected", "undeliverable"]


async def test_condition_delivered_is_met_by_delivered(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900003", "447700900003", condition="delivered"))
    await env.advance(1000)
    assert env.final(uuid)["status"] == "completed"
    assert len(await env.sandbox_sends()) == 1


async def test_silent_last_message_ends_in_error_at_the_final_status_deadline(
    database: TestDatabase,
):
    async for env in _env(database, final_status_timeout_s=3600):
        uuid = await env.post(sms_only("447700900004"))
        await env.advance(3_599_999)
        assert env.webhooks(uuid, "final") == []
        assert (await env.view(uuid))["next_deadline"] is not None
        await env.advance(1)
        final = env.final(uuid)
        assert final["status"] == "error"
        assert final["_links"]["messages"][0]["status"] == "submitted"
        assert (await env.view(uuid))["next_deadline"] is None


async def test_spec_example_single_message_with_failover_completes_on_its_condition(env: Env):
    body = sms_only("447700900003")
    body["workflow"][0]["failover"] = {"expiry_time": 60, "condition_status": "delivered"}
    uuid = await env.post(body)
    await env.advance(1000)
    assert env.final(uuid)["status"] == "completed"


async def test_single_message_with_read_condition_that_is_never_read_ends_in_error(env: Env):
    body = whatsapp_then_sms("447700900003", "1", expiry=60)
    body["workflow"].pop()
    uuid = await env.post(body)
    await env.advance(59_999)
    assert env.webhooks(uuid, "final") == []
    await env.advance(1)
    assert env.final(uuid)["status"] == "error"


async def test_late_read_after_failover_is_forwarded_but_does_not_change_outcome(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900003", "447700900003", expiry=60))
    await env.advance(60_000)
    await env.advance(1000)
    assert env.final(uuid)["status"] == "completed"
    whatsapp_uuid = (await env.view(uuid))["messages"][0]["message_uuid"]
    injected = await env.client.post(
        f"/v0.1/sandbox/messages/{whatsapp_uuid}/status",
        json={"status": "read", "usage": {"price": "0.0100", "currency": "EUR"}},
        headers=env.credentials.basic(),
    )
    assert injected.status_code == 202
    await env.app.runtime.settled()
    assert env.statuses(uuid)[-1] == ("whatsapp", "read")
    env.final(uuid)  # still exactly one final report
    view = await env.view(uuid)
    assert view["status"] == "completed"
    # The late status is counted: whatsapp now costs 0.0100, the sms 0.0070.
    assert Decimal(view["usage"]["price"]) == Decimal("0.0170")


async def test_usage_is_the_sum_of_the_messages_prices(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900003", "447700900003", expiry=60))
    await env.advance(60_000)  # expiry: the sms is sent now...
    await env.advance(1000)  # ...and delivered a second later
    final = env.final(uuid)
    prices = [Decimal(m["usage"]["price"]) for m in final["_links"]["messages"]]
    assert prices == [Decimal("0.0140"), Decimal("0.0070")]
    assert Decimal(final["usage"]["price"]) == sum(prices)
    assert final["usage"]["currency"] == "EUR"


# -- webhooks -------------------------------------------------------------------------------


async def test_webhooks_are_signed_as_vonage_signs_messages_webhooks(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900001", "447700900003", expiry=60))
    assert len(env.webhooks(uuid)) == 2  # rejected, submitted: signed at the real time
    for webhook in env.webhooks(uuid):
        claims = verify_webhook(
            webhook.headers["authorization"],
            webhook.body,
            signature_secret=env.credentials.signature_secret,
        )
        assert claims["iss"] == "Vonage"
        assert claims["api_key"] == env.credentials.api_key
        assert claims["application_id"] == env.credentials.application_id
        assert webhook.headers["webhook-id"]
    status = env.webhooks(uuid, "status")[0]
    assert status.path == "/status"
    body = status.json
    assert set(body) >= {"message_uuid", "to", "from", "timestamp", "status", "_links"}
    assert body["_links"]["workflow"] == {"dispatch_uuid": uuid, "href": f"/workflows/{uuid}"}
    assert body["timestamp"].endswith("Z")
    assert len(body["timestamp"]) == 24
    await env.advance(1000)
    final = env.webhooks(uuid, "final")[0]
    assert final.path == "/final"
    assert len({w.headers["webhook-id"] for w in env.webhooks(uuid)}) == len(env.webhooks(uuid))


async def test_final_report_waits_for_the_earlier_status_webhooks(env: Env):
    env.receiver.fail_next(3, status=503)
    uuid = await env.post(whatsapp_then_sms("447700900001", "447700900006"))
    await env.advance(1000)  # sms delivered: the workflow is complete
    assert (await env.view(uuid))["status"] == "completed"
    for _ in range(10):
        await env.advance(10_000)  # retries become due
    arrived = [w for w in env.webhooks(uuid) if w.answered_status == 200]
    kinds = ["final" if "template" in w.json else w.json["status"] for w in arrived]
    assert kinds[-1] == "final"
    assert sorted(kinds[:-1]) == ["delivered", "rejected", "submitted"]


async def test_failing_receiver_is_retried_with_backoff_then_marked_dead(database: TestDatabase):
    async for env in _env(database, webhook_retry_period_s=120):
        env.receiver.respond_with(503)
        uuid = await env.post(sms_only("447700900001"))  # rejected at once: two webhooks
        webhook = (await env.view(uuid))["webhooks"][0]
        assert webhook["state"] == "pending"
        assert webhook["attempts"] == 1
        assert webhook["last_error"] == "HTTP 503"
        assert webhook["next_attempt_at"] is not None
        for _ in range(30):
            await env.advance(10_000)
        webhooks = (await env.view(uuid))["webhooks"]
        assert [w["state"] for w in webhooks] == ["dead", "dead"]
        attempts = webhooks[0]["attempts"]
        assert 4 <= attempts <= 10  # 1 s, 2 s, 4 s ... within two minutes, not hammering
        assert webhooks[0]["next_attempt_at"] is None
        received = len(env.receiver.received)
        await env.advance(600_000)
        assert len(env.receiver.received) == received  # dead means no more attempts


async def test_get_shows_messages_history_usage_and_webhook_delivery(env: Env):
    uuid = await env.post(whatsapp_then_sms("447700900001", "447700900005"))
    await env.advance(1000)
    view = await env.view(uuid)
    first, second = view["messages"]
    assert (first["channel"], first["status"]) == ("whatsapp", "rejected")
    assert first["error"]["code"] == 1300
    assert first["usage"] is None
    assert [h["status"] for h in second["history"]] == ["submitted", "delivered"]
    assert second["usage"] == {"price": "0.0070", "currency": "EUR"}
    assert view["usage"]["price"] == "0.0070"
    assert all(w["state"] == "delivered" for w in view["webhooks"])
    assert [w["kind"] for w in view["webhooks"]][-1] == "final_report"
    message = await env.client.get(
        second["_links"]["self"]["href"], headers=env.credentials.basic()
    )
    assert message.json()["message_uuid"] == second["message_uuid"]


# -- the sandbox ----------------------------------------------------------------------------


async def test_injected_statuses_move_a_silent_message(env: Env):
    uuid = await env.post(sms_only("447700900004"))
    message_uuid = (await env.view(uuid))["messages"][0]["message_uuid"]
    stamped = iso_ms(env.clock.now_ms() + 1500)  # after its submission, before now + 5 min
    response = await env.client.post(
        f"/v0.1/sandbox/messages/{message_uuid}/status",
        json={"status": "delivered", "timestamp": stamped},
        headers=env.credentials.basic(),
    )
    assert response.status_code == 202
    await env.app.runtime.settled()
    assert env.final(uuid)["status"] == "completed"
    delivered = env.webhooks(uuid, "status")[-1].json
    assert delivered["timestamp"] == stamped


async def test_an_injected_status_stamped_before_its_message_was_submitted_is_refused(env: Env):
    uuid = await env.post(sms_only("447700900004"))  # submitted, then silent
    message = (await env.view(uuid))["messages"][0]
    [submitted] = message["history"]
    assert submitted["status"] == "submitted"
    earlier = iso_ms(parse_iso_ms(submitted["timestamp"]) - 1)
    inject = f"/v0.1/sandbox/messages/{message['message_uuid']}/status"
    response = await env.client.post(
        inject, json={"status": "read", "timestamp": earlier}, headers=env.credentials.basic()
    )
    assert response.status_code == 400
    [problem] = response.json()["invalid_parameters"]
    assert problem["name"] == "timestamp"
    assert submitted["timestamp"] in problem["reason"]
    await env.app.runtime.settled()
    assert env.statuses(uuid) == [("sms", "submitted")]
    assert (await env.view(uuid))["messages"][0]["history"] == [submitted]
    # Stamped at the submission itself: accepted, and the history stays in time order.
    response = await env.client.post(
        inject,
        json={"status": "delivered", "timestamp": submitted["timestamp"]},
        headers=env.credentials.basic(),
    )
    assert response.status_code == 202
    await env.app.runtime.settled()
    history = (await env.view(uuid))["messages"][0]["history"]
    assert [entry["status"] for entry in history] == ["submitted", "delivered"]
    assert [entry["timestamp"] for entry in history] == [submitted["timestamp"]] * 2


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"status": "seen"}, "status"),
        ({}, "status"),
        ({"status": "rejected", "error": {"code": "x", "reason": "r"}}, "error.code"),
        ({"status": "delivered", "usage": {"price": "-1"}}, "usage.price"),
        ({"status": "delivered", "colour": "blue"}, "colour"),
        (
            {"status": "delivered", "usage": {"price": "\u0661.\u0665"}},
            "usage.price",
        ),  # Arabic-Indic 1.5
        ({"status": "rejected", "error": {"code": 2**70, "reason": "r"}}, "error.code"),
        ({"status": "rejected", "error": {"code": -1, "reason": "r"}}, "error.code"),
        ({"status": "delivered", "timestamp": "9999-12-31T23:59:59Z"}, "timestamp"),
        ({"status": "delivered", "timestamp": "1970-01-01T00:00:00Z"}, "timestamp"),
        ({"status": "delivered", "timestamp": "yesterday"}, "timestamp"),
    ],
)
async def test_bad_injected_status_is_refused_and_changes_nothing(
    env: Env, body: dict[str, Any], name: str
):
    uuid = await env.post(sms_only("447700900004"))
    message_uuid = (await env.view(uuid))["messages"][0]["message_uuid"]
    response = await env.client.post(
        f"/v0.1/sandbox/messages/{message_uuid}/status", json=body, headers=env.credentials.basic()
    )
    assert response.status_code == 400
    assert response.json()["invalid_parameters"][0]["name"] == name
    await env.app.runtime.settled()
    assert env.statuses(uuid) == [("sms", "submitted")]


async def test_an_injected_status_must_be_sent_as_json(env: Env):
    uuid = await env.post(sms_only("447700900004"))
    message_uuid = (await env.view(uuid))["messages"][0]["message_uuid"]
    response = await env.client.post(
        f"/v0.1/sandbox/messages/{message_uuid}/status",
        content=b'{"status": "delivered"}',
        headers={**env.credentials.basic(), "content-type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json()["title"] == "Unsupported Media Type"
    await env.app.runtime.settled()
    assert env.statuses(uuid) == [("sms", "submitted")]


async def test_injection_can_be_switched_off(database: TestDatabase):
    async for env in _env(database, sandbox_injection=False):
        uuid = await env.post(sms_only("447700900004"))
        message_uuid = (await env.view(uuid))["messages"][0]["message_uuid"]
        response = await env.client.post(
            f"/v0.1/sandbox/messages/{message_uuid}/status",
            json={"status": "delivered"},
            headers=env.credentials.basic(),
        )
        assert response.status_code == 403
        assert "--no-sandbox-injection" in response.json()["detail"]
        await env.app.runtime.settled()
        assert env.statuses(uuid) == [("sms", "submitted")]


async def test_injection_into_another_applications_message_is_not_found(env: Env):
    uuid = await env.post(sms_only("447700900004"))
    message_uuid = (await env.view(uuid))["messages"][0]["message_uuid"]
    other = await provision_application(env.app.store, name="other", status_url="http://x.test/")
    response = await env.client.post(
        f"/v0.1/sandbox/messages/{message_uuid}/status",
        json={"status": "delivered"},
        headers=AppCredentials.from_provisioned(other).basic(),
    )
    assert response.status_code == 404


async def test_sandbox_outcomes_by_last_digit(env: Env):
    expected = {
        "1": [("sms", "rejected")],
        "2": [("sms", "submitted"), ("sms", "undeliverable")],
        "3": [("sms", "submitted"), ("sms", "delivered")],
        "4": [("sms", "submitted")],
        "7": [("sms", "submitted"), ("sms", "delivered")],
    }
    uuids = {digit: await env.post(sms_only(f"44770090000{digit}")) for digit in expected}
    await env.advance(5000)
    for digit, statuses in expected.items():
        assert env.statuses(uuids[digit]) == statuses, digit
    wa = await env.post(whatsapp_then_sms("447700900007", "1"))
    await env.advance(1000)
    await env.advance(1000)
    assert env.statuses(wa) == [
        ("whatsapp", "submitted"),
        ("whatsapp", "delivered"),
        ("whatsapp", "read"),
    ]


# -- nothing lost, nothing twice ----------------------------------------------------------------


async def test_a_restart_resumes_timers_and_sends_no_step_twice(database: TestDatabase):
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver() as receiver:
        settings = Settings(database=database.url, allow_private_webhooks=True)
        first = DispatchApp(settings, clock=clock)
        await first.startup()
        provisioned = await provision_application(
            first.store, name="shop", status_url=f"{receiver.url}/s"
        )
        credentials = AppCredentials.from_provisioned(provisioned)
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/v0.1/dispatch",
                json=whatsapp_then_sms("447700900003", "447700900006", expiry=60),
                headers=credentials.basic(),
            )
            uuid = response.json()["dispatch_uuid"]
        await first.runtime.settled()
        await clock.advance(1000)
        await first.runtime.settled()
        await first.shutdown()  # the WhatsApp is delivered; its expiry is pending

        second = DispatchApp(settings, clock=clock)
        await second.startup()
        await clock.advance(59_000)  # the expiry, now due, fires in the new process
        await second.runtime.settled()
        await clock.advance(1000)
        await second.runtime.settled()
        await second.shutdown()
    finals = [w.json for w in receiver.received if w.json.get("dispatch_uuid") == uuid]
    assert [f["status"] for f in finals] == ["completed"]
    attempts = [row[0] for row in await database.rows("SELECT attempts FROM sandbox_sends")]
    assert attempts == [1, 1]


async def test_statuses_that_came_due_while_the_worker_slept_refuse_nothing(env: Env):
    """Overdue after a restart, or a test's clock moved on: not a server falling behind."""
    admission = env.app.runtime.admission
    await admission.stop()  # its intervals are driven here
    await env.post(sms_only("447700900006"))  # the sandbox's `delivered` is due after 1 s
    await env.advance(5000)  # the status, due at 1 s, is applied at 5 s
    for _ in range(50):
        admission.update()
        assert admission.refused_share == 0


async def test_statuses_a_busy_inbox_worker_took_late_make_admission_control_refuse(env: Env):
    admission = env.app.runtime.admission
    await admission.stop()  # its intervals are driven here
    inbox = env.app.runtime.inbox
    for _ in range(5):
        if admission.refused_share > 0:
            break  # refusing: the next POST may be answered 503
        await env.post(sms_only("447700900006"))  # `delivered` due 1 s after each send
        # The clock moves on without waking anyone, and the worker looks again, as one that
        # has been busy all along (never asleep) would: the status waited 4 s for its turn.
        env.clock._now_ms += 5000
        inbox.awake_since_ms = env.clock.now_ms() - 5000
        assert await inbox.run_once()
        admission.update()
    assert admission.refused_share > 0


@asynccontextmanager
async def two_slots_per_application(
    database: TestDatabase, *, concurrency: int, timeout_s: float
) -> AsyncIterator[DispatchApp]:
    """A started server whose applications may each have 2 webhooks in flight."""
    settings = Settings(
        database=database.url,
        allow_private_webhooks=True,
        webhook_per_application=2,
        webhook_concurrency=concurrency,
        webhook_timeout_s=timeout_s,
    )
    app = DispatchApp(settings, clock=ManualClock(start_ms=int(time.time() * 1000)))
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


def most_at_once(receiver: WebhookReceiver) -> int:
    """The most requests the receiver held at once (it answers each `delay_s` after it came)."""
    arrivals = sorted(webhook.received_at for webhook in receiver.received)
    return max(
        sum(1 for other in arrivals if arrival <= other < arrival + receiver.delay_s)
        for arrival in arrivals
    )


async def test_a_lone_busy_application_uses_idle_slots_but_never_the_last_share(
    database: TestDatabase,
):
    """An application's limit (2 here) holds while others have webhooks due; alone, it may use
    the idle slots, all but one application's share (6 in all: 4), which the next comer gets."""
    with WebhookReceiver(delay_s=8.0) as slow, WebhookReceiver() as fast:
        async with two_slots_per_application(database, concurrency=6, timeout_s=15) as app:
            busy = AppCredentials.from_provisioned(
                await provision_application(app.store, name="busy", status_url=slow.url + "/s")
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                # Three endpoints (each message's own webhook_url), two slots each: six could
                # go at once, three times the application's limit.
                for index in range(12):
                    response = await client.post(
                        "/v1/messages",
                        json={
                            "channel": "sms",
                            "message_type": "text",
                            "to": "447700900001",
                            "from": "Shop",
                            "text": "64873",
                            "webhook_url": f"{slow.url}/{'abc'[index % 3]}",
                        },
                        headers=busy.basic(),
                    )
                    assert response.status_code == 202
                for _ in range(1000):
                    if len(slow.received) >= 3:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)
                # Each is answered 8 s after it arrived: more than the application's 2 were held
                # at once, never more than 4 (6 slots, less the share kept free). (Fewer than 4
                # when a third went to an endpoint at its limit: it waits in memory, and counts.)
                assert 2 < most_at_once(slow) <= 4
                first_slow = slow.received[0].received_at
                newcomer = AppCredentials.from_provisioned(
                    await provision_application(app.store, name="new", status_url=fast.url + "/s")
                )
                posted = time.monotonic()
                response = await client.post(
                    "/v0.1/dispatch", json=sms_only("447700900001"), headers=newcomer.basic()
                )
                assert response.status_code == 202
                for _ in range(1000):
                    if len(fast.received) == 2:
                        break
                    await asyncio.sleep(0.01)
                # The newcomer's webhooks went out at once, in the share kept free for it.
                assert len(fast.received) == 2
                assert fast.received[-1].received_at < min(posted + 2, first_slow + slow.delay_s)


async def test_a_slow_receiver_delays_neither_other_applications_nor_workflows(
    database: TestDatabase,
):
    with WebhookReceiver(delay_s=4.0) as slow, WebhookReceiver() as fast:
        async with two_slots_per_application(database, concurrency=4, timeout_s=10) as app:
            slow_app = AppCredentials.from_provisioned(
                await provision_application(app.store, name="slow", status_url=slow.url + "/s")
            )
            fast_app = AppCredentials.from_provisioned(
                await provision_application(app.store, name="fast", status_url=fast.url + "/s")
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                slow_uuids = [
                    (
                        await client.post(
                            "/v0.1/dispatch",
                            json=sms_only("447700900001"),
                            headers=slow_app.basic(),
                        )
                    ).json()["dispatch_uuid"]
                    for _ in range(10)
                ]
                fast_uuid = (
                    await client.post(
                        "/v0.1/dispatch", json=sms_only("447700900001"), headers=fast_app.basic()
                    )
                ).json()["dispatch_uuid"]
                # The fast application's two webhooks arrive while the slow receiver is still
                # holding its first requests (it answers each after 4 s): the slow one fills
                # only its own two slots.
                for _ in range(1000):
                    if len(fast.received) == 2:
                        break
                    await asyncio.sleep(0.01)
                assert len(fast.received) == 2
                assert fast.received[-1].json["dispatch_uuid"] == fast_uuid
                first_slow = slow.received[0].received_at
                assert fast.received[-1].received_at < first_slow + slow.delay_s
                assert len(slow.received) <= 2  # its two slots, still waiting for answers
                # And no workflow waited for a webhook: all of them have ended.
                for dispatch_uuid in slow_uuids:
                    view = await client.get(
                        f"/v0.1/dispatch/{dispatch_uuid}", headers=slow_app.basic()
                    )
                    assert view.json()["status"] == "error"
