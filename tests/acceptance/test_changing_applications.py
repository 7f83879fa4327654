"""`opendispatch apps list | update | rotate-secret | delete` as an operator runs them: the
real CLI, beside a real server process, on SQLite and on PostgreSQL.

The server is another process, so these wait on real time (the sandbox's delays, a grace
period): the integration tests drive the same rules with the caller's clock."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from opendispatch.engine.model import WorkflowState
from tests.databases import TestDatabase
from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import AppCredentials, create_app_with_cli, run_cli, step

pytestmark = pytest.mark.slow

HEADERS = ["APPLICATION_ID", "API_KEY", "MODE", "NAME", "STATUS_URL", "FINAL_REPORT_URL"]


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


# -- apps list ----------------------------------------------------------------------------------


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


# -- apps rotate-secret -------------------------------------------------------------------------


def test_rotate_secret_keeps_the_old_one_for_its_grace_period_on_a_running_server(
    database: TestDatabase, server_factory: Any
):
    app = create_app(database.url, "rotating", "http://127.0.0.1:9")
    server = server_factory(database.url).start("--db-pool-max", "4")
    old = basic(app.api_key, app.api_secret)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/v0.1/dispatch", auth=old).status_code == 200  # now cached, if ever

        rotated = json.loads(
            run_cli(
                "apps", "rotate-secret", app.application_id, "--grace", "5",
                "--database", database.url, "--json",
            )
        )  # fmt: skip
        assert rotated["api_key"] == app.api_key
        assert rotated["api_secret"] != app.api_secret
        until = datetime.fromisoformat(rotated["previous_secret_valid_until"]).timestamp()
        new = basic(app.api_key, rotated["api_secret"])

        assert client.get("/v0.1/dispatch", auth=new).status_code == 200  # at once
        assert time.time() < until - 1
        assert client.get("/v0.1/dispatch", auth=old).status_code == 200  # within the grace
        time.sleep(max(0.0, until - time.time()) + 0.2)  # real time: the server's own clock
        refused = client.get("/v0.1/dispatch", auth=old)
        assert refused.status_code == 401
        assert refused.json()["title"] == "Unauthorized"
        assert client.get("/v0.1/dispatch", auth=new).status_code == 200
        # JWT auth uses the application's key pair, which a rotation leaves alone.
        assert client.get("/v0.1/dispatch", headers=app.bearer()).status_code == 200
    assert app.api_secret not in server.log()
    assert rotated["api_secret"] not in server.log()


def test_rotate_secret_without_grace_refuses_the_old_one_at_once(
    database: TestDatabase, server_factory: Any
):
    app = create_app(database.url, "rotating", "http://127.0.0.1:9")
    server = server_factory(database.url).start("--db-pool-max", "4")
    old = basic(app.api_key, app.api_secret)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/v0.1/dispatch", auth=old).status_code == 200
        output = run_cli("apps", "rotate-secret", app.application_id, "--database", database.url)
        assert "shown only once" in output
        assert "The old secret no longer works." in output
        [secret] = [line.split()[1] for line in output.splitlines() if line.startswith("api_se")]
        assert client.get("/v0.1/dispatch", auth=old).status_code == 401
        assert client.get("/v0.1/dispatch", auth=basic(app.api_key, secret)).status_code == 200
    if database.path is not None:  # stored hashed, like the first one
        stored = database.path.read_bytes() + Path(f"{database.path}-wal").read_bytes()
        assert secret.encode() not in stored

    unknown = cli("apps", "rotate-secret", "no-such-app", "--database", database.url)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "Error: no application no-such-app")
    negative = cli("apps", "rotate-secret", app.application_id, "--grace", "-1",
                   "--database", database.url)  # fmt: skip
    assert negative.returncode == 2


# -- apps delete --------------------------------------------------------------------------------


def test_apps_delete_asks_first_and_refuses_an_unknown_application(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'delete.db'}"
    app = create_app_with_cli(database, name="keep-me")
    declined = cli("apps", "delete", app.application_id, "--database", database, stdin="n\n")
    assert declined.returncode == 1
    assert "Delete application" in declined.stderr
    assert "keep-me" in declined.stderr
    no_answer = cli("apps", "delete", app.application_id, "--database", database)
    assert no_answer.returncode == 1
    assert len(json.loads(run_cli("apps", "list", "--database", database, "--json"))) == 1

    unknown = cli("apps", "delete", "no-such-app", "--yes", "--database", database)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "Error: no application no-such-app")

    confirmed = cli("apps", "delete", app.application_id, "--database", database, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert json.loads(run_cli("apps", "list", "--database", database, "--json")) == []
    again = cli("apps", "delete", app.application_id, "--yes", "--database", database)
    assert again.returncode == 1


@pytest.mark.parametrize("purge", [False, True], ids=["keep", "purge"])
def test_deleting_an_application_ends_its_running_workflows_on_a_running_server(
    database: TestDatabase, server_factory: Any, purge: bool
):
    """Alice's five workflows are in flight (WhatsApp submitted, to be undeliverable after
    4 s, then SMS); her receiver refuses the status webhooks, which wait for their retry.
    She is deleted: nothing more is sent for her, no webhook reaches her receiver even once
    it answers 200, her credentials are refused at once, and the server goes on serving Bob,
    whose identical workflow fails over to SMS as hers would have."""
    body = {
        "template": "failover",
        "workflow": [
            step("whatsapp", "447700900002", {"expiry_time": 600, "condition_status": "read"}),
            step("sms", "447700900005"),
        ],
    }
    with WebhookReceiver(status=503) as alice_hooks, WebhookReceiver() as bob_hooks:
        alice = create_app(database.url, "alice", alice_hooks.url)
        bob = create_app(database.url, "bob", bob_hooks.url)
        server = server_factory(database.url).start(
            "--sandbox-delivered-after-ms", "4000", "--db-pool-max", "4"
        )
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(5):
                assert client.post("/v0.1/dispatch", json=body, headers=alice.basic()).is_success
            bob_workflow = client.post("/v0.1/dispatch", json=body, headers=bob.basic()).json()
            alice_hooks.wait_for(lambda got: len(got) >= 5)  # five `submitted`, refused

            deleted = json.loads(
                run_cli(
                    "apps", "delete", alice.application_id, "--yes", "--database",
                    database.url, "--json", *(["--purge"] if purge else []),
                )
            )  # fmt: skip
            alice_hooks.respond_with(200)  # whatever reaches it now would be a delivery
            deleted_at = time.monotonic()
            assert deleted == {
                "application_id": alice.application_id,
                "purged": purge,
                "workflows_ended": 5,
                "sends_cancelled": 0,  # the WhatsApp sends were made; the SMS were not yet
                "webhooks_dropped": 5,
            }
            assert client.get("/v0.1/dispatch", headers=alice.basic()).status_code == 401
            assert client.get("/v0.1/dispatch", headers=alice.bearer()).status_code == 401
            refused = client.post("/v0.1/dispatch", json=body, headers=alice.basic())
            assert refused.status_code == 401

            # Bob's WhatsApp is undeliverable at 4 s, his SMS delivered 4 s later.
            got = bob_hooks.wait_for(lambda got: any(w.path == "/final" for w in got), 30)
            [final] = [w.json for w in got if w.path == "/final"]
            assert final["dispatch_uuid"] == bob_workflow["dispatch_uuid"]
            assert [m["channel"] for m in final["_links"]["messages"]] == ["whatsapp", "sms"]

            # No loop on the missing application: the server idles.
            assert server.process is not None
            cpu_before = _cpu_seconds(server.process.pid)
            time.sleep(2.0)  # real time: how much CPU the server uses while nothing is due
            assert _cpu_seconds(server.process.pid) - cpu_before < 1.0
            assert client.get("/health").json() == {"status": "ok"}

    assert [w for w in alice_hooks.received if w.received_at > deleted_at] == []
    channels = rows(
        database,
        "SELECT s.channel, m.dispatch_uuid FROM sandbox_sends s "
        "LEFT JOIN messages m ON m.message_uuid = s.message_uuid ORDER BY s.channel",
    )
    bob_sends = [c for c, uuid in channels if uuid == bob_workflow["dispatch_uuid"]]
    assert bob_sends == ["sms", "whatsapp"]
    alice_sends = [c for c, uuid in channels if uuid != bob_workflow["dispatch_uuid"]]
    assert alice_sends == ([] if purge else ["whatsapp"] * 5)  # never an SMS

    alice_id = alice.application_id
    workflows = rows(
        database,
        f"SELECT status, due_at_ms, state_json FROM workflows WHERE application_id = '{alice_id}'",
    )
    undelivered = rows(
        database, f"SELECT count(*) FROM webhooks WHERE application_id = '{alice_id}'"
    )[0][0]
    application = rows(
        database, f"SELECT deleted_at_ms FROM applications WHERE application_id = '{alice_id}'"
    )
    if purge:
        assert (workflows, undelivered, application) == ([], 0, [])
        assert rows(database, f"SELECT 1 FROM accounts WHERE api_key = '{alice.api_key}'") == []
    else:
        assert len(workflows) == 5
        assert undelivered == 0
        assert application[0][0] is not None
        for status, due_at_ms, state_json in workflows:
            state = msgspec.json.decode(state_json, type=WorkflowState)
            assert (status, due_at_ms, state.status, state.due_at_ms) == (
                "error", None, "error", None,
            )  # fmt: skip
    assert [row["name"] for row in json.loads(
        run_cli("apps", "list", "--database", database.url, "--json")
    )] == ["bob"]  # fmt: skip
    log = server.log()
    assert "Traceback" not in log
    assert "failed; retrying" not in log
    assert alice.api_secret not in log


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
