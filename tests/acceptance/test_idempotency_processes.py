"""`Idempotency-Key` under a real race: many requests with one key released at the same moment
against one `opendispatch serve` (SQLite, PostgreSQL), and against two server processes on one
PostgreSQL. Each round makes exactly one workflow, and every answer carries its uuid.

Each request has its own thread and keep-alive connection, opened (with a `GET /health`)
before a barrier releases them all, so the requests reach the servers within the same
milliseconds; several rounds per test, each with a new key.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.databases import TestDatabase
from tests.support import AppCredentials, ServerProcess, run_cli, two_step_workflow

pytestmark = pytest.mark.slow

REQUESTS = 24
ROUNDS = 5
BODY = json.dumps(two_step_workflow("447700900004")).encode()


def create_app(database: TestDatabase) -> AppCredentials:
    created = run_cli(
        "apps", "create", "--name", "shop", "--status-url", "http://127.0.0.1:9/status",
        "--allow-private-webhooks", "--database", database.url, "--json",
    )  # fmt: skip
    return AppCredentials.from_json(json.loads(created))


def race(
    servers: list[ServerProcess], credentials: AppCredentials, key: str
) -> list[httpx.Response]:
    """`REQUESTS` requests with `key`, spread over `servers`, released together."""
    barrier = threading.Barrier(REQUESTS)
    headers = {
        **credentials.basic(),
        "content-type": "application/json",
        "idempotency-key": key,
    }

    def one(index: int) -> httpx.Response:
        with httpx.Client(base_url=servers[index % len(servers)].url, timeout=30) as client:
            assert client.get("/health").status_code == 200  # the connection is open
            barrier.wait(timeout=30)
            return client.post("/v0.1/dispatch", content=BODY, headers=headers)

    with ThreadPoolExecutor(REQUESTS) as pool:
        return list(pool.map(one, range(REQUESTS)))


def check_rounds(
    database: TestDatabase, servers: list[ServerProcess], credentials: AppCredentials
) -> None:
    for round_ in range(ROUNDS):
        responses = race(servers, credentials, key=f"order-{round_}")
        assert [r.status_code for r in responses] == [202] * REQUESTS, [r.text for r in responses]
        assert len({r.json()["dispatch_uuid"] for r in responses}) == 1
        first_answers = [r for r in responses if "idempotent-replayed" not in r.headers]
        assert len(first_answers) == 1
        workflows = asyncio.run(database.scalar("SELECT count(*) FROM workflows"))
        assert workflows == round_ + 1


def test_one_process_makes_one_workflow_of_concurrent_requests_with_one_key(
    database: TestDatabase, tmp_path: Path
):
    credentials = create_app(database)
    server = ServerProcess(database.url, cwd=tmp_path).start()
    try:
        check_rounds(database, [server], credentials)
    finally:
        server.stop()


def test_two_processes_on_one_postgres_make_one_workflow_of_requests_with_one_key(
    postgres_database: TestDatabase, tmp_path: Path
):
    credentials = create_app(postgres_database)
    servers = [ServerProcess(postgres_database.url, cwd=tmp_path).start() for _ in range(2)]
    try:
        check_rounds(postgres_database, servers, credentials)
    finally:
        for server in servers:
            server.stop()
