"""The disk under a real server: its SQLite file deleted, damaged, and its WAL after a burst."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, create_app_with_cli, run_cli, two_step_workflow

pytestmark = pytest.mark.slow


def _wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    """Poll a condition the server reaches on its own (its watch runs twice a second)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.1)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )


def _refused_start(server: ServerProcess) -> str:
    with pytest.raises(AssertionError, match="server exited early") as refused:
        server.start()
    assert server.process is not None
    assert server.process.returncode != 0
    return str(refused.value)


def test_a_database_deleted_while_serving_fails_health_and_every_write(
    server_factory: Any, tmp_path: Path
):
    path = tmp_path / "od.db"
    database = f"sqlite:///{path}"
    credentials = create_app_with_cli(database)
    server = server_factory(database).start()
    with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=10) as client:
        assert client.post("/v0.1/dispatch", json=two_step_workflow()).status_code == 202

        path.unlink()

        _wait_for(lambda: client.get("/health").status_code == 503, "/health failing")
        assert client.get("/health").json() == {"status": "failed", "reason": "database deleted"}
        refused = client.post("/v0.1/dispatch", json=two_step_workflow())
        assert refused.status_code == 503
        assert refused.json()["type"].endswith("#ServiceUnavailable")
        assert "database is unavailable" in refused.json()["detail"]
        assert client.get("/v0.1/dispatch").status_code == 503
    assert server.log().count("was deleted while the server ran") == 1
    assert "Traceback" not in server.log()
    server.stop()
    assert not path.exists()  # nothing recreated it

    # A restart does not begin again with an empty database...
    log = _refused_start(server)
    assert "is missing" in log
    assert "opendispatch db init" in log
    assert "Traceback" not in log
    assert not path.exists()
    listing = _cli("apps", "list", "--database", database, cwd=tmp_path)
    assert listing.returncode != 0
    assert "is missing" in listing.stderr
    assert not path.exists()

    # ...unless told to.
    assert "created, empty" in run_cli("db", "init", "--database", database)
    server.start()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_fresh_directory_gets_its_database_without_a_step(server_factory: Any, tmp_path: Path):
    """The README's first command: `opendispatch serve` where no database ever was."""
    server = server_factory("sqlite:///opendispatch.db").start()
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert (tmp_path / "opendispatch.db").exists()


@pytest.mark.parametrize("kept_bytes", [50, 8192])
def test_a_damaged_database_is_refused_at_start_in_one_clear_line(
    server_factory: Any, tmp_path: Path, kept_bytes: int
):
    path = tmp_path / "od.db"
    database = f"sqlite:///{path}"
    create_app_with_cli(database)
    os.truncate(path, kept_bytes)

    log = _refused_start(server_factory(database))
    assert "is damaged" in log
    assert "Traceback" not in log
    listing = _cli("apps", "list", "--database", database, cwd=tmp_path)
    assert listing.returncode != 0
    assert "is damaged" in listing.stderr
    assert "Traceback" not in listing.stderr


def test_a_database_damaged_while_serving_says_so(server_factory: Any, tmp_path: Path):
    path = tmp_path / "od.db"
    database = f"sqlite:///{path}"
    credentials = create_app_with_cli(database)
    server = server_factory(database).start()
    with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=10) as client:
        assert client.post("/v0.1/dispatch", json=two_step_workflow()).status_code == 202

        with path.open("r+b") as damaged:  # overwritten with garbage, same file
            damaged.write(b"\xde\xad" * 4096)

        def refused() -> bool:
            return client.post("/v0.1/dispatch", json=two_step_workflow()).status_code == 503

        _wait_for(refused, "writes refused")
        assert client.get("/health").json() == {"status": "failed", "reason": "database damaged"}
    assert server.log().count("is damaged") == 1


def test_the_wal_is_truncated_when_idle_and_gone_after_a_clean_stop(
    server_factory: Any, tmp_path: Path
):
    path = tmp_path / "od.db"
    wal = Path(f"{path}-wal")
    database = f"sqlite:///{path}"
    credentials = create_app_with_cli(database)
    server = server_factory(database).start()
    with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=10) as client:
        for _ in range(100):
            assert client.post("/v0.1/dispatch", json=two_step_workflow()).status_code == 202
    assert wal.stat().st_size > 100_000

    _wait_for(
        lambda: wal.stat().st_size < 1024 * 1024, "the WAL truncated once the burst ended", 60
    )

    with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=10) as client:
        assert client.post("/v0.1/dispatch", json=two_step_workflow()).status_code == 202
    assert wal.stat().st_size > 0
    server.stop()
    assert not wal.exists() or wal.stat().st_size == 0
