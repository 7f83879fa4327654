"""A JWT is good for one request (its `jti` is remembered until it expires), on every server
process of one database and across restarts; `jwt_replay="allow"` lets clients reuse one."""

from __future__ import annotations

import time

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from opendispatch.runtime.retention import RetentionWorker
from opendispatch.store.factory import create_store
from tests.conftest import Api
from tests.databases import TestDatabase
from tests.integration.test_dispatch_routes import assert_error_shape, stored_workflow_count
from tests.support import two_step_workflow

pytestmark = pytest.mark.anyio


async def test_a_replayed_jwt_is_401_and_stores_nothing(api: Api):
    token = api.alice.bearer()
    first = await api.client.post("/v0.1/dispatch", json=two_step_workflow(), headers=token)
    assert first.status_code == 202
    again = await api.client.post("/v0.1/dispatch", json=two_step_workflow(), headers=token)
    error = assert_error_shape(again, 401)
    assert "used already" in error["detail"]
    assert (await api.client.get("/v0.1/dispatch", headers=token)).status_code == 401
    assert await stored_workflow_count(api) == 1
    # A fresh token per request, as Vonage's SDKs sign them, is never in the way.
    for _ in range(3):
        fresh = await api.client.get("/v0.1/dispatch", headers=api.alice.bearer())
        assert fresh.status_code == 200


async def test_replays_are_allowed_when_configured(api: Api):
    app = DispatchApp(
        Settings(database=api.database.url, jwt_replay="allow"), store=None, run_workers=False
    )
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            token = api.alice.bearer()
            for _ in range(3):
                response = await client.post(
                    "/v0.1/dispatch", json=two_step_workflow(), headers=token
                )
                assert response.status_code == 202
    finally:
        await app.shutdown()


async def test_a_token_used_on_one_server_is_refused_by_another_on_the_same_database(api: Api):
    """Two processes on PostgreSQL share the truth; on SQLite, a restart forgets nothing."""
    token = api.alice.bearer()
    assert (await api.client.get("/v0.1/dispatch", headers=token)).status_code == 200
    other = DispatchApp(Settings(database=api.database.url), run_workers=False)
    await other.startup()
    try:
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/v0.1/dispatch", headers=token)
            assert_error_shape(response, 401)
    finally:
        await other.shutdown()


async def test_seen_tokens_are_forgotten_once_expired_by_retention(database: TestDatabase):
    store = create_store(database.url, serving=False)
    await store.open()
    try:
        now_ms = int(time.time() * 1000)
        assert await store.remember_token("app", "a", expires_at_ms=now_ms + 1000, now_ms=now_ms)
        assert not await store.remember_token(
            "app", "a", expires_at_ms=now_ms + 1000, now_ms=now_ms
        )
        assert await store.remember_token("other", "a", expires_at_ms=now_ms + 9000, now_ms=now_ms)
        # The row of an expired token no longer counts, even before retention deletes it.
        later = now_ms + 5000
        assert await store.remember_token("app", "a", expires_at_ms=later + 1000, now_ms=later)

        clock = ManualClock(later + 2000)
        worker = RetentionWorker(clock=clock, store=store, retention_ms=86_400_000)
        await worker.run_once()
        assert await database.scalar("SELECT count(*) FROM seen_tokens") == 1  # "other" stays
    finally:
        await store.close()
