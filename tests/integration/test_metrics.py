"""`GET /metrics` after known workloads, on both databases, with driven time and real
webhook receivers: every counter and every histogram's count has exactly the value the
workload implies, and the queue depths are what the database holds.

Everything is read back through prometheus_client's own parser, so the text also parses."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.providers.accounts import new_account
from opendispatch.providers.secret_box import SecretBox
from opendispatch.runtime.clock import ManualClock
from tests.databases import TestDatabase
from tests.fakes.telnyx import FakeTelnyx
from tests.live import SECRET_KEY
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, step

pytestmark = pytest.mark.anyio

READ_600 = {"expiry_time": 600, "condition_status": "read"}
READ_15 = {"expiry_time": 15, "condition_status": "read"}

Labels = tuple[tuple[str, str], ...]


def parse(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of the exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def with_prefix(samples: dict[tuple[str, Labels], float], prefix: str) -> dict[Any, float]:
    """The samples of one metric family: {labels: value}, the name's suffix as `le`'s peer."""
    return {
        (name.removeprefix(prefix), labels): sample
        for (name, labels), sample in samples.items()
        if name.startswith(prefix)
    }


@dataclass
class Env:
    app: DispatchApp
    client: httpx.AsyncClient
    clock: ManualClock
    shop: AppCredentials
    workers: bool

    async def post(self, *workflow: dict[str, Any]) -> str:
        body = {"template": "failover", "workflow": list(workflow)}
        answer = await self.client.post("/v0.1/dispatch", json=body, headers=self.shop.basic())
        assert answer.status_code == 202, answer.text
        await self.settled()
        return str(answer.json()["dispatch_uuid"])

    async def settled(self) -> None:
        if self.workers:
            await self.app.runtime.settled()

    async def advance(self, ms: int) -> None:
        await self.clock.advance(ms)
        await self.settled()

    async def metrics(self, **headers: str) -> dict[tuple[str, Labels], float]:
        answer = await self.client.get("/metrics", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse(answer.text)

    async def fresh_metrics(self) -> dict[tuple[str, Labels], float]:
        """A scrape whose queue depths were read just now. They are read again once a
        second, or later when reading them took long (metrics/queues.py: a busy database
        here), so the clock is moved on a second at a time until they are."""
        for _ in range(10):
            samples = await self.metrics()
            if value(samples, "opendispatch_queue_depths_age_seconds") == 0:
                return samples
            await self.advance(1_000)
        raise AssertionError("the queue depths were not read again within 10 s")


@asynccontextmanager
async def environment(
    database: TestDatabase, status_url: str, *, run_workers: bool = True, **settings: Any
) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    app = DispatchApp(
        Settings(database=database.url, allow_private_webhooks=True, **settings),
        clock=clock,
        run_workers=run_workers,
    )
    await app.startup()
    shop = await provision_application(app.store, name="shop", status_url=status_url)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Env(app, client, clock, AppCredentials.from_provisioned(shop), run_workers)
    finally:
        await app.shutdown()


async def test_counters_and_histograms_count_exactly_a_known_workload(database: TestDatabase):
    with WebhookReceiver() as receiver:
        async with environment(database, f"{receiver.url}/status") as env:
            receiver.fail_next(2, status=503)  # the first two status webhooks fail once
            await env.post(step("whatsapp", "447700900001", READ_600), step("sms", "447700900009"))
            await env.post(step("sms", "447700900009"))  # delivered: completed
            await env.post(step("sms", "447700900002"))  # undeliverable: error
            # Delivered and never read: fails over when its 15 s deadline passes.
            await env.post(step("whatsapp", "447700900003", READ_15), step("sms", "447700900009"))
            await env.advance(1_000)  # the sandbox's statuses; the failed webhooks' retries
            # The deadline (+15 s) is acted on 2 s late: that lateness is failover latency.
            await env.advance(16_000)
            await env.advance(1_000)  # the SMS is delivered
            await env.advance(1_000)
            samples = await env.fresh_metrics()

    assert value(samples, "opendispatch_workflows_accepted_total") == 4
    assert with_prefix(samples, "opendispatch_workflows_ended_total") == {
        ("", (("outcome", "completed"),)): 3,
        ("", (("outcome", "error"),)): 1,
        ("", (("outcome", "cancelled"),)): 0,
    }
    duration = "opendispatch_workflow_duration_seconds"
    # Accepted at 0 s; completed at 1 s (twice) and 18 s; the error at 1 s.
    assert value(samples, f"{duration}_count", outcome="completed") == 3
    assert value(samples, f"{duration}_sum", outcome="completed") == pytest.approx(20.0)
    assert value(samples, f"{duration}_count", outcome="error") == 1
    assert value(samples, f"{duration}_sum", outcome="error") == pytest.approx(1.0)
    assert value(samples, f"{duration}_bucket", outcome="completed", le="1.0") == 2

    sends = {
        (dict(labels)["channel"], dict(labels)["provider"], dict(labels)["result"]): n
        for (_, labels), n in with_prefix(samples, "opendispatch_sends_total").items()
    }
    assert sends == {
        ("whatsapp", "sandbox", "rejected"): 1,
        ("whatsapp", "sandbox", "accepted"): 1,
        ("sms", "sandbox", "accepted"): 4,
    }

    statuses = {
        (dict(labels)["channel"], dict(labels)["status"]): n
        for (_, labels), n in with_prefix(samples, "opendispatch_statuses_total").items()
    }
    assert statuses == {
        ("whatsapp", "rejected"): 1,
        ("whatsapp", "submitted"): 1,
        ("whatsapp", "delivered"): 1,
        ("sms", "submitted"): 4,
        ("sms", "delivered"): 3,
        ("sms", "undeliverable"): 1,
    }

    # Two failovers: the rejection's at once (0 s), the deadline's 2 s after it fell.
    failover = "opendispatch_failover_seconds"
    assert value(samples, f"{failover}_count") == 2
    assert value(samples, f"{failover}_sum") == pytest.approx(2.0)
    assert value(samples, f"{failover}_bucket", le="0.001") == 1
    assert value(samples, f"{failover}_bucket", le="1.0") == 1
    assert value(samples, f"{failover}_bucket", le="2.5") == 2

    # 11 status webhooks and 4 final reports, delivered; two attempts failed first.
    deliveries = "opendispatch_webhook_deliveries_total"
    assert {
        (dict(labels)["kind"], dict(labels)["outcome"]): n
        for (_, labels), n in with_prefix(samples, deliveries).items()
    } == {
        ("message_status", "delivered"): 11,
        ("message_status", "failed"): 2,
        ("message_status", "dead"): 0,
        ("final_report", "delivered"): 4,
        ("final_report", "failed"): 0,
        ("final_report", "dead"): 0,
    }
    assert value(samples, "opendispatch_webhook_request_seconds_count") == 17
    assert value(samples, "opendispatch_webhook_delivery_seconds_count") == 15
    assert value(samples, "opendispatch_database_commit_seconds_count") > 0
    # The sandbox sends no HTTP requests.
    assert with_prefix(samples, "opendispatch_provider_requests_total") == {}
    # Nothing waits any more, and nothing died.
    for gauge in ("sends_pending", "sends_in_flight", "timers_pending", "webhooks_dead"):
        assert value(samples, f"opendispatch_{gauge}") == 0, gauge


async def test_queue_depths_are_what_waits_in_the_database(database: TestDatabase):
    # No workers: what is accepted stays queued, exactly as accepted.
    async with environment(database, "http://127.0.0.1:9/s", run_workers=False) as env:
        before = await env.metrics()
        for _ in range(3):
            await env.post(step("whatsapp", "447700900004", READ_15), step("sms", "447700900004"))
        unchanged = await env.metrics()  # read less than a second ago: the same figures
        await env.advance(1_000)
        queued = await env.fresh_metrics()
        await env.advance(15_000)  # past the three deadlines, which nobody acts on
        overdue = await env.fresh_metrics()

    depths = ("sends_pending", "sends_due", "sends_in_flight", "timers_pending", "timers_due",
              "webhooks_due", "webhooks_dead")  # fmt: skip

    def read(samples: dict[tuple[str, Labels], float]) -> dict[str, float | None]:
        return {name: value(samples, f"opendispatch_{name}") for name in depths}

    assert read(before) == dict.fromkeys(depths, 0)
    assert read(unchanged) == read(before)
    assert value(unchanged, "opendispatch_queue_depths_age_seconds") == 0
    assert read(queued) == {**dict.fromkeys(depths, 0), "sends_pending": 3, "sends_due": 3,
                            "timers_pending": 3}  # fmt: skip
    assert read(overdue) == {**read(queued), "timers_due": 3}


async def test_dead_webhooks_are_counted_and_the_gauge_follows_a_replay(database: TestDatabase):
    with WebhookReceiver(status=500) as receiver:
        # No retry period: a failed attempt is the last one.
        async with environment(database, f"{receiver.url}/status", webhook_retry_period_s=0) as env:
            await env.post(step("sms", "447700900001"))  # rejected: a status, a final report
            await env.advance(1_000)
            dead = await env.fresh_metrics()
            receiver.respond_with(200)
            replayed = await env.client.post(
                "/v0.1/webhooks/replay", json={"state": "dead"}, headers=env.shop.basic()
            )
            assert replayed.json() == {"replayed": 2}
            await env.advance(1_000)
            after = await env.fresh_metrics()

    deliveries = "opendispatch_webhook_deliveries_total"
    assert value(dead, "opendispatch_webhooks_dead") == 2
    assert value(dead, deliveries, kind="message_status", outcome="dead") == 1
    assert value(dead, deliveries, kind="final_report", outcome="dead") == 1
    assert value(dead, "opendispatch_webhook_delivery_seconds_count") == 0
    assert value(after, "opendispatch_webhooks_dead") == 0
    assert value(after, deliveries, kind="message_status", outcome="delivered") == 1
    assert value(after, deliveries, kind="final_report", outcome="delivered") == 1


async def test_provider_requests_are_counted_by_status_code(database: TestDatabase):
    with FakeTelnyx() as telnyx:
        async with environment(
            database, "http://127.0.0.1:9/s", secret_key=SECRET_KEY, public_url="http://t"
        ) as env:
            record = new_account(
                name="telnyx-main",
                kind_name="telnyx",
                base_url=telnyx.url,
                values=telnyx.account_settings(),
                secret_box=SecretBox(SECRET_KEY),
            )
            await env.app.store.save_provider_account(record, replace=False, now_ms=1)
            live = await provision_application(
                env.app.store, name="live", status_url="http://127.0.0.1:9/s", live=True
            )
            await env.app.store.set_route(live.application.application_id, "sms", ["telnyx-main"])
            env.shop = AppCredentials.from_provisioned(live)
            telnyx.fail_next(1, status=500)
            await env.post(step("sms", "447700900004"))  # accepted, then silent
            waiting = await env.metrics()  # the 500 is retried later
            await env.advance(1_000)
            sent = await env.fresh_metrics()

    requests = "opendispatch_provider_requests_total"
    assert value(waiting, requests, provider="telnyx-main", code="500") == 1
    assert value(waiting, "opendispatch_sends_pending") == 1
    assert value(waiting, "opendispatch_sends_due") == 0
    assert value(sent, requests, provider="telnyx-main", code="500") == 1
    assert value(sent, requests, provider="telnyx-main", code="200") == 1
    sends = "opendispatch_sends_total"
    assert value(sent, sends, channel="sms", provider="telnyx-main", result="unavailable") == 1
    assert value(sent, sends, channel="sms", provider="telnyx-main", result="accepted") == 1
    assert value(sent, "opendispatch_sends_pending") == 0


TOKEN = "s3cr3t-metrics-token_0123456789"


async def test_with_a_metrics_token_only_its_bearer_may_scrape(database: TestDatabase):
    async with environment(database, "http://127.0.0.1:9/s", metrics_token=TOKEN) as env:
        refused = [
            await env.client.get("/metrics"),
            await env.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}),
            await env.client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}),
            await env.client.get("/metrics", headers=env.shop.basic()),  # an API key is not it
            await env.client.get(
                "/metrics",
                headers=[("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer x")],
            ),
        ]
        allowed = await env.metrics(Authorization=f"Bearer {TOKEN}")
    for answer in refused:
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Bearer realm="metrics"'
        problem = answer.json()
        assert problem["title"] == "Unauthorized"
        assert "metrics token" in problem["detail"]
        assert TOKEN not in answer.text
    assert value(allowed, "opendispatch_workflows_accepted_total") == 0


async def test_workflows_refused_at_capacity_are_counted_and_the_share_shown(
    database: TestDatabase,
):
    async with environment(database, "http://127.0.0.1:9/s") as env:
        admission = env.app.runtime.admission
        await admission.stop()  # its intervals are driven here
        calm = await env.metrics()
        for _ in range(200):
            admission.observe_queue_delay(10.0)  # sends have been waiting for seconds
            admission.update()
        body = {"template": "failover", "workflow": [step("sms", "447700900009")]}
        answers = [
            await env.client.post("/v0.1/dispatch", json=body, headers=env.shop.basic())
            for _ in range(3)
        ]
        busy = await env.metrics()
    assert [answer.status_code for answer in answers] == [503, 503, 503]
    assert value(calm, "opendispatch_workflows_refused_total") == 0
    assert value(calm, "opendispatch_admission_refused_share") == 0
    assert value(busy, "opendispatch_workflows_refused_total") == 3
    assert value(busy, "opendispatch_admission_refused_share") == 1
    assert value(busy, "opendispatch_workflows_accepted_total") == 0


async def test_no_metrics_means_no_route(database: TestDatabase):
    async with environment(database, "http://127.0.0.1:9/s", metrics=False) as env:
        answer = await env.client.get("/metrics")
        accepted = await env.client.post(
            "/v0.1/dispatch",
            json={"template": "failover", "workflow": [step("sms", "447700900009")]},
            headers=env.shop.basic(),
        )
        document = (await env.client.get("/openapi.json")).json()
    assert answer.status_code == 404
    assert answer.json()["title"] == "Not Found"
    assert accepted.status_code == 202
    assert "/metrics" not in document["paths"]


async def test_the_openapi_document_describes_metrics(database: TestDatabase):
    async with environment(database, "http://127.0.0.1:9/s", run_workers=False) as env:
        document = (await env.client.get("/openapi.json")).json()
    operation = document["paths"]["/metrics"]["get"]
    assert set(operation["responses"]) == {"200", "401"}
    assert document["components"]["securitySchemes"]["metricsToken"]["scheme"] == "bearer"
