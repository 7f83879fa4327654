"""What the dashboard's pages say, through the ASGI app with a driven clock: a timeline for
each way a step ends (condition met, failed over on a rejection or at its deadline, the
workflow's error), a condition that can never be met, the list's filters as typed (and
refused when they make no sense), and the overview's chart."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.operators import secret_hash
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from opendispatch.store.operators import OperatorStore
from opendispatch.timefmt import iso_ms
from tests.dashboard import inputs_of
from tests.databases import TestDatabase
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

READ_IN_15 = {"expiry_time": 15, "condition_status": "read"}


@dataclass
class Env:
    app: DispatchApp
    client: httpx.AsyncClient
    clock: ManualClock
    receiver: WebhookReceiver
    shop: AppCredentials

    async def workflow(self, steps: list[dict[str, Any]]) -> str:
        response = await self.client.post(
            "/v0.1/dispatch",
            json={"template": "failover", "workflow": steps},
            headers=self.shop.basic(),
        )
        assert response.status_code == 202, response.text
        await self.app.runtime.settled()
        return str(response.json()["dispatch_uuid"])

    async def advance(self, ms: int) -> None:
        await self.clock.advance(ms)
        await self.app.runtime.settled()

    async def text(self, path: str, status: int = 200) -> str:
        """A page's text as a person reads it: tags dropped, spaces collapsed."""
        response = await self.client.get(path)
        assert response.status_code == status, response.text
        inline = re.sub(r"</?(span|b|a)\b[^>]*>", "", response.text)
        return " ".join(unescape(re.sub(r"<[^>]+>", " ", inline)).split())


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    with WebhookReceiver(status=200) as receiver:
        app = DispatchApp(
            Settings(
                database=database.url,
                allow_private_webhooks=True,
                sandbox_delivered_after_ms=1000,
                sandbox_read_after_ms=1000,
            ),
            clock=clock,
        )
        await app.startup()
        shop = await provision_application(app.store, name="shop", status_url=receiver.url)
        await OperatorStore(app.store.connector).create(
            "alice", token_hash=secret_hash("the-token"), now_ms=clock.now_ms()
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            form = await client.get("/dashboard/login")
            signed_in = await client.post(
                "/dashboard/login",
                data={
                    "login_token": inputs_of(form.text)["login_token"],
                    "operator": "alice",
                    "token": "the-token",
                },
            )
            assert signed_in.status_code == 303
            yield Env(app, client, clock, receiver, AppCredentials.from_provisioned(shop))
        await app.shutdown()


def shown(unix_ms: int) -> str:
    return iso_ms(unix_ms).replace("T", " ").removesuffix("Z")


async def test_a_step_not_read_by_its_deadline_fails_over_and_the_next_one_completes(
    env: Env,
) -> None:
    sent = env.clock.now_ms()
    dispatch_uuid = await env.workflow(
        [step("whatsapp", "447700900003", READ_IN_15), step("sms", "447700900003")]
    )
    await env.advance(2_000)  # delivered at +1 s, never read
    page = await env.text(f"/dashboard/workflows/{dispatch_uuid}")
    assert "Step 1: whatsapp to 447700900003" in page
    assert f"Waits for read within 15 s. Deadline {shown(sent + 15_000)}" in page
    assert "waiting for read until the deadline" in page
    await env.advance(13_000)  # the deadline: the SMS goes out
    await env.advance(1_000)  # and is delivered
    page = await env.text(f"/dashboard/workflows/{dispatch_uuid}")
    assert "read not reached by the deadline: failed over to step 2" in page
    assert f"Deadline {shown(sent + 15_000)} (passed)" in page
    assert "Step 2: sms to 447700900003" in page
    assert "Waits for delivered within 86400 s (the final-status timeout)" in page
    assert f"delivered at {shown(sent + 16_000)}: the workflow completed" in page
    for seen in ("step 1 (whatsapp): submitted", "step 2 (sms): delivered", "final report:"):
        assert seen in page
    assert "Price 0.0140 EUR" in page  # whatsapp's sandbox price


async def test_a_rejection_fails_over_at_once_and_a_last_rejection_is_the_error(
    env: Env,
) -> None:
    sent = env.clock.now_ms()
    dispatch_uuid = await env.workflow(
        [step("whatsapp", "447700900001", READ_IN_15), step("sms", "447700900001")]
    )
    page = await env.text(f"/dashboard/workflows/{dispatch_uuid}")
    assert f"rejected at {shown(sent)}: failed over to step 2" in page
    assert f"rejected at {shown(sent)}: the workflow ended in error" in page
    assert "Error 1300:" in page


async def test_a_messages_v1_failover_is_shown_like_any_workflow(env: Env) -> None:
    # POST /v1/messages: WhatsApp rejected, then SMS delivered; no final report (v1 has none).
    sent = env.clock.now_ms()
    sms = {"channel": "sms", "message_type": "text", "to": "447700900003", "from": "Shop"}
    response = await env.client.post(
        "/v1/messages",
        json={
            "channel": "whatsapp",
            "message_type": "text",
            "to": "447700900001",
            "from": "447700900000",
            "text": "Your code",
            "failover": [{**sms, "text": "Your code"}],
        },
        headers=env.shop.basic(),
    )
    assert response.status_code == 202, response.text
    workflow_id = response.json()["workflow_id"]
    await env.app.runtime.settled()
    await env.advance(1_000)

    page = await env.text(f"/dashboard/workflows/{workflow_id}")
    assert "Step 1: whatsapp to 447700900001" in page
    assert f"rejected at {shown(sent)}: failed over to step 2" in page
    assert "Step 2: sms to 447700900003" in page
    assert f"delivered at {shown(sent + 1_000)}: the workflow completed" in page
    listed = await env.text("/dashboard/workflows?channel=sms")
    assert workflow_id in listed


async def test_a_read_condition_on_sms_is_flagged_as_never_met(env: Env) -> None:
    dispatch_uuid = await env.workflow(
        [step("sms", "447700900004", READ_IN_15), step("whatsapp", "447700900004")]
    )
    page = await env.text(f"/dashboard/workflows/{dispatch_uuid}")
    assert (
        "sms never reports read, so this condition can never be met: this message always "
        "fails over to the next once its expiry_time passes"
    ) in page
    assert page.count("can never be met") == 1  # not said of the whatsapp step


async def test_the_list_reads_filters_as_typed_and_refuses_ones_that_make_no_sense(
    env: Env,
) -> None:
    silent = await env.workflow([step("sms", "447700900004")])
    other = await env.workflow([step("sms", "447700900009")])
    page = await env.text("/dashboard/workflows?recipient=%2B44+7700+900004")
    assert silent in page
    assert other not in page
    page = await env.text("/dashboard/workflows?channel=whatsapp")
    assert "No workflow matches" in page
    refused = await env.text(
        "/dashboard/workflows?status=lost&channel=fax&from=yesterday&application=nope", 400
    )
    assert "status: one of in_progress, completed, error, cancelled" in refused
    assert "channel: one of" in refused
    assert "from: a date and time such as 2026-11-30T18:00 (UTC)" in refused
    assert "application: no such application" in refused
    unknown = await env.client.get("/dashboard/workflows/01a22dc2-e1a7-7a8b-bdc6-608bfc491bbf")
    assert unknown.status_code == 404
    assert "There is no workflow" in unknown.text


async def test_the_overview_draws_each_period_and_counts_the_queues(env: Env) -> None:
    await env.workflow([step("sms", "447700900009")])
    await env.workflow([step("sms", "447700900001")])
    await env.workflow([step("whatsapp", "447700900004", READ_IN_15), step("sms", "447700900009")])
    await env.advance(3_000)
    response = await env.client.get("/dashboard?window=1h")
    assert response.status_code == 200
    svg = response.text[response.text.index("<svg") : response.text.index("</svg>")]
    titles = re.findall(r"<title>([^<]+)</title>", svg)
    assert [t.split(": ", 1)[1] for t in titles] == ["1 completed", "1 error", "1 in progress"]
    page = await env.text("/dashboard?window=1h")
    assert "3 accepted 1 completed 1 error 0 cancelled 1 in progress" in page
    assert "Timers (running workflows' deadlines) 1" in page
    assert "whatsapp 1 0" in page  # one message, not failed over (yet)


async def test_a_cancelled_workflow_says_when_and_that_no_further_step_is_sent(env: Env) -> None:
    sent = env.clock.now_ms()
    dispatch_uuid = await env.workflow(
        [step("whatsapp", "447700900004", READ_IN_15), step("sms", "447700900004")]
    )
    page = await env.client.get(f"/dashboard/workflows/{dispatch_uuid}")
    assert "Cancel workflow" in page.text
    await env.advance(5_000)
    cancelled = await env.client.post(
        f"/dashboard/workflows/{dispatch_uuid}/cancel", data={"csrf": inputs_of(page.text)["csrf"]}
    )
    assert cancelled.status_code == 303
    await env.advance(20_000)  # past the first step's deadline: still no SMS
    text = await env.text(f"/dashboard/workflows/{dispatch_uuid}?notice=cancelled")
    assert "The workflow was cancelled: no further step will be sent." in text
    assert f"cancelled at {shown(sent + 5_000)}: no further step is sent" in text
    assert "not sent: the workflow ended first" in text
    assert "final report: cancelled" in text
    assert "Cancel workflow" not in text
