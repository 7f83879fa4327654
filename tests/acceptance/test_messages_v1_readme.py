"""The README's `POST /v1/messages` example, run as a reader runs it: its curl command in bash
against a real `opendispatch serve` process (SQLite, the sandbox), with a real receiver as the
application's status URL. WhatsApp to a number the sandbox rejects, then SMS: the answer gives
both ids, and the receiver gets every status in v1's shape, signed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from opendispatch.webhooks.signing import verify_webhook
from tests.readme import shell_blocks
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, run_cli

pytestmark = pytest.mark.slow

MARKER = "http://127.0.0.1:8080/v1/messages"


def readme_block() -> str:
    [block] = [block for block in shell_blocks() if MARKER in block.text]
    return block.text


def test_the_readme_v1_example_fails_over_to_sms_with_signed_v1_webhooks(
    tmp_path: Path, server_factory: Any
):
    database = f"sqlite:///{tmp_path / 'v1.db'}"
    with WebhookReceiver() as hooks:
        created = run_cli(
            "apps", "create", "--name", "shop", "--status-url", f"{hooks.url}/status",
            "--allow-private-webhooks", "--database", database, "--json",
        )  # fmt: skip
        app = AppCredentials.from_json(json.loads(created))
        server = server_factory(database).start(
            "--sandbox-delivered-after-ms", "100", "--sandbox-read-after-ms", "100"
        )
        script = readme_block().replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**os.environ, "API_KEY": app.api_key, "API_SECRET": app.api_secret},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        answer = json.loads(ran.stdout)
        assert set(answer) == {"message_uuid", "workflow_id"}

        got = hooks.wait_for(lambda got: len(got) >= 3, 20)

        for webhook in got:
            verify_webhook(
                webhook.headers["authorization"],
                webhook.body,
                signature_secret=app.signature_secret,
            )
        bodies = [webhook.json for webhook in got]
        assert sorted((b["channel"], b["status"]) for b in bodies) == [
            ("sms", "delivered"),
            ("sms", "submitted"),
            ("whatsapp", "rejected"),
        ]
        assert {b["workflow_id"] for b in bodies} == {answer["workflow_id"]}
        [rejected] = [b for b in bodies if b["status"] == "rejected"]
        assert rejected["message_uuid"] == answer["message_uuid"]
        assert rejected["client_ref"] == "order-1234"
        with httpx.Client(base_url=server.url) as client:
            shown = client.get(f"/v0.1/dispatch/{answer['workflow_id']}", headers=app.basic())
        assert shown.json()["status"] == "completed"
        # The operator's command tells the same story as for any workflow.
        status = run_cli("status", answer["workflow_id"], "--database", database, "--json")
        assert json.loads(status) == {"application_id": app.application_id, **shown.json()}
        text = run_cli("status", answer["workflow_id"], "--database", database)
        assert text.splitlines()[0] == f"workflow     {answer['workflow_id']}  completed"
        # The WhatsApp step is v1's: delivered completes, a rejection fails over, no timer.
        assert text.count("rejected or undeliverable: fails over") == 1, text
