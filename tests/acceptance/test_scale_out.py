"""Scale-out: several `opendispatch serve` processes on one PostgreSQL database.

Every workflow gets exactly one final report with the outcome its recipients dictate, and
every step is sent exactly once (the sandbox's own log counts), with three processes
sharing the work, and again when one of them is killed mid-run and never comes back. Timers
run on real time here (separate processes): the sandbox's delays are short, and the silent
last messages end at an 8 s final-status deadline. The lease (3 s) is shorter than that
deadline, as it should be configured: work a dead process held is taken over before the
deadline it serves passes. It is not shorter still: a lease is what keeps a live process's
send its own, and on a loaded 2-core machine a process can stall for a second (with 1 s, 4
of 3,200 steps were sent twice in one of four runs at a load average of 12).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import TestDatabase
from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import AppCredentials, ServerProcess, run_cli, step

pytestmark = pytest.mark.slow

FLAGS = (
    "--sandbox-delivered-after-ms", "200",
    "--sandbox-read-after-ms", "200",
    "--final-status-timeout", "8",
    "--lease-timeout", "3",
    "--db-pool-max", "5",
)  # fmt: skip


READ = {"expiry_time": 600, "condition_status": "read"}
VIBER = step("viber_service_msg", "447700900001", READ) | {
    "from": {"type": "viber_service_msg", "id": "brand"}
}

# kind -> (workflow, outcome, final (channel, status) of each message)
KINDS: dict[str, tuple[list[dict[str, Any]], str, list[tuple[str, str]]]] = {
    "read": ([step("whatsapp", "447700900005", READ), step("sms", "447700900005")],
             "completed", [("whatsapp", "read")]),
    "rejected-then-sms": ([step("whatsapp", "447700900001", READ), step("sms", "447700900006")],
                          "completed", [("whatsapp", "rejected"), ("sms", "delivered")]),
    "rejected-then-undeliverable": (
        [step("whatsapp", "447700900001", READ), step("sms", "447700900002")],
        "error", [("whatsapp", "rejected"), ("sms", "undeliverable")]),
    "silent-last": ([step("sms", "447700900004")], "error", [("sms", "submitted")]),
    "viber-rejected-then-whatsapp-silent": (
        [VIBER, step("whatsapp", "447700900004")],
        "error", [("viber_service_msg", "rejected"), ("whatsapp", "submitted")]),
}  # fmt: skip


def run(
    database: TestDatabase,
    tmp_path: Path,
    receiver: WebhookReceiver,
    *,
    workflows: int,
    kill_one_after_s: float | None = None,
) -> tuple[dict[str, str], list[ServerProcess], set[str]]:
    """Submit `workflows` over three processes; kill the first mid-run if asked. Returns what
    was accepted, the processes, and the sends in flight at the moment of the kill."""
    created = run_cli(
        "apps", "create", "--name", "scale", "--status-url", f"{receiver.url}/status",
        "--final-report-url", f"{receiver.url}/final", "--allow-private-webhooks",
        "--database", database.url, "--json",
    )  # fmt: skip
    credentials = AppCredentials.from_json(json.loads(created))
    servers = [ServerProcess(database.url, cwd=tmp_path).start(*FLAGS) for _ in range(3)]
    kinds = list(KINDS)
    kind_of: dict[str, str] = {}
    # The "load balancer": clients spread over the three processes, round robin.
    targets = itertools.cycle(servers)

    def submit(batch: list[tuple[int, ServerProcess]]) -> dict[str, str]:
        accepted = {}
        clients = {
            server.port: httpx.Client(base_url=server.url, headers=credentials.basic())
            for server in servers
        }
        try:
            for index, server in batch:
                client = clients[server.port]
                kind = kinds[index % len(kinds)]
                body = {"template": "failover", "workflow": KINDS[kind][0]}
                try:
                    response = client.post("/v0.1/dispatch", json=body, timeout=10)
                except httpx.TransportError:
                    continue  # the process died under this request: no promise was made
                if response.status_code == 202:
                    accepted[response.json()["dispatch_uuid"]] = kind
        finally:
            for client in clients.values():
                client.close()
        return accepted

    plan = [(index, next(targets)) for index in range(workflows)]
    batches = [plan[start::6] for start in range(6)]
    in_flight: set[str] = set()
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(submit, batch) for batch in batches]
        if kill_one_after_s is not None:
            time.sleep(kill_one_after_s)  # real time on purpose: the kill lands mid-run
            servers[0].kill()
            # At once, before the others take its claims over (its leases last 3 s).
            rows = asyncio.run(
                database.rows("SELECT message_uuid FROM messages WHERE send_state = 'sending'")
            )
            in_flight = {str(row[0]) for row in rows}
        for future in futures:
            kind_of.update(future.result())
    return kind_of, servers, in_flight


def finals(received: list[ReceivedWebhook]) -> dict[str, list[ReceivedWebhook]]:
    by_workflow: dict[str, list[ReceivedWebhook]] = defaultdict(list)
    for webhook in received:
        if webhook.path == "/final" and webhook.answered_status == 200:
            by_workflow[webhook.json["dispatch_uuid"]].append(webhook)
    return by_workflow


def check(database: TestDatabase, kind_of: dict[str, str], received: list[ReceivedWebhook]):
    by_workflow = finals(received)
    # Exactly one final report each (a redelivery, at least once, keeps its webhook-id).
    assert {
        uuid: len({w.headers["webhook-id"] for w in reports})
        for uuid, reports in by_workflow.items()
        if len({w.headers["webhook-id"] for w in reports}) != 1
    } == {}
    wrong = []
    for dispatch_uuid, kind in kind_of.items():
        _, outcome, messages = KINDS[kind]
        report = by_workflow[dispatch_uuid][0].json
        got = [(m["channel"], m["status"]) for m in report["_links"]["messages"]]
        if report["status"] != outcome or got != messages:
            wrong.append((kind, report["status"], got))
    assert wrong == []
    return asyncio.run(database.rows("SELECT message_uuid, attempts FROM sandbox_sends"))


def test_three_processes_share_the_work_and_send_every_step_exactly_once(
    postgres_database: TestDatabase, tmp_path: Path
):
    with WebhookReceiver() as receiver:
        kind_of, servers, _ = run(postgres_database, tmp_path, receiver, workflows=2000)
        assert len(kind_of) == 2000
        receiver.wait_for(lambda got: set(finals(got)) >= set(kind_of), timeout_s=90)
        for server in servers:
            server.stop()
        sends = check(postgres_database, kind_of, receiver.received)
    # Each step of each workflow went to the provider once, and only once.
    expected_sends = sum(len(KINDS[kind][2]) for kind in kind_of.values())
    assert len(sends) == expected_sends
    assert Counter(attempts for _, attempts in sends) == {1: expected_sends}
    # And the work was shared: every process served requests and ran workflows.
    logs = [server.log() for server in servers]
    assert all("Application startup complete" in log for log in logs)


def test_a_killed_process_loses_nothing_the_others_finish_its_work(
    postgres_database: TestDatabase, tmp_path: Path
):
    with WebhookReceiver() as receiver:
        kind_of, servers, in_flight = run(
            postgres_database, tmp_path, receiver, workflows=3000, kill_one_after_s=1.5
        )
        assert len(kind_of) > 500
        # Its leases (3 s) expire, the two others take its claims over and finish.
        receiver.wait_for(lambda got: set(finals(got)) >= set(kind_of), timeout_s=120)
        for server in servers[1:]:
            server.stop()
        sends = check(postgres_database, kind_of, receiver.received)
    sent_twice = {message_uuid for message_uuid, attempts in sends if attempts > 1}
    # Only what the dead process had in flight with the provider can have been asked twice.
    assert sent_twice <= in_flight
