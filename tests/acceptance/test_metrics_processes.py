"""`GET /metrics` from two `opendispatch serve` processes on one PostgreSQL database: each
counts its own work, and both report the same queue depths, which are what the shared
database holds (pending sends, timers, dead webhooks).

Real processes on real time: the depths are read at most once a second, so the test polls
until both processes show them (within seconds), rather than sleeping a fixed time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opendispatch.providers.secret_box import SECRET_KEY_VARIABLE
from tests.databases import TestDatabase
from tests.fakes.twilio import FakeTwilio
from tests.live import SECRET_KEY, live_setup
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, ServerProcess, run_cli, step

pytestmark = pytest.mark.slow

# A failed webhook is dead at once, so dead letters appear without waiting out a retry period.
FLAGS = ("--webhook-retry-period", "0", "--sandbox-delivered-after-ms", "0",
         "--sandbox-read-after-ms", "0", "--db-pool-max", "4")  # fmt: skip
DEPTHS = ("sends_pending", "sends_due", "sends_in_flight", "timers_pending", "timers_due",
          "webhooks_due", "webhooks_dead")  # fmt: skip


def scrape(server: ServerProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample by name, then by labels; the text parsed by prometheus_client."""
    answer = httpx.get(f"{server.url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def depths(samples: dict[str, Any]) -> dict[str, float]:
    return {name: samples[f"opendispatch_{name}"][()] for name in DEPTHS}


def post(server: ServerProcess, app: AppCredentials, *workflow: dict[str, Any]) -> None:
    body = {"template": "failover", "workflow": list(workflow)}
    answer = httpx.post(f"{server.url}/v0.1/dispatch", json=body, headers=app.basic(), timeout=10)
    assert answer.status_code == 202, answer.text


def test_two_processes_count_their_own_work_and_report_the_same_queue_depths(
    postgres_database: TestDatabase, tmp_path: Path
):
    database = postgres_database.url
    with (
        WebhookReceiver(status=500) as failing,
        live_setup(database, tmp_path) as live,
    ):
        twilio = live.account("twilio-main", FakeTwilio())
        twilio.outage = True  # every send answers 503: the live step waits to be retried
        carried = live.application(status_url=f"{failing.url}/live")
        live.route(carried, "sms", "twilio-main")
        created = run_cli(
            "apps", "create", "--name", "shop", "--status-url", f"{failing.url}/status",
            "--allow-private-webhooks", "--database", database, "--json",
        )  # fmt: skip
        shop = AppCredentials.from_json(json.loads(created))
        env = {SECRET_KEY_VARIABLE: SECRET_KEY}
        first, second = (
            ServerProcess(database, cwd=tmp_path, env=env).start(
                *FLAGS, "--public-url", live.public_url
            )
            for _ in range(2)
        )
        try:
            # Two workflows silent on WhatsApp (each waits on its deadline) through the first;
            # one rejected at once (it ends: error) and one live through the second.
            for _ in range(2):
                post(first, shop, step("whatsapp", "447700900004", {"expiry_time": 600,
                                                                    "condition_status": "read"}),
                     step("sms", "447700900004"))  # fmt: skip
            post(second, shop, step("sms", "447700900001"))
            post(second, carried, step("sms", "447700900004"))

            # Both webhooks of the rejected one die, and the submitted of each silent one:
            # four dead. Open: the two silent ones and the live one. The live step is
            # pending, or with Twilio at the moment of a retry.
            expected = {"sends_pending": 1, "sends_due": 0, "sends_in_flight": 0,
                        "timers_pending": 3, "timers_due": 0, "webhooks_due": 0,
                        "webhooks_dead": 4}  # fmt: skip
            deadline = time.monotonic() + 20
            while True:
                samples = [scrape(first), scrape(second)]
                seen = [depths(s) for s in samples]
                if all(d == expected for d in seen) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert seen == [expected, expected]
        finally:
            first.stop()
            second.stop()

    # Counters are each process's own: the workflows each accepted.
    accepted = [s["opendispatch_workflows_accepted_total"][()] for s in samples]
    assert accepted == [2, 2]
    ended = [s["opendispatch_workflows_ended_total"][(("outcome", "error"),)] for s in samples]
    assert sum(ended) == 1
    # Deliveries go to whichever process claims them: together, every death once.
    dead = "opendispatch_webhook_deliveries_total"
    assert sum(s[dead][(("kind", "message_status"), ("outcome", "dead"))] for s in samples) == 3
    assert sum(s[dead][(("kind", "final_report"), ("outcome", "dead"))] for s in samples) == 1
    requests = "opendispatch_provider_requests_total"
    refused = sum(
        s.get(requests, {}).get((("code", "503"), ("provider", "twilio-main")), 0) for s in samples
    )
    assert refused >= 1
