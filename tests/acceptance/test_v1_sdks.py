"""Vonage's own SDKs against a real server: the Messages API v1, sent, failed over, reported.

Each SDK is pinned: the Python one in pyproject's `test` extra (so it is in the test venv), the
Node one in tests/acceptance/node/package-lock.json, installed by `.ci/run` (`npm ci`) into
tests/acceptance/node/node_modules. Without node or that install, the Node tests are skipped and
say how to install it; under CI (`CI=true`) they fail instead, so CI never passes without them.

Each SDK sends a WhatsApp message that the sandbox rejects (recipient ending in 1), with a
failover to an SMS that it delivers, and every status webhook is checked as a Vonage user would
check it: the SDK's own signature check with the application's signature secret, then the
body's SHA-256 against the token's `payload_hash`. Each also sends one message of every kind
its models build (what each adds, such as Python's default `whatsapp.locale` of `en_US`, must
pass), and one invalid message, whose error the SDK must hand over with our problem details.
The Python SDK builds every URL as `https://` + host, so it talks to a server serving TLS (a
test CA it is told to trust with REQUESTS_CA_BUNDLE); the Node SDK takes any `apiHost` URL, and
talks plain http.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client import HttpRequestError
from vonage_jwt import verify_signature
from vonage_messages import models

from tests.receiver import ReceivedWebhook, WebhookReceiver
from tests.support import REPO, AppCredentials, ServerProcess, run_cli
from tests.tls_ca import TestCA, make_test_ca

pytestmark = pytest.mark.slow

NODE_PROJECT = REPO / "tests" / "acceptance" / "node"
SENDER = "447700900000"
REJECTED_ON_WHATSAPP = "447700900001"  # the sandbox rejects a recipient ending in 1 (error 1300)
DELIVERED_BY_SMS = "447700900009"  # and delivers one ending in 9 (sms stops at delivered)
NOT_A_NUMBER = "not-a-number"  # passes both SDKs (a WhatsApp `to` may be any string), not us
# What each failover must report, in any order: the whole story, nothing more.
FAILOVER_STATUSES = [("sms", "delivered"), ("sms", "submitted"), ("whatsapp", "rejected")]
SERVE_FLAGS = ("--sandbox-delivered-after-ms", "200")


def _create_app(
    server: ServerProcess, status_url: str, saved_as: Path | None = None
) -> AppCredentials:
    """An application made as a user makes one: `apps create --json` (saved if asked)."""
    created = run_cli(
        "apps", "create", "--name", "shop", "--status-url", status_url,
        "--allow-private-webhooks", "--database", server.database_url, "--json",
    )  # fmt: skip
    if saved_as is not None:
        saved_as.write_text(created)
    return AppCredentials.from_json(json.loads(created))


def _assert_failover_story(bodies: list[dict[str, Any]], first_uuid: str) -> str:
    """The three statuses of the failover, each in v1's shape, one workflow; its workflow_id."""
    assert sorted((b["channel"], b["status"]) for b in bodies) == FAILOVER_STATUSES, bodies
    workflow_ids = {b.get("workflow_id") for b in bodies}
    assert len(workflow_ids) == 1, bodies
    assert None not in workflow_ids, bodies
    for body in bodies:
        assert isinstance(body["to"], str), body
        assert isinstance(body["from"], str), body
        assert isinstance(body["timestamp"], str), body
    [rejected] = [b for b in bodies if b["channel"] == "whatsapp"]
    assert rejected["message_uuid"] == first_uuid
    assert rejected["to"] == REJECTED_ON_WHATSAPP
    assert {"type", "title", "detail"} <= set(rejected["error"]), rejected
    sms = [b for b in bodies if b["channel"] == "sms"]
    assert len({b["message_uuid"] for b in sms}) == 1, sms
    assert first_uuid not in {b["message_uuid"] for b in sms}
    assert {b["to"] for b in sms} == {DELIVERED_BY_SMS}
    # v1 prices are strings ("0.0070"), as an SDK user's code reads them.
    assert {b["usage"]["currency"] for b in sms} == {"EUR"}, sms
    assert all(isinstance(b["usage"]["price"], str) for b in sms), sms
    return str(workflow_ids.pop())


# -- Python ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, TestCA]]:
    """One server for the Python SDK's tests, serving only HTTPS with a test CA's certificate."""
    directory = tmp_path_factory.mktemp("v1-sdks-https")
    ca = make_test_ca(directory / "tls")
    server = ServerProcess(f"sqlite:///{directory / 'server.db'}", cwd=directory, tls=ca)
    yield server.start(*SERVE_FLAGS), ca
    server.stop()


@pytest.fixture
def python_sdk(
    https_server: tuple[ServerProcess, TestCA], monkeypatch: pytest.MonkeyPatch
) -> HttpClientOptions:
    """Where the Python SDK finds the server: `host:port`, its CA trusted by requests."""
    server, ca = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.ca_cert))
    return HttpClientOptions(api_host=f"127.0.0.1:{server.port}", timeout=30)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _assert_signed_as_vonage_signs(webhook: ReceivedWebhook, app: AppCredentials) -> None:
    """The SDK's verifier accepts the bearer token; the token's claims vouch for this body."""
    scheme, _, token = webhook.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    assert verify_signature(token, app.signature_secret) is True
    # Read, not checked again: the SDK's verifier has checked the token.
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["payload_hash"] == hashlib.sha256(webhook.body).hexdigest()
    assert claims["iss"] == "Vonage"
    assert claims["api_key"] == app.api_key
    assert claims["application_id"] == app.application_id
    assert {"iat", "jti"} <= set(claims)


def test_python_sdk_failover_is_accepted_with_a_workflow_id_and_every_status_is_signed(
    https_server: tuple[ServerProcess, TestCA],
    python_sdk: HttpClientOptions,
    receiver: WebhookReceiver,
):
    app = _create_app(https_server[0], f"{receiver.url}/status")
    vonage = Vonage(
        Auth(application_id=app.application_id, private_key=app.private_key), python_sdk
    )

    sent = vonage.messages.send(
        models.WhatsappText(
            to=REJECTED_ON_WHATSAPP, from_=SENDER, text="Your code is 64873", client_ref="python"
        ),
        failover=[models.Sms(to=DELIVERED_BY_SMS, from_=SENDER, text="Your code is 64873")],
    )

    assert sent.message_uuid
    assert sent.workflow_id
    got = receiver.wait_for(
        lambda got: any(w.json.get("status") == "delivered" for w in got), timeout_s=30
    )
    for webhook in got:
        _assert_signed_as_vonage_signs(webhook, app)
    assert _assert_failover_story([w.json for w in got], sent.message_uuid) == sent.workflow_id
    assert [w.json["client_ref"] for w in got if w.json["channel"] == "whatsapp"] == ["python"]


def _python_messages() -> dict[str, models.BaseMessage]:
    """One message of each kind, as the SDK's models build them (with their defaults)."""
    to, image = DELIVERED_BY_SMS, "https://example.com/a.jpg"
    return {
        "sms": models.Sms(to=to, from_=SENDER, text="Hi"),
        "sms with options": models.Sms(
            to=to, from_=SENDER, text="Hi", ttl=600, webhook_version="v1",
            sms=models.SmsOptions(encoding_type="unicode", content_id="c1", entity_id="e1"),
        ),
        "mms image": models.MmsImage(
            to="14155550109", from_="14155550100", image=models.MmsResource(url=image)
        ),
        "whatsapp text": models.WhatsappText(to=to, from_=SENDER, text="Hi"),
        "whatsapp image": models.WhatsappImage(
            to=to, from_=SENDER, image=models.WhatsappImageResource(url=image, caption="Hi")
        ),
        # The model always adds "whatsapp": {"locale": "en_US"}: WhatsApp's code, not BCP 47.
        "whatsapp template": models.WhatsappTemplate(
            to=to, from_=SENDER,
            template=models.WhatsappTemplateResource(name="ns:code", parameters=["64873"]),
        ),
        "viber text": models.ViberText(
            to=to, from_="Shop", text="Hi",
            viber_service=models.ViberTextOptions(category="transaction", ttl=600),
        ),
        "messenger text": models.MessengerText(
            to="1234567", from_="7654321", text="Hi",
            messenger=models.MessengerOptions(category="response"),
        ),
    }  # fmt: skip


def test_python_sdk_message_of_every_kind_its_models_build_is_accepted(
    https_server: tuple[ServerProcess, TestCA], python_sdk: HttpClientOptions
):
    app = _create_app(https_server[0], "http://127.0.0.1:9/status")
    vonage = Vonage(Auth(api_key=app.api_key, api_secret=app.api_secret), python_sdk)

    refused: dict[str, str] = {}
    for kind, message in _python_messages().items():
        try:
            assert vonage.messages.send(message).message_uuid
        except HttpRequestError as error:
            refused[kind] = error.response.text

    assert refused == {}


def test_python_sdk_raises_its_http_error_carrying_our_problem_details(
    https_server: tuple[ServerProcess, TestCA], python_sdk: HttpClientOptions
):
    app = _create_app(https_server[0], "http://127.0.0.1:9/status")
    vonage = Vonage(Auth(api_key=app.api_key, api_secret=app.api_secret), python_sdk)

    with pytest.raises(HttpRequestError) as raised:
        vonage.messages.send(models.WhatsappText(to=NOT_A_NUMBER, from_=SENDER, text="never"))

    # A 422 is the SDK's base error (only 401/403/404/429/500 have their own); it reads no
    # field of the body, but carries the response and prints the body in its message.
    assert type(raised.value) is HttpRequestError
    assert raised.value.response.status_code == 422
    assert raised.value.response.headers["content-type"].startswith("application/problem+json")
    problem = raised.value.response.json()
    assert problem["title"] == "Invalid params"
    assert problem["title"] in str(raised.value)
    assert [p["name"] for p in problem["invalid_parameters"]] == ["to"]


# -- Node --------------------------------------------------------------------------------------


def _node_unavailable() -> str | None:
    if shutil.which("node") is None:
        return "needs node (Debian's nodejs)"
    if not (NODE_PROJECT / "node_modules" / "@vonage" / "server-sdk").is_dir():
        return f"needs the pinned Node SDK: npm ci --prefix {NODE_PROJECT.relative_to(REPO)}"
    return None


@pytest.fixture
def node_sdk() -> None:
    """Skips without node or the SDK's install; under CI, where .ci/run installs both, fails."""
    missing = _node_unavailable()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (.ci/run installs it)")
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One plain-http server for the Node SDK's tests."""
    directory = tmp_path_factory.mktemp("v1-sdks-http")
    server = ServerProcess(f"sqlite:///{directory / 'server.db'}", cwd=directory)
    yield server.start(*SERVE_FLAGS)
    server.stop()


def _run_node(scenario: str, server: ServerProcess, app_file: Path, *args: str) -> dict[str, Any]:
    """tests/acceptance/node/send_v1.mjs: its JSON report (it judges nothing itself)."""
    completed = subprocess.run(
        [
            "node", str(NODE_PROJECT / "send_v1.mjs"), scenario,
            "--api-host", server.url, "--app", str(app_file), *args,
        ],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "failure" not in report, report["failure"]
    return report


@pytest.mark.usefixtures("node_sdk")
def test_node_sdk_failover_reports_each_status_signed_to_each_messages_webhook_url(
    http_server: ServerProcess, tmp_path: Path
):
    # Nothing listens at the application's status URL: each message names its own webhook_url.
    app = _create_app(http_server, "http://127.0.0.1:9/status", tmp_path / "shop.json")

    report = _run_node(
        "failover", http_server, tmp_path / "shop.json",
        "--whatsapp-to", REJECTED_ON_WHATSAPP, "--sms-to", DELIVERED_BY_SMS,
    )  # fmt: skip

    assert report["sms_ended"], report["webhooks"]
    for webhook in report["webhooks"]:
        assert webhook["path"] == "/status"
        assert webhook["verified"] is True, webhook
        assert webhook["payload_hash_matches"] is True, webhook
        assert webhook["claims"]["api_key"] == app.api_key
        assert webhook["claims"]["application_id"] == app.application_id
    bodies = [w["body"] for w in report["webhooks"]]
    # The SDK's answer is `{messageUUID}` alone (it drops the 202's workflow_id), so the
    # webhooks' workflow_id is what a Node user has to tie the failover together.
    assert _assert_failover_story(bodies, report["sent"]["messageUUID"])
    assert [b["client_ref"] for b in bodies if b["channel"] == "whatsapp"] == ["node-sdk"]


@pytest.mark.usefixtures("node_sdk")
def test_node_sdk_message_of_every_kind_its_classes_build_is_accepted(
    http_server: ServerProcess, tmp_path: Path
):
    _create_app(http_server, "http://127.0.0.1:9/status", tmp_path / "shop.json")

    report = _run_node("kinds", http_server, tmp_path / "shop.json", "--to", DELIVERED_BY_SMS)

    assert report["refused"] == {}
    assert len(report["accepted"]) == 7, report


@pytest.mark.usefixtures("node_sdk")
def test_node_sdk_rejects_with_its_vetch_error_and_our_problem_details_in_the_response(
    http_server: ServerProcess, tmp_path: Path
):
    _create_app(http_server, "http://127.0.0.1:9/status", tmp_path / "shop.json")

    error = _run_node("invalid", http_server, tmp_path / "shop.json", "--to", NOT_A_NUMBER)["error"]

    # VetchError says only the status; the problem details are in its unread `response`.
    assert error["name"] == "VetchError"
    assert error["message"] == "Request failed with status code 422"
    assert error["content_type"].startswith("application/problem+json")
    assert error["body"]["title"] == "Invalid params"
    assert [p["name"] for p in error["body"]["invalid_parameters"]] == ["to"]
