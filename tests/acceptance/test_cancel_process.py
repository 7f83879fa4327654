"""Cancel against `opendispatch serve` as a real process, with a real webhook receiver: the
application created with the CLI, the workflow posted and cancelled over HTTP, the final
report received and verified as a receiver would."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from opendispatch.webhooks.signing import verify_webhook
from tests.databases import TestDatabase
from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import AppCredentials, run_cli

pytestmark = pytest.mark.slow

SILENT = "447700900004"  # the sandbox submits it, then says nothing more


def is_final(webhook: ReceivedWebhook) -> bool:
    return "template" in webhook.json


def test_a_silent_step_cancelled_gets_a_cancelled_final_report_and_no_next_step(
    server_factory: Any, database: TestDatabase
):
    with WebhookReceiver() as receiver:
        created = run_cli(
            "apps", "create", "--name", "shop", "--status-url", f"{receiver.url}/status",
            "--allow-private-webhooks", "--database", database.url, "--json",
        )  # fmt: skip
        credentials = AppCredentials.from_json(json.loads(created))
        server = server_factory(database.url).start()
        workflow = {
            "template": "failover",
            "workflow": [
                {
                    "to": {"type": "whatsapp", "number": SILENT},
                    "from": {"type": "whatsapp", "number": "447700900000"},
                    "message": {"content": {"type": "text", "text": "Your code is 64873"}},
                    "failover": {"expiry_time": 3600, "condition_status": "read"},
                },
                {
                    "to": {"type": "sms", "number": SILENT},
                    "from": {"type": "sms", "number": "447700900000"},
                    "message": {"content": {"type": "text", "text": "Your code is 64873"}},
                },
            ],
        }
        with httpx.Client(base_url=server.url, headers=credentials.basic(), timeout=10) as client:
            accepted = client.post("/v0.1/dispatch", json=workflow)
            assert accepted.status_code == 202, accepted.text
            uuid = accepted.json()["dispatch_uuid"]
            receiver.wait_for(lambda got: len(got) == 1)  # the WhatsApp's `submitted`

            cancelled = client.post(f"/v0.1/dispatch/{uuid}/cancel")

            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json() == {"dispatch_uuid": uuid, "status": "cancelled"}
            got = receiver.wait_for(lambda got: any(map(is_final, got)))
            [final] = [webhook for webhook in got if is_final(webhook)]
            verify_webhook(
                final.headers["authorization"],
                final.body,
                signature_secret=credentials.signature_secret,
            )
            assert final.json["dispatch_uuid"] == uuid
            assert final.json["status"] == "cancelled"
            assert [(m["channel"], m["status"]) for m in final.json["_links"]["messages"]] == [
                ("whatsapp", "submitted")
            ]
            assert [w.json["status"] for w in got if not is_final(w)] == ["submitted"]

            view = client.get(f"/v0.1/dispatch/{uuid}").json()
            assert view["status"] == "cancelled"
            assert view["next_deadline"] is None  # no timer left to send the SMS
            assert [m["channel"] for m in view["messages"]] == ["whatsapp"]

            again = client.post(f"/v0.1/dispatch/{uuid}/cancel")

            assert again.status_code == 409
            assert again.json()["type"] == "https://www.nexmo.com/messages/Errors#Conflict"
        server.stop()
        log = server.log()
        cancelled_by = f"workflow cancelled dispatch_uuid={uuid} application_id="
        assert f"{cancelled_by}{credentials.application_id} by=application request_id=" in log
        assert f"workflow ended dispatch_uuid={uuid}" in log
        assert len([webhook for webhook in receiver.received if is_final(webhook)]) == 1
