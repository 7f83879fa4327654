"""`opendispatch serve` as a real process: settings, readiness, and no accepted work lost."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.support import create_app_with_cli, two_step_workflow

pytestmark = pytest.mark.slow


def test_every_202_survives_sigkill_and_restart(server_factory: Any, tmp_path: Path):
    """Accepted means durable: kill -9 in the middle of a load, restart, find every workflow."""
    database = f"sqlite:///{tmp_path / 'crash.db'}"
    credentials = create_app_with_cli(database)
    server = server_factory(database).start()

    accepted: list[str] = []
    with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=10) as client:
        for _ in range(50):
            response = client.post("/v0.1/dispatch", json=two_step_workflow())
            assert response.status_code == 202
            accepted.append(response.json()["dispatch_uuid"])

    # Keep 8 clients posting while the process is killed; keep whatever got its 202.
    def post_until_refused(_: int) -> list[str]:
        mine = []
        with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=5) as c:
            for _ in range(2000):
                try:
                    response = c.post("/v0.1/dispatch", json=two_step_workflow())
                except httpx.TransportError:
                    break
                if response.status_code == 202:
                    mine.append(response.json()["dispatch_uuid"])
        return mine

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post_until_refused, i) for i in range(8)]
        time.sleep(1.0)  # real time on purpose: the kill must land mid-load
        server.kill()
        for future in futures:
            accepted += future.result()

    assert len(accepted) > 100
    server.start()
    with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=10) as client:
        missing = [
            uuid for uuid in accepted if client.get(f"/v0.1/dispatch/{uuid}").status_code != 200
        ]
    assert missing == []


def test_host_port_and_database_come_from_the_environment(server_factory: Any, tmp_path: Path):
    database = tmp_path / "env.db"
    server = server_factory("sqlite:///ignored.db")
    server.env = {
        "OPENDISPATCH_DATABASE": f"sqlite:///{database}",
        "OPENDISPATCH_HOST": "127.0.0.1",
    }
    # The flag wins over the environment for --database, so drop it for this test.
    server.database_url = f"sqlite:///{database}"
    server.start()
    assert database.exists()
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


def test_the_docs_page_and_every_file_it_loads_come_from_the_server(server_factory: Any):
    """The installed server serves /docs and Swagger UI's files from its own package."""
    server = server_factory().start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert "docs/swagger-ui-bundle.js" in references
        for reference in [*references, "docs/init.js"]:
            response = client.get(urljoin(f"{server.url}/docs", reference))
            assert response.status_code == 200, reference
            assert response.content


def test_sigterm_shuts_down_gracefully(server_factory: Any):
    server = server_factory().start()
    # uvicorn re-raises SIGTERM once it has shut down, as init systems expect.
    assert server.stop() in (0, -15)
    assert "OpenDispatch stopped" in server.log()


def test_errors_are_logged_with_the_request_id_and_without_secrets(
    server_factory: Any, tmp_path: Path
):
    database = f"sqlite:///{tmp_path / 'log.db'}"
    credentials = create_app_with_cli(database)
    server = server_factory(database).start()
    bad = {"template": "failover", "workflow": []}
    response = httpx.post(f"{server.url}/v0.1/dispatch", json=bad, headers=credentials.basic())
    assert response.status_code == 400
    refused = httpx.get(
        f"{server.url}/v0.1/dispatch", auth=(credentials.api_key, "wrong-secret-value")
    )
    assert refused.status_code == 401
    server.stop()
    log = server.log()
    assert response.json()["instance"] in log
    assert refused.json()["instance"] in log
    assert credentials.api_secret not in log
    assert "wrong-secret-value" not in log


def test_a_second_server_on_the_same_sqlite_file_refuses_to_start(
    server_factory: Any, tmp_path: Path
):
    database = f"sqlite:///{tmp_path / 'one.db'}"
    first = server_factory(database).start()
    second = server_factory(database)
    with pytest.raises(AssertionError, match="already serving"):
        second.start()
    assert httpx.get(f"{first.url}/health").status_code == 200
    # The CLI still works beside the running server.
    create_app_with_cli(database, name="beside")
