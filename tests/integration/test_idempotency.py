"""`Idempotency-Key` on `POST /v0.1/dispatch`, through the ASGI app on both databases: a retry
gets the first answer and no second workflow, another body with the key is 422, keys are per
application and last 24 hours, and a refused request leaves its key unused. Concurrent
requests with one key in this one process make one workflow (tests/acceptance/
test_idempotency_processes.py does it across server processes)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.errors import ApplicationDeleted
from opendispatch.runtime.clock import ManualClock
from opendispatch.runtime.shell import Shell
from opendispatch.store.records import IdempotencyKey, NewWorkflow
from tests.databases import TestDatabase
from tests.support import AppCredentials, step, two_step_workflow

pytestmark = pytest.mark.anyio

DAY_MS = 86_400_000
ERROR_KEYS = {"type", "title", "detail", "instance", "invalid_parameters"}


def body_bytes(number: str = "447700900004") -> bytes:
    return json.dumps(two_step_workflow(number)).encode()


@dataclass
class Env:
    app: DispatchApp
    client: httpx.AsyncClient
    clock: ManualClock
    alice: AppCredentials
    bob: AppCredentials
    database: TestDatabase

    async def post(
        self,
        content: bytes,
        key: str | bytes | None = None,
        who: AppCredentials | None = None,
        **headers: str,
    ) -> httpx.Response:
        sent: dict[str, Any] = {
            name.lower(): value
            for name, value in {
                "content-type": "application/json",
                **(who or self.alice).basic(),
            }.items()
        } | headers
        if key is not None:
            sent["idempotency-key"] = key
        return await self.client.post("/v0.1/dispatch", content=content, headers=sent)

    async def count(self, table: str) -> int:
        return int(await self.database.scalar(f"SELECT count(*) FROM {table}"))


@pytest.fixture
async def env(database: TestDatabase) -> AsyncIterator[Env]:
    clock = ManualClock(start_ms=int(time.time() * 1000))
    settings = Settings(database=database.url, max_body_bytes=64 * 1024)
    app = DispatchApp(settings, clock=clock, run_workers=False)
    await app.startup()
    alice, bob = [
        AppCredentials.from_provisioned(
            await provision_application(app.store, name=name, status_url="http://x.test/")
        )
        for name in ("alice", "bob")
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Env(app, client, clock, alice, bob, database)
    await app.shutdown()


def accepted_uuid(response: httpx.Response, *, replayed: bool) -> str:
    assert response.status_code == 202, response.text
    assert response.headers.get("idempotent-replayed") == ("true" if replayed else None)
    dispatch_uuid = str(response.json()["dispatch_uuid"])
    assert response.headers["location"] == f"/v0.1/dispatch/{dispatch_uuid}"
    return dispatch_uuid


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = dict(response.json())
    assert set(body) == ERROR_KEYS
    assert response.headers["x-request-id"] == body["instance"]
    return body


async def test_the_same_key_and_body_again_get_the_first_answer_and_no_second_workflow(env: Env):
    first = await env.post(body_bytes(), key="order-1")
    dispatch_uuid = accepted_uuid(first, replayed=False)
    again = await env.post(body_bytes(), key="order-1")
    assert accepted_uuid(again, replayed=True) == dispatch_uuid
    assert again.content == first.content
    assert await env.count("workflows") == 1
    assert await env.count("messages") == 1  # the first step's send, once
    # The workflow is the first request's, readable as usual.
    fetched = await env.client.get(f"/v0.1/dispatch/{dispatch_uuid}", headers=env.alice.basic())
    assert fetched.status_code == 200


async def test_a_repeat_gets_the_first_answers_warnings_too(env: Env):
    read_on_sms = {"expiry_time": 600, "condition_status": "read"}
    body = json.dumps(
        {
            "template": "failover",
            "workflow": [step("sms", "447700900004", read_on_sms), step("sms", "447700900004")],
        }
    ).encode()
    first = await env.post(body, key="order-1")
    assert first.json()["warnings"]  # a read condition on sms is never met
    again = await env.post(body, key="order-1")
    accepted_uuid(again, replayed=True)
    assert again.content == first.content


async def test_only_the_first_request_logs_and_counts_a_workflow_accepted(
    env: Env, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="opendispatch.events")
    for _ in range(3):
        await env.post(body_bytes(), key="order-1")
    accepted = [r for r in caplog.records if r.getMessage().startswith("workflow accepted")]
    assert len(accepted) == 1
    metrics = (await env.client.get("/metrics")).text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    assert samples["opendispatch_workflows_accepted_total"] == 1


async def test_the_same_key_with_another_body_is_422_and_changes_nothing(env: Env):
    dispatch_uuid = accepted_uuid(await env.post(body_bytes(), key="order-1"), replayed=False)
    stored = await env.database.rows("SELECT * FROM idempotency_keys")
    other_number = body_bytes("447700900005")
    # The exact bytes count: the same JSON with other whitespace is another body.
    reformatted = json.dumps(two_step_workflow("447700900004"), indent=2).encode()
    for other in (other_number, reformatted):
        refused = error(await env.post(other, key="order-1"), 422)
        assert refused["type"] == "https://www.nexmo.com/messages/Errors#Unprocessable"
        assert refused["title"] == "Unprocessable Entity"
        assert "different request body" in refused["detail"]
        assert [p["name"] for p in refused["invalid_parameters"]] == ["Idempotency-Key"]
    assert await env.count("workflows") == 1
    assert await env.database.rows("SELECT * FROM idempotency_keys") == stored
    # The key still belongs to the first request.
    assert accepted_uuid(await env.post(body_bytes(), key="order-1"), replayed=True) == (
        dispatch_uuid
    )


async def test_keys_are_per_application(env: Env):
    alice_uuid = accepted_uuid(await env.post(body_bytes(), key="order-1"), replayed=False)
    bob_uuid = accepted_uuid(
        await env.post(body_bytes(), key="order-1", who=env.bob), replayed=False
    )
    assert alice_uuid != bob_uuid
    assert await env.count("workflows") == 2
    replays = [
        accepted_uuid(await env.post(body_bytes(), key="order-1", who=who), replayed=True)
        for who in (env.alice, env.bob)
    ]
    assert replays == [alice_uuid, bob_uuid]


async def test_a_key_is_remembered_for_24_hours_then_makes_a_new_workflow(env: Env):
    first = accepted_uuid(await env.post(body_bytes(), key="order-1"), replayed=False)
    await env.clock.advance(DAY_MS)  # 24 h to the millisecond: still the same request
    assert accepted_uuid(await env.post(body_bytes(), key="order-1"), replayed=True) == first
    error(await env.post(body_bytes("447700900005"), key="order-1"), 422)
    await env.clock.advance(1)  # forgotten: the key is free for any request
    second = accepted_uuid(
        await env.post(body_bytes("447700900005"), key="order-1"), replayed=False
    )
    assert second != first
    assert await env.count("workflows") == 2
    assert await env.count("idempotency_keys") == 1
    again = await env.post(body_bytes("447700900005"), key="order-1")
    assert accepted_uuid(again, replayed=True) == second
    error(await env.post(body_bytes(), key="order-1"), 422)


async def test_requests_without_a_key_are_each_a_workflow_and_store_no_key(env: Env):
    uuids = {accepted_uuid(await env.post(body_bytes()), replayed=False) for _ in range(3)}
    assert len(uuids) == 3
    assert await env.count("idempotency_keys") == 0


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"k" * 256,
        "caf\u00e9".encode("latin-1"),
        "caf\u00e9".encode(),
        b"tab\there",
        b"del\x7f",
        b"nul\x00",
    ],
)
async def test_a_bad_key_is_400_naming_the_header_and_stores_nothing(env: Env, key: bytes):
    refused = error(await env.post(body_bytes(), key=key), 400)
    assert refused["type"] == "https://www.nexmo.com/messages/Errors#InvalidParams"
    assert refused["invalid_parameters"] == [
        {"name": "Idempotency-Key", "reason": "must be 1 to 255 printable ASCII characters"}
    ]
    assert await env.count("workflows") == 0
    assert await env.count("idempotency_keys") == 0


async def test_a_key_sent_twice_is_400(env: Env):
    headers = [
        ("content-type", "application/json"),
        *env.alice.basic().items(),
        ("idempotency-key", "a"),
        ("idempotency-key", "a"),
    ]
    response = await env.client.post("/v0.1/dispatch", content=body_bytes(), headers=headers)
    refused = error(response, 400)
    assert refused["invalid_parameters"] == [
        {"name": "Idempotency-Key", "reason": "must be sent once"}
    ]
    assert await env.count("workflows") == 0


async def test_the_longest_key_of_any_printable_ascii_is_accepted(env: Env):
    key = "".join(chr(c) for c in range(0x20, 0x7F)) * 3  # 285 characters: cut to 255
    key = key[:255]
    first = accepted_uuid(await env.post(body_bytes(), key=key), replayed=False)
    assert accepted_uuid(await env.post(body_bytes(), key=key), replayed=True) == first
    rows = await env.database.rows("SELECT idempotency_key FROM idempotency_keys")
    assert rows == [(key,)]


async def test_a_refused_request_leaves_its_key_unused(env: Env):
    key = "order-1"
    invalid = two_step_workflow()
    del invalid["workflow"][0]["failover"]
    admission = env.app.runtime.admission
    await admission.stop()  # its intervals are driven here
    for _ in range(200):
        admission.observe_queue_delay(10.0)  # at capacity: 503 before anything else
        admission.update()
    error(await env.post(body_bytes(), key=key), 503)
    for _ in range(200):
        admission.observe_queue_delay(0.0)
        admission.update()
    refusals = [
        (await env.post(body_bytes(), key=key, authorization="Basic eDp5"), 401),
        (await env.post(b"x" * 70_000, key=key), 413),
        (await env.post(body_bytes(), key=key, **{"content-type": "text/plain"}), 415),
        (await env.post(b"{not json", key=key), 400),
        (await env.post(json.dumps(invalid).encode(), key=key), 400),
    ]
    for response, status in refusals:
        error(response, status)
    assert await env.count("idempotency_keys") == 0
    assert await env.count("workflows") == 0
    # The key is still free: another body takes it, as the first request with it.
    accepted_uuid(await env.post(body_bytes("447700900005"), key=key), replayed=False)


async def test_concurrent_requests_with_one_key_make_one_workflow(env: Env):
    # Sent together, they reach the store together: on SQLite in one group-committed
    # transaction, on PostgreSQL in one batch (where a repeated key waits for the next).
    responses = await asyncio.gather(*(env.post(body_bytes(), key="burst") for _ in range(40)))
    uuids = {accepted_uuid(r, replayed=r.headers.get("idempotent-replayed") is not None)
             for r in responses}  # fmt: skip
    assert len(uuids) == 1
    assert sum(1 for r in responses if "idempotent-replayed" not in r.headers) == 1
    assert await env.count("workflows") == 1
    assert await env.count("messages") == 1


async def test_concurrent_requests_with_one_key_and_two_bodies_make_one_workflow(env: Env):
    bodies = [body_bytes("447700900004"), body_bytes("447700900005")]
    responses = await asyncio.gather(
        *(env.post(bodies[i % 2], key="burst") for i in range(40)), env.post(body_bytes())
    )
    keyed = responses[:40]
    winners = {i % 2 for i, r in enumerate(keyed) if r.status_code == 202}
    assert len(winners) == 1  # one body won; every request with the other got 422
    (winner,) = winners
    assert all(r.status_code == 422 for i, r in enumerate(keyed) if i % 2 != winner)
    assert len({r.json()["dispatch_uuid"] for r in keyed if r.status_code == 202}) == 1
    assert responses[40].status_code == 202  # a request without a key, in the same batch
    assert await env.count("workflows") == 2
    stored = await env.database.rows("SELECT request_json FROM workflows")
    assert bodies[winner].decode() in {row[0] for row in stored}


async def test_a_keyed_workflow_of_an_application_deleted_meanwhile_stores_no_key(env: Env):
    """Its credentials were good when the request came in; by the store, `apps delete` had
    run. Neither its workflow nor its key is stored, and a keyed workflow of another
    application written beside it (one batch on PostgreSQL) is stored with its key."""
    store = env.app.store
    now_ms = env.clock.now_ms()
    assert await store.delete_application(env.alice.application_id, purge=False, now_ms=now_ms)
    shell = Shell(final_status_timeout_s=60)

    def keyed(application_id: str, dispatch_uuid: str) -> NewWorkflow:
        return NewWorkflow(
            dispatch_uuid=dispatch_uuid,
            application_id=application_id,
            template="failover",
            request_json=body_bytes().decode(),
            created_at_ms=now_ms,
            channels=("whatsapp", "sms"),
            idempotency_key=IdempotencyKey(key="order-1", request_hash="0" * 64),
        )

    workflows = [
        keyed(env.alice.application_id, "01937a2c-5b0e-7d3a-9c1e-6f2b8a4d0e51"),
        keyed(env.bob.application_id, "01937a2c-5b0e-7d3a-9c1e-6f2b8a4d0e52"),
    ]
    results = await asyncio.gather(
        *(
            store.create_workflow(
                workflow,
                shell.accept(
                    workflow, status_url="http://x.test/", final_report_url=None, now_ms=now_ms
                ),
            )
            for workflow in workflows
        ),
        return_exceptions=True,
    )
    assert isinstance(results[0], ApplicationDeleted)
    assert results[1] is None
    assert await env.database.rows(
        "SELECT application_id, dispatch_uuid FROM idempotency_keys"
    ) == [(env.bob.application_id, workflows[1].dispatch_uuid)]
    assert await env.database.rows("SELECT dispatch_uuid FROM workflows") == [
        (workflows[1].dispatch_uuid,)
    ]


async def test_purging_an_application_deletes_its_keys(env: Env):
    for who in (env.alice, env.bob):
        accepted_uuid(await env.post(body_bytes(), key="order-1", who=who), replayed=False)
    store = env.app.store
    now_ms = env.clock.now_ms()
    assert await store.delete_application(env.alice.application_id, purge=False, now_ms=now_ms)
    assert await env.count("idempotency_keys") == 2  # kept with its data, like its workflows
    assert await store.delete_application(env.alice.application_id, purge=True, now_ms=now_ms)
    rows = await env.database.rows("SELECT application_id FROM idempotency_keys")
    assert rows == [(env.bob.application_id,)]


async def test_openapi_documents_the_header_the_replay_and_the_422(env: Env):
    document = (await env.client.get("/openapi.json")).json()
    create = document["paths"]["/v0.1/dispatch"]["post"]
    (parameter,) = [p for p in create["parameters"] if p["in"] == "header"]
    assert parameter["name"] == "Idempotency-Key"
    assert parameter["schema"]["maxLength"] == 255
    assert "Idempotent-Replayed" in create["responses"]["202"]["headers"]
    assert "different body" in create["responses"]["422"]["description"]
