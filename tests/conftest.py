"""Fixtures: an in-process ASGI client on a real SQLite file, and real server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from tests.databases import BACKENDS, TestDatabase, new_database
from tests.support import AppCredentials, ServerProcess


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestDatabase]:
    """A fresh database of each kind: every test using it runs on SQLite and on PostgreSQL."""
    async for made in new_database(request.param, tmp_path):
        yield made


@dataclass
class Api:
    app: DispatchApp
    client: httpx.AsyncClient
    alice: AppCredentials
    bob: AppCredentials
    database: TestDatabase


@pytest.fixture
async def api(database: TestDatabase) -> AsyncIterator[Api]:
    """A DispatchApp on a fresh database, two applications, an httpx client over ASGI."""
    # No workers: these tests look at the API; the runtime's tests drive the workers.
    app = DispatchApp(Settings(database=database.url, max_body_bytes=64 * 1024), run_workers=False)
    await app.startup()
    alice = await provision_application(
        app.store, name="alice", status_url="http://127.0.0.1:9/status"
    )
    bob = await provision_application(app.store, name="bob", status_url="http://127.0.0.1:9/bob")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(
            app,
            client,
            AppCredentials.from_provisioned(alice),
            AppCredentials.from_provisioned(bob),
            database,
        )
    await app.shutdown()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def make(database_url: str | None = None, **kwargs: Any) -> ServerProcess:
        url = database_url or f"sqlite:///{tmp_path / 'server.db'}"
        server = ServerProcess(url, cwd=tmp_path, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        if server.process is not None and server.process.poll() is None:
            server.stop()
