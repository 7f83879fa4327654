"""`serve --jwt-replay` (or OPENDISPATCH_JWT_REPLAY) as an operator sets it, on a real process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import create_app_with_cli

pytestmark = pytest.mark.slow


def test_a_replayed_jwt_is_refused_by_default_and_allowed_when_configured(
    server_factory: Any, tmp_path: Path
):
    database = f"sqlite:///{tmp_path / 'replay.db'}"
    credentials = create_app_with_cli(database)
    token = credentials.bearer()

    server = server_factory(database).start()
    assert httpx.get(f"{server.url}/v0.1/dispatch", headers=token).status_code == 200
    again = httpx.get(f"{server.url}/v0.1/dispatch", headers=token)
    assert again.status_code == 401
    assert "used already" in again.json()["detail"]
    server.stop()

    # Reuse, for clients that keep one token until it expires: even one seen before.
    allowing = server_factory(database)
    allowing.env = {**allowing.env, "OPENDISPATCH_JWT_REPLAY": "allow"}
    allowing.start()
    for _ in range(2):
        assert httpx.get(f"{allowing.url}/v0.1/dispatch", headers=token).status_code == 200
