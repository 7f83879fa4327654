"""Live applications end to end: a real server process sends through local fakes of Vonage,
Twilio, WhatsApp Cloud and Telnyx, their signed callbacks come back to it, and the workflow
reaches its final report naming the provider that carried each message."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import TestDatabase
from tests.fakes.base import FakeProvider
from tests.fakes.telnyx import FakeTelnyx
from tests.fakes.twilio import FakeTwilio
from tests.fakes.vonage import FakeVonage
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.live import final_report, get_workflow, live_setup
from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import step

pytestmark = pytest.mark.slow

FIFTEEN_S_READ = {"expiry_time": 15, "condition_status": "read"}
FIFTEEN_S_DELIVERED = {"expiry_time": 15, "condition_status": "delivered"}

# Per kind: its first step fails (refused at send, or a failure callback), its second is
# delivered through a callback. Recipient last digits script the fakes (tests/fakes/base.py).
SCENARIOS: dict[str, tuple[type[FakeProvider], list[dict[str, Any]], list[str]]] = {
    "vonage": (
        FakeVonage,
        [
            step("whatsapp", "447700900001", FIFTEEN_S_READ),  # 1: refused (1050 barred)
            step("sms", "447700900009"),
        ],
        ["rejected", "delivered"],
    ),
    "twilio": (
        FakeTwilio,
        [
            step("whatsapp", "447700900002", FIFTEEN_S_READ),  # 2: accepted, then failed
            step("sms", "447700900003"),
        ],
        ["rejected", "delivered"],
    ),
    "whatsapp-cloud": (
        FakeWhatsAppCloud,
        [
            step("whatsapp", "447700900001", FIFTEEN_S_READ),  # 1: refused (131030)
            step("whatsapp", "447700900009"),
        ],
        ["rejected", "delivered"],  # the last step completes at delivered
    ),
    "telnyx": (
        FakeTelnyx,
        [
            step("sms", "447700900002", FIFTEEN_S_DELIVERED),  # 2: sent, then delivery_failed
            step("sms", "447700900003"),
        ],
        ["undeliverable", "delivered"],
    ),
}


@pytest.mark.parametrize("kind", SCENARIOS)
def test_a_live_failover_workflow_reaches_its_final_report_through_each_provider(
    kind: str, tmp_path: Path
):
    fake_type, workflow, statuses = SCENARIOS[kind]
    database = f"sqlite:///{tmp_path / 'live.db'}"
    with WebhookReceiver() as receiver, live_setup(database, tmp_path) as live:
        fake = live.account(f"{kind}-main", fake_type())
        app = live.application(status_url=f"{receiver.url}/status")
        for channel in {message["to"]["type"] for message in workflow}:
            live.route(app, channel, f"{kind}-main")
        server = live.serve()

        answer = httpx.post(
            f"{server.url}/v0.1/dispatch",
            json={"template": "failover", "workflow": workflow},
            headers=app.basic(),
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        dispatch_uuid = answer.json()["dispatch_uuid"]
        received = receiver.wait_for(
            lambda got: final_report(got, dispatch_uuid) is not None, timeout_s=20
        )
        report = final_report(received, dispatch_uuid)
        assert report is not None
        assert report["status"] == "completed", report
        messages = report["_links"]["messages"]
        assert [m["status"] for m in messages] == statuses
        assert [m["provider"] for m in messages] == [f"{kind}-main"] * 2

        # Each step reached the provider exactly once (a refusal is an answer, not retried).
        assert len(fake.requests) == 2, [r.path for r in fake.requests]
        view = get_workflow(server, app, dispatch_uuid)
        assert [m["provider"] for m in view["messages"]] == [f"{kind}-main"] * 2
        assert view["messages"][1]["send"]["state"] == "sent"
        assert view["messages"][1]["send"]["provider_message_id"] == (
            fake.messages[-1].provider_message_id
        )
        assert "server exited" not in server.log()


def _post(server: Any, app: Any, workflow: list[dict[str, Any]]) -> str:
    answer = httpx.post(
        f"{server.url}/v0.1/dispatch",
        json={"template": "failover", "workflow": workflow},
        headers=app.basic(),
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["dispatch_uuid"])


def _reports(received: list[Any]) -> dict[str, dict[str, Any]]:
    return {w.json["dispatch_uuid"]: w.json for w in received if "template" in w.json}


def test_a_provider_outage_mid_run_fails_over_to_the_backup_provider(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'live.db'}"
    with WebhookReceiver() as receiver, live_setup(database, tmp_path) as live:
        primary = live.account("twilio-main", FakeTwilio())
        backup = live.account("vonage-backup", FakeVonage())
        app = live.application(status_url=f"{receiver.url}/status")
        live.route(app, "sms", "twilio-main", "vonage-backup")
        server = live.serve()

        before = [_post(server, app, [step("sms", f"4477009{n:05d}3")]) for n in range(10)]
        receiver.wait_for(lambda got: set(before) <= set(_reports(got)), timeout_s=20)
        primary.outage = True  # every send now answers 503
        after = [_post(server, app, [step("sms", f"4477019{n:05d}3")]) for n in range(20)]
        received = receiver.wait_for(
            lambda got: set(before + after) <= set(_reports(got)), timeout_s=30
        )

    reports = _reports(received)
    assert {reports[d]["status"] for d in before + after} == {"completed"}
    carriers = [reports[d]["_links"]["messages"][0]["provider"] for d in before + after]
    assert carriers == ["twilio-main"] * 10 + ["vonage-backup"] * 20
    # Every message went out exactly once, across both providers.
    sent_to = [m.to for m in primary.messages] + [m.to for m in backup.messages]
    assert len(sent_to) == len(set(sent_to)) == 30
    # The failing primary was rested (circuit breaker) instead of being asked 20 times.
    refused = [r for r in primary.requests if r.answered_status == 503]
    assert 5 <= len(refused) < 20, len(refused)


def test_a_429_storm_slows_sending_and_loses_nothing(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'live.db'}"
    with WebhookReceiver() as receiver, live_setup(database, tmp_path) as live:
        # The account is told 100/s; the provider allows 10 a second and answers 429 beyond,
        # and (so that the storm does not depend on how fast this machine posts) its first
        # 15 answers are 429 whatever the pace.
        fake = live.account("twilio-main", FakeTwilio(), rate="100")
        fake.max_rate_per_s = 10
        fake.throttle_next(15)
        app = live.application(status_url=f"{receiver.url}/status")
        live.route(app, "sms", "twilio-main")
        server = live.serve()

        workflows = [_post(server, app, [step("sms", f"4477009{n:05d}3")]) for n in range(40)]
        received = receiver.wait_for(lambda got: set(workflows) <= set(_reports(got)), timeout_s=60)

    reports = _reports(received)
    assert {reports[d]["status"] for d in workflows} == {"completed"}
    throttled = [r for r in fake.requests if r.answered_status == 429]
    assert len(throttled) >= 15
    sent_to = [m.to for m in fake.messages]
    assert len(sent_to) == len(set(sent_to)) == 40  # each exactly once, none dropped


def test_duplicated_and_reordered_callbacks_are_applied_once_and_never_move_back(
    tmp_path: Path,
):
    database = f"sqlite:///{tmp_path / 'live.db'}"
    with WebhookReceiver() as receiver, live_setup(database, tmp_path) as live:
        fake = live.account("twilio-main", FakeTwilio())
        fake.shuffle_callbacks = True  # delivered before sent
        fake.duplicate_callbacks = True  # and each twice
        app = live.application(status_url=f"{receiver.url}/status")
        live.route(app, "whatsapp", "twilio-main")
        server = live.serve()

        dispatch_uuid = _post(server, app, [step("whatsapp", "447700900009")])
        fake.wait_for(lambda f: len(f.callbacks) == 6)  # sent, delivered, read; twice each

        def forwarded(got: list[ReceivedWebhook]) -> set[str]:
            return {w.json["status"] for w in got if w.json.get("message_uuid")}

        # `read` (sent first) completes the workflow, so `delivered` comes after the final
        # report: a late status, forwarded all the same. Waiting for the report alone raced it.
        received = receiver.wait_for(
            lambda got: final_report(got, dispatch_uuid) is not None and len(forwarded(got)) == 3,
            timeout_s=20,
        )
        view = get_workflow(server, app, dispatch_uuid)

    statuses = [w.json["status"] for w in received if w.json.get("message_uuid")]
    assert sorted(statuses) == ["delivered", "read", "submitted"]  # each forwarded once
    assert view["messages"][0]["status"] == "read"  # the furthest, whatever the order


def test_forged_stale_and_unsigned_callbacks_are_refused_and_change_nothing(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'live.db'}"
    with WebhookReceiver() as receiver, live_setup(database, tmp_path) as live:
        fakes: dict[str, Any] = {
            "vonage-main": live.account("vonage-main", FakeVonage()),
            "twilio-main": live.account("twilio-main", FakeTwilio()),
            "wa-main": live.account("wa-main", FakeWhatsAppCloud()),
            "telnyx-main": live.account("telnyx-main", FakeTelnyx()),
        }
        app = live.application(status_url=f"{receiver.url}/status")
        live.route(app, "sms", "telnyx-main")
        server = live.serve()
        # A message that stays silent (4) gives the forgeries something to change.
        dispatch_uuid = _post(server, app, [step("sms", "447700900004")])
        telnyx = fakes["telnyx-main"]
        telnyx.wait_for(lambda f: len(f.messages) == 1)
        message = telnyx.messages[0]

        from tests.fakes.base import CallbackPlan

        refusals: dict[str, int] = {}
        # Each provider's correctly shaped callback, its body altered after signing.
        for name, fake in fakes.items():
            forged_message = message if name == "telnyx-main" else _message_like(fake, message)
            url, headers, body = fake.callback_request(
                CallbackPlan(message=forged_message, status="delivered")
            )
            url = live.callback_url(name) + (url.partition("?")[1] + url.partition("?")[2])
            refusals[name] = fake.post_raw(url, headers, body.replace(b"1", b"2", 1))
        # Telnyx: genuinely signed, but ten minutes old.
        url, _, body = telnyx.callback_request(CallbackPlan(message=message, status="delivered"))
        import time as _time

        stale = telnyx.signed_headers(body, timestamp=int(_time.time()) - 600)
        refusals["telnyx stale"] = telnyx.post_raw(url, stale, body)
        # Vonage: no signature at all (a 5xx, so that Vonage sends it again, signed).
        vonage = fakes["vonage-main"]
        url, headers, body = vonage.callback_request(
            CallbackPlan(message=_message_like(vonage, message), status="delivered")
        )
        headers.pop("Authorization", None)
        refusals["vonage unsigned"] = vonage.post_raw(
            live.callback_url("vonage-main"), headers, body
        )
        view = get_workflow(server, app, dispatch_uuid)

    assert refusals == {
        "vonage-main": 401,
        "twilio-main": 401,
        "wa-main": 401,
        "telnyx-main": 401,
        "telnyx stale": 401,
        "vonage unsigned": 503,
    }
    assert view["status"] == "in_progress"
    assert [entry["status"] for entry in view["messages"][0]["history"]] == ["submitted"]
    assert not [w for w in receiver.received if w.json.get("status") == "delivered"]


def _message_like(fake: Any, message: Any) -> Any:
    """The same message as another provider's fake would have recorded it."""
    from tests.fakes.base import FakeMessage

    return FakeMessage(
        provider_message_id=message.provider_message_id,
        channel="sms",
        to=message.to.lstrip("+"),
        from_=message.from_.lstrip("+"),
        text=message.text,
        callback_url=None,
        request={},
        reference=message.reference,
    )


def test_whatsapp_cloud_verification_handshake_answers_the_challenge_only_with_the_token(
    tmp_path: Path,
):
    database = f"sqlite:///{tmp_path / 'live.db'}"
    with live_setup(database, tmp_path) as live:
        fake = live.account("wa-main", FakeWhatsAppCloud())
        live.serve()
        ok_status, ok_body, challenge = fake.verify_webhook(live.callback_url("wa-main"))
        wrong_status, _, _ = fake.verify_webhook(
            live.callback_url("wa-main"), verify_token="not-it"
        )
    assert (ok_status, ok_body) == (200, challenge.encode())
    assert wrong_status == 403


def test_a_send_in_flight_when_the_server_dies_is_not_sent_again_after_restart(
    database: TestDatabase, tmp_path: Path
):
    """kill -9 while the provider holds the request: it may have sent the message, and it
    takes no idempotency key, so the restarted server records the outcome as unknown and
    leaves it to callbacks and the step's deadline."""
    with WebhookReceiver() as receiver, live_setup(database.url, tmp_path) as live:
        fake = live.account("twilio-main", FakeTwilio())
        fake.hang = True
        app = live.application(status_url=f"{receiver.url}/status")
        live.route(app, "sms", "twilio-main")
        server = live.serve("--lease-timeout", "2")
        dispatch_uuid = _post(server, app, [step("sms", "447700900003")])
        fake.wait_for(lambda f: len(f.requests) == 1)
        server.kill()
        fake.hang = False
        server.start("--public-url", live.public_url, "--lease-timeout", "2")

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # a lease of 2 s expires on PostgreSQL
            view = get_workflow(server, app, dispatch_uuid)
            if view["messages"][0]["send"]["state"] == "unknown":
                break
            time.sleep(0.1)
        time.sleep(1.0)  # real time on purpose: a resend, if any, would come now
    [message] = view["messages"]
    assert message["send"]["state"] == "unknown", message
    assert "outcome unknown" in message["send"]["last_error"]
    assert len(fake.requests) == 1  # the one request the dead server made, never repeated
