"""`opendispatch apps list | update` as an operator runs them: the real CLI, beside a real
server process, on SQLite and on PostgreSQL.

The server is another process, so these wait on real time (the sandbox's delays): the
integration tests drive the same rules with the caller's clock."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import BACKENDS, TestDatabase, new_database
from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import AppCredentials, create_app_with_cli, run_cli, step

pytestmark = pytest.mark.slow

HEADERS = ["APPLICATION_ID", "API_KEY", "MODE", "NAME", "STATUS_URL", "FINAL_REPORT_URL"]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A fresh SQLite file, or a fresh PostgreSQL schema (skipped, with the reason, without
    one), for a server process and the CLI to share."""
    made = new_database(request.param, tmp_path)
    yield asyncio.run(anext(made))
    asyncio.run(anext(made, None))


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`opendispatch ARGS...`, whatever its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )


def create_app(database: str, name: str, url: str, *extra: str) -> AppCredentials:
    created = run_cli(
        "apps", "create", "--name", name, "--status-url", f"{url}/status",
        "--final-report-url", f"{url}/final", "--allow-private-webhooks",
        "--database", database, "--json", *extra,
    )  # fmt: skip
    return AppCredentials.from_json(json.loads(created))


def rows(database: TestDatabase, sql: str) -> list[tuple[Any, ...]]:
    return asyncio.run(database.rows(sql))


def workflow_of(webhook: ReceivedWebhook) -> str:
    """The workflow a status webhook or a final report is about."""
    body = webhook.json
    return str(body.get("dispatch_uuid") or body["_links"]["workflow"]["dispatch_uuid"])


def basic(api_key: str, api_secret: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(api_key, api_secret)


# -- apps list ---------------------------------------------------------------------------------


def test_apps_list_prints_a_header_row_and_aligned_columns(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'list.db'}"
    short = create_app_with_cli(database, name="a")
    long = create_app(database, "a much longer name", "http://127.0.0.1:9")

    lines = run_cli("apps", "list", "--database", database).splitlines()
    assert lines[0].split() == HEADERS
    starts = [lines[0].index(header) for header in HEADERS]
    for line, app, name, final in (
        (lines[1], short, "a", "(status URL)"),
        (lines[2], long, "a much longer name", "http://127.0.0.1:9/final"),
    ):
        values = [app.application_id, app.api_key, "sandbox", name, None, final]
        for start, value in zip(starts, values, strict=True):
            if start:  # each column starts where its header does, after a gap
                assert line[start - 2 : start] == "  "
            if value is not None:
                assert line[start:].startswith(value), (line, value)

    listed = json.loads(run_cli("apps", "list", "--database", database, "--json"))
    assert [row["name"] for row in listed] == ["a", "a much longer name"]
    assert set(listed[0]) == {
        "application_id", "name", "api_key", "status_url", "final_report_url", "mode",
        "created_at",
    }  # fmt: skip
    assert datetime.fromisoformat(listed[0]["created_at"])
    for secret in (short.api_secret, short.signature_secret, long.api_secret):
        assert secret not in json.dumps(listed)
        assert secret not in "\n".join(lines)


# -- apps update --------------------------------------------------------------------------------


def test_apps_update_refuses_what_apps_create_refuses_and_changes_nothing(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'update.db'}"
    app = create_app_with_cli(database, name="shop")
    before = run_cli("apps", "list", "--database", database, "--json")

    unknown = cli("apps", "update", "no-such-app", "--name", "x", "--database", database)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "Error: no application no-such-app")
    nothing = cli("apps", "update", app.application_id, "--database", database)
    assert nothing.returncode == 2
    assert "give at least one of --name, --status-url, --final-report-url" in nothing.stderr
    private = cli(
        "apps", "update", app.application_id, "--status-url", "http://10.0.0.7/hooks",
        "--database", database,
    )  # fmt: skip
    assert private.returncode == 1
    assert "--status-url http://10.0.0.7/hooks: 10.0.0.7 is a private address" in private.stderr
    assert "--allow-private-webhooks" in private.stderr
    malformed = cli(
        "apps", "update", app.application_id, "--final-report-url", "https://u:pw@x.test/",
        "--database", database,
    )  # fmt: skip
    assert malformed.returncode == 2
    assert "must not carry credentials" in malformed.stderr
    empty_name = cli("apps", "update", app.application_id, "--name", " ", "--database", database)
    assert empty_name.returncode == 2
    assert "Traceback" not in unknown.stderr + private.stderr + malformed.stderr
    assert run_cli("apps", "list", "--database", database, "--json") == before

    changed = json.loads(
        run_cli(
            "apps", "update", app.application_id, "--name", "shop-eu", "--final-report-url",
            "https://hooks.example.com/final", "--database", database, "--json",
        )
    )  # fmt: skip
    assert (changed["name"], changed["final_report_url"]) == (
        "shop-eu",
        "https://hooks.example.com/final",
    )
    [listed] = json.loads(run_cli("apps", "list", "--database", database, "--json"))
    assert listed["status_url"] == "http://127.0.0.1:9/status"  # not given: unchanged
    assert listed["final_report_url"] == "https://hooks.example.com/final"


def test_a_running_server_sends_waiting_and_new_webhooks_to_the_updated_urls(
    database: TestDatabase, server_factory: Any
):
    with WebhookReceiver(status=503) as old, WebhookReceiver() as new:
        app = create_app(database.url, "moving", old.url)
        server = server_factory(database.url).start(
            "--sandbox-delivered-after-ms", "100", "--db-pool-max", "4"
        )
        with httpx.Client(base_url=server.url, headers=app.basic(), timeout=10) as client:
            body = {"template": "failover", "workflow": [step("sms", "447700900005")]}
            first = client.post("/v0.1/dispatch", json=body).json()["dispatch_uuid"]
            # submitted and delivered, each refused by the old receiver (the final report
            # waits for them, held)
            old.wait_for(lambda got: {w.json["status"] for w in got} >= {"submitted", "delivered"})

            moved = json.loads(
                run_cli(
                    "apps", "update", app.application_id, "--status-url", f"{new.url}/status",
                    "--final-report-url", f"{new.url}/final", "--allow-private-webhooks",
                    "--database", database.url, "--json",
                )
            )  # fmt: skip
            assert moved["webhooks_moved"] == 3  # two statuses and the held final report
            second = client.post("/v0.1/dispatch", json=body).json()["dispatch_uuid"]

        def finished(got: list[ReceivedWebhook]) -> bool:
            finals = {w.json["dispatch_uuid"] for w in got if w.path == "/final"}
            return finals == {first, second}

        got = new.wait_for(finished, timeout_s=20)
        statuses = sorted(
            (workflow_of(w) == first, w.json["status"]) for w in got if w.path == "/status"
        )
        assert statuses == [
            (False, "delivered"), (False, "submitted"), (True, "delivered"), (True, "submitted"),
        ]  # fmt: skip
        assert all(w.answered_status == 200 for w in got)
        # The old receiver never saw the second workflow, nor any final report.
        assert all(workflow_of(w) == first for w in old.received)
        assert all(w.path == "/status" for w in old.received)
