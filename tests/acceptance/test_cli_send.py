"""`opendispatch send` and `opendispatch status` as an operator runs them: the real CLI beside
a real server process, on SQLite and on PostgreSQL.

`send` writes the workflow into the database as the API would; the running server must pick
it up at once (on SQLite the command wakes it through `<file>.wake`; on PostgreSQL with
NOTIFY) and run it like any other: sent, failed over, reported to the application's
webhooks, signed with its secret."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from opendispatch.webhooks.signing import verify_webhook
from tests.databases import TestDatabase
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, run_cli, step

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`opendispatch ARGS...`, whatever its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )


def create_app(database: str, url: str, *extra: str) -> AppCredentials:
    created = run_cli(
        "apps", "create", "--name", "shop", "--status-url", f"{url}/status",
        "--final-report-url", f"{url}/final", "--allow-private-webhooks",
        "--database", database, "--json", *extra,
    )  # fmt: skip
    return AppCredentials.from_json(json.loads(created))


def count(database: TestDatabase, table: str) -> int:
    return int(asyncio.run(database.scalar(f"SELECT count(*) FROM {table}")))


SEND = (
    "send", "--to", "whatsapp:447700900001", "--then", "sms:447700900003",
    "--text", "Your code is 64873", "--expiry", "600", "--condition", "read",
)  # fmt: skip


def test_a_workflow_sent_from_the_cli_runs_at_once_on_the_running_server_with_its_failover(
    database: TestDatabase, server_factory: Any
):
    """WhatsApp to a number the sandbox rejects, then SMS: the server sends the first step
    as soon as the command returns (on SQLite it waited for ever: nothing told it), fails
    over, and the application's receiver gets every status and the final report, signed.
    `status` then tells the whole story, and the API shows the very workflow."""
    with WebhookReceiver() as hooks:
        app = create_app(database.url, hooks.url)
        server = server_factory(database.url).start(
            "--sandbox-delivered-after-ms", "100", "--sandbox-read-after-ms", "100"
        )
        sent = cli(*SEND, "--application", app.application_id, "--database", database.url)
        returned_at = time.monotonic()
        assert sent.returncode == 0, sent.stderr
        dispatch_uuid = sent.stdout.strip()

        got = hooks.wait_for(lambda got: any(w.path == "/final" for w in got), 20)
        first = min(webhook.received_at for webhook in got)
        assert first - returned_at < 2.0  # woken, not found by chance
        for webhook in got:
            claims = verify_webhook(
                webhook.headers["authorization"],
                webhook.body,
                signature_secret=app.signature_secret,
            )
            assert claims["application_id"] == app.application_id
        [final] = [w.json for w in got if w.path == "/final"]
        assert final["dispatch_uuid"] == dispatch_uuid
        assert final["status"] == "completed"
        assert [(m["channel"], m["status"]) for m in final["_links"]["messages"]] == [
            ("whatsapp", "rejected"),
            ("sms", "delivered"),
        ]
        # Stored as the API stores it: the API serves it to the application, as submitted.
        with httpx.Client(base_url=server.url) as client:
            shown = client.get(f"/v0.1/dispatch/{dispatch_uuid}", headers=app.basic()).json()
        assert shown["workflow"][0]["to"] == {"type": "whatsapp", "number": "447700900001"}
        assert shown["workflow"][0]["failover"] == {"expiry_time": 600, "condition_status": "read"}
        assert shown["workflow"][1]["message"]["content"]["text"] == "Your code is 64873"
        assert "failover" not in shown["workflow"][1]

        as_json = json.loads(run_cli("status", dispatch_uuid, "--database", database.url, "--json"))
        assert as_json == {"application_id": app.application_id, **shown}
        text = run_cli("status", dispatch_uuid, "--database", database.url)
    lines = text.splitlines()
    assert lines[0] == f"workflow     {dispatch_uuid}  completed"
    assert lines[1] == f"application  {app.application_id}"
    assert lines[4] == "usage        0.0070 EUR"
    whatsapp = shown["messages"][0]
    deadline = _plus_seconds(whatsapp["sent_at"], 600)
    assert (
        f"step 0  whatsapp to 447700900001 via sandbox  message {whatsapp['message_uuid']}" in lines
    )
    assert f"  condition     read within 600 s, else fails over (deadline {deadline})" in lines
    assert f"  rejected      {whatsapp['history'][0]['timestamp']}" in lines
    assert (
        "  error         1300 Not part of the provider network (sandbox: recipient ends in 1)"
        in lines
    )
    assert "  outcome       rejected: failed over to step 1" in lines
    assert any(line.startswith("step 1  sms to 447700900003 via sandbox") for line in lines)
    assert "  outcome       the workflow ended: completed" in lines
    assert "webhooks (4)" in lines  # rejected; submitted, delivered; the final report
    delivered = [line for line in lines if "delivered 1 attempt" in " ".join(line.split())]
    assert len(delivered) == 4, text


def _plus_seconds(iso: str, seconds: int) -> str:
    from opendispatch.timefmt import iso_ms, parse_iso_ms

    return iso_ms(parse_iso_ms(iso) + seconds * 1000)


def test_send_refuses_and_warns_as_the_api_does_in_its_words(
    database: TestDatabase, server_factory: Any
):
    app = create_app(database.url, "http://127.0.0.1:9")
    server = server_factory(database.url).start()
    refused = cli(
        "send", "--application", app.application_id, "--to", "whatsapp:447700900001",
        "--then", "sms:+447700900001", "--then", "mms:447700900001", "--text", "x" * 1001,
        "--expiry", "5", "--condition", "read", "--database", database.url,
    )  # fmt: skip
    assert refused.returncode == 1
    # The API's answer to the same body, field for field.
    body = {
        "template": "failover",
        "workflow": [
            {**step("whatsapp", "447700900001", {"expiry_time": 5, "condition_status": "read"})},
            {**step("sms", "+447700900001", {"expiry_time": 5, "condition_status": "read"})},
            step("mms", "447700900001"),
        ],
    }
    for message in body["workflow"]:
        message["message"]["content"]["text"] = "x" * 1001
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/v0.1/dispatch", json=body, headers=app.basic()).json()
    expected = [f"  {p['name']}: {p['reason']}" for p in answer["invalid_parameters"]]
    assert refused.stderr.splitlines() == [f"Error: {answer['detail']}", *expected]
    assert "  workflow[0].failover.expiry_time: must be between 15 and 86400" in expected
    assert count(database, "workflows") == 0

    # Valid but never met: accepted, with the API's warnings.
    warned = cli("send", "--application", app.application_id, "--to", "sms:447700900003",
                 "--text", "hi", "--expiry", "60", "--condition", "read", "--json",
                 "--database", database.url)  # fmt: skip
    assert warned.returncode == 0, warned.stderr
    body = {"template": "failover", "workflow": [step("sms", "447700900003")]}
    body["workflow"][0]["failover"] = {"expiry_time": 60, "condition_status": "read"}
    with httpx.Client(base_url=server.url) as client:
        accepted = client.post("/v0.1/dispatch", json=body, headers=app.basic()).json()
    assert accepted["warnings"]
    printed = json.loads(warned.stdout)
    assert printed["warnings"] == accepted["warnings"]
    assert warned.stderr.splitlines() == [
        f"warning: {w['name']}: {w['reason']}" for w in accepted["warnings"]
    ]
    assert count(database, "workflows") == 2  # the command's and the API's

    unknown = cli("send", "--application", "nope", "--to", "sms:447700900001", "--text", "x",
                  "--database", database.url)  # fmt: skip
    assert (unknown.returncode, unknown.stderr) == (1, "Error: no application nope\n")
    assert count(database, "workflows") == 2


def test_a_live_application_needs_a_sender_and_a_route_as_the_api_does(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'live.db'}"
    app = create_app(database, "https://shop.example", "--live")
    without_sender = cli("send", "--application", app.application_id, "--to",
                         "sms:447700900001", "--text", "hi", "--database", database)  # fmt: skip
    assert without_sender.returncode == 2
    assert "--from sms:ADDRESS" in without_sender.stderr
    without_route = cli("send", "--application", app.application_id, "--to",
                        "sms:447700900001", "--from", "447700900000", "--text", "hi",
                        "--database", database)  # fmt: skip
    assert without_route.returncode == 1
    assert without_route.stderr.splitlines() == [
        "Error: This live application has no provider for a channel of the workflow.",
        f"  workflow[0].to.type: this live application has no provider route for sms "
        f"(opendispatch apps route {app.application_id} --channel sms --providers ...)",
    ]
    with sqlite3.connect(tmp_path / "live.db") as connection:
        assert connection.execute("SELECT count(*) FROM workflows").fetchone() == (0,)


def test_status_of_an_unknown_workflow_is_an_error(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'status.db'}"
    run_cli("db", "upgrade", "--database", database)
    for unknown in ("01a22dd9-d3a7-7329-be42-5187c6e63e39", "not-a-uuid"):
        shown = cli("status", unknown, "--database", database)
        assert shown.returncode == 1
        assert shown.stderr == f"Error: no workflow {unknown} (of any application)\n"
        assert shown.stdout == ""


def test_without_a_wake_socket_the_server_still_finds_the_work_within_a_second(
    tmp_path: Path, server_factory: Any
):
    """Where `<file>.wake` cannot be made (here a directory is in its way), the server says
    so once and looks for what commands write every second."""
    path = tmp_path / "nowake.db"
    run_cli("db", "upgrade", "--database", f"sqlite:///{path}")
    Path(f"{path}.wake").mkdir()
    with WebhookReceiver() as hooks:
        app = create_app(f"sqlite:///{path}", hooks.url)
        server = server_factory(f"sqlite:///{path}").start()
        sent = cli("send", "--application", app.application_id, "--to", "sms:447700900003",
                   "--text", "hi", "--database", f"sqlite:///{path}")  # fmt: skip
        returned_at = time.monotonic()
        assert sent.returncode == 0, sent.stderr
        got = hooks.wait_for(lambda got: len(got) >= 1, 10)
        assert got[0].received_at - returned_at < 2.5
    assert "cannot wake it; it looks for their work every second instead" in server.log()
