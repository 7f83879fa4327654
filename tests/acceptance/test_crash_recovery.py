"""A 202 is a promise: kill -9 a real server mid-flight, start it again, and every accepted
workflow still reaches exactly one final report with the right outcome.

This is one of the few tests that waits in real time: the shortest expiry the API allows is
15 s, and one kind of workflow here is mid-expiry when the server dies.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, ServerProcess, run_cli, step

pytestmark = pytest.mark.slow

SERVER_FLAGS = (
    "--sandbox-delivered-after-ms",
    "300",
    "--sandbox-read-after-ms",
    "300",
    "--final-status-timeout",
    "20",
)


READ_15S = {"expiry_time": 15, "condition_status": "read"}

# kind -> (workflow, expected outcome, expected final (channel, status) per message)
KINDS: dict[str, tuple[list[dict[str, Any]], str, list[tuple[str, str]]]] = {
    "read-in-time": (
        [step("whatsapp", "447700900005", READ_15S), step("sms", "447700900005")],
        "completed",
        [("whatsapp", "read")],
    ),
    "rejected-then-sms": (
        [step("whatsapp", "447700900001", READ_15S), step("sms", "447700900006")],
        "completed",
        [("whatsapp", "rejected"), ("sms", "delivered")],
    ),
    "rejected-then-undeliverable": (
        [step("whatsapp", "447700900001", READ_15S), step("sms", "447700900002")],
        "error",
        [("whatsapp", "rejected"), ("sms", "undeliverable")],
    ),
    "unread-expires-then-sms": (
        [step("whatsapp", "447700900003", READ_15S), step("sms", "447700900007")],
        "completed",
        [("whatsapp", "delivered"), ("sms", "delivered")],
    ),
    "silent-last-message": (
        [step("sms", "447700900004")],
        "error",
        [("sms", "submitted")],
    ),
}


def test_sigkill_mid_flight_loses_nothing_and_sends_no_step_twice_beyond_the_window(
    tmp_path: Path,
):
    database_path = tmp_path / "crash.db"
    database = f"sqlite:///{database_path}"
    with WebhookReceiver() as receiver:
        created = run_cli(
            "apps", "create", "--name", "crash", "--status-url", f"{receiver.url}/status",
            "--final-report-url", f"{receiver.url}/final", "--allow-private-webhooks",
            "--database", database, "--json",
        )  # fmt: skip
        credentials = AppCredentials.from_json(json.loads(created))
        server = ServerProcess(database, cwd=tmp_path).start(*SERVER_FLAGS)

        kind_of: dict[str, str] = {}

        def submit_until_refused(offset: int) -> list[tuple[str, str]]:
            accepted = []
            kinds = list(KINDS)
            with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=5) as c:
                for index in range(offset, offset + 5000):
                    kind = kinds[index % len(kinds)]
                    body = {"template": "failover", "workflow": KINDS[kind][0]}
                    try:
                        response = c.post("/v0.1/dispatch", json=body)
                    except httpx.TransportError:
                        break  # the server died under this request: no promise was made
                    if response.status_code == 202:
                        accepted.append((response.json()["dispatch_uuid"], kind))
            return accepted

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(submit_until_refused, offset) for offset in range(8)]
            time.sleep(1.5)  # real time on purpose: the kill must land mid-flight
            server.kill()
            for future in futures:
                kind_of.update(future.result())
        assert len(kind_of) >= 200, "too few workflows were accepted before the kill"
        assert set(kind_of.values()) == set(KINDS)

        with sqlite3.connect(database_path) as connection:
            in_flight_at_kill = {
                row[0]
                for row in connection.execute(
                    "SELECT message_uuid FROM messages WHERE send_state = 'sending'"
                )
            }

        server.start(*SERVER_FLAGS)

        def finals(received: list[Any]) -> dict[str, dict[str, Any]]:
            return {
                w.json["dispatch_uuid"]: w.json
                for w in received
                if w.path == "/final" and w.answered_status == 200
            }

        receiver.wait_for(lambda got: set(finals(got)) >= set(kind_of), timeout_s=60)
        server.stop()
        received = receiver.received

    # Exactly one final report per workflow: redeliveries (at least once) share one event id.
    final_event_ids: dict[str, set[str]] = defaultdict(set)
    for webhook in received:
        if webhook.path == "/final":
            final_event_ids[webhook.json["dispatch_uuid"]].add(webhook.headers["webhook-id"])
    assert {uuid: len(ids) for uuid, ids in final_event_ids.items() if len(ids) != 1} == {}

    by_uuid = finals(received)
    for dispatch_uuid, kind in kind_of.items():
        _, outcome, messages = KINDS[kind]
        report = by_uuid[dispatch_uuid]
        assert report["status"] == outcome, (kind, report)
        assert [(m["channel"], m["status"]) for m in report["_links"]["messages"]] == messages, kind

    with sqlite3.connect(database_path) as connection:
        sent_twice = {
            row[0]
            for row in connection.execute(
                "SELECT message_uuid FROM sandbox_sends WHERE attempts > 1"
            )
        }
    # The one window: a send the provider accepted whose answer was not committed yet.
    assert sent_twice <= in_flight_at_kill


def test_a_graceful_restart_under_load_sends_no_step_twice(tmp_path: Path):
    """SIGTERM while sends are in flight: they finish before the process exits."""
    database_path = tmp_path / "graceful.db"
    database = f"sqlite:///{database_path}"
    fast = ["read-in-time", "rejected-then-sms", "rejected-then-undeliverable"]
    with WebhookReceiver() as receiver:
        created = run_cli(
            "apps", "create", "--name", "graceful", "--status-url", f"{receiver.url}/status",
            "--final-report-url", f"{receiver.url}/final", "--allow-private-webhooks",
            "--database", database, "--json",
        )  # fmt: skip
        credentials = AppCredentials.from_json(json.loads(created))
        server = ServerProcess(database, cwd=tmp_path).start(*SERVER_FLAGS)
        accepted: list[str] = []

        def submit_until_refused(offset: int) -> list[str]:
            mine = []
            with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=5) as c:
                for index in range(offset, offset + 5000):
                    body = {"template": "failover", "workflow": KINDS[fast[index % 3]][0]}
                    try:
                        response = c.post("/v0.1/dispatch", json=body)
                    except httpx.TransportError:
                        break
                    if response.status_code == 202:
                        mine.append(response.json()["dispatch_uuid"])
                    elif response.status_code != 503:
                        raise AssertionError(response.text)
            return mine

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(submit_until_refused, offset) for offset in range(8)]
            time.sleep(1.0)  # real time on purpose: the stop must land mid-flight
            server.stop()
            for future in futures:
                accepted += future.result()
        server.start(*SERVER_FLAGS)
        receiver.wait_for(
            lambda got: (
                {w.json["dispatch_uuid"] for w in got if w.path == "/final"} >= set(accepted)
            ),
            timeout_s=60,
        )
        server.stop()

    with sqlite3.connect(database_path) as connection:
        attempts = [row[0] for row in connection.execute("SELECT attempts FROM sandbox_sends")]
    assert len(accepted) > 100
    assert max(attempts) == 1
