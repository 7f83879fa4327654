"""The server's log tells what happened: a workflow accepted, each step sent, a failover and
why, the end; a webhook attempt that failed (where to, why) and one given up. In text and in
JSON, from a real server process, with never a secret in it, even at `--log-level debug`."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import TestDatabase
from tests.fakes.twilio import FakeTwilio
from tests.live import SECRET_KEY, final_report, get_workflow, live_setup
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, free_port, step

pytestmark = pytest.mark.slow

QUERY_SECRET = "q-s3cr3t-in-the-query"
_TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$"
)
_FIELD = re.compile(r' (\w+)=("(?:[^"\\]|\\.)*"|\S+)')


@dataclass(frozen=True)
class Line:
    """One log line, read back the same way whatever its format."""

    index: int
    level: str
    logger: str
    message: str
    event: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def parse_text(log: str) -> list[Line]:
    """`time LEVEL logger: event key=value ...`; a value with spaces is quoted."""
    lines = []
    for index, raw in enumerate(log.splitlines()):
        match = _TEXT_LINE.match(raw)
        assert match, f"not a log line: {raw!r}"
        message = match["message"]
        event, fields = None, {}
        if match["logger"] == "opendispatch.events":
            event = re.split(r" \w+=", message, maxsplit=1)[0]
            for key, value in _FIELD.findall(message[len(event) :]):
                fields[key] = json.loads(value) if value.startswith('"') else value
        lines.append(Line(index, match["level"], match["logger"], message, event, fields))
    return lines


def parse_json(log: str) -> list[Line]:
    """Every line is one JSON object: `time`, `level`, `logger`, `message`, and an event's
    name and fields."""
    lines = []
    for index, raw in enumerate(log.splitlines()):
        entry = json.loads(raw)  # fails the test on any line that is not JSON
        assert isinstance(entry, dict), raw
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("time")), raw
        level, logger, message = entry.pop("level"), entry.pop("logger"), entry.pop("message")
        event = entry.pop("event", None)
        lines.append(Line(index, level, logger, message, event, entry))
    return lines


@dataclass
class Story:
    """One server's run: what it was sent, what it logged, and every secret it was given."""

    log: str
    sandbox_app: AppCredentials
    live_app: AppCredentials
    dead_app: AppCredentials
    sandbox_uuid: str
    live_uuid: str
    dead_uuid: str
    message_uuids: list[str]
    receiver_url: str
    dead_url: str
    secrets: list[str]

    def events(self, lines: list[Line], name: str, **fields: Any) -> list[Line]:
        return [
            line
            for line in lines
            if line.event == name
            and all(str(line.fields.get(key)) == str(value) for key, value in fields.items())
        ]


def _post(url: str, headers: dict[str, str], workflow: list[dict[str, Any]]) -> str:
    answer = httpx.post(
        f"{url}/v0.1/dispatch",
        json={"template": "failover", "workflow": workflow},
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["dispatch_uuid"])


def run_story(database_url: str, tmp_path: Path, *args: str, env: dict[str, str]) -> Story:
    """A sandbox workflow that fails over (WhatsApp rejected at once, then SMS delivered), its
    first webhook answered 500 once; a live one through a (fake) Twilio account, sent with a
    JWT; a third application whose receiver is not there, its webhook given up."""
    dead_url = f"http://127.0.0.1:{free_port()}/gone"
    with (
        WebhookReceiver() as receiver,
        WebhookReceiver() as live_receiver,
        live_setup(database_url, tmp_path) as live,
    ):
        twilio = live.account("twilio-main", FakeTwilio())
        assert isinstance(twilio, FakeTwilio)
        sandbox_app = live.application(
            status_url=f"{receiver.url}/status?token={QUERY_SECRET}", live=False
        )
        dead_app = live.application(status_url=dead_url, live=False)
        live_app = live.application(status_url=f"{live_receiver.url}/live")
        live.route(live_app, "sms", "twilio-main")
        server = live.serve(
            *args,
            "--sandbox-delivered-after-ms", "100",
            "--webhook-retry-period", "2",  # the dead receiver's webhook is given up soon
            env=env,
        )  # fmt: skip
        receiver.fail_next(1, status=500)
        sandbox_uuid = _post(
            server.url,
            {**sandbox_app.basic(), "X-Request-Id": "story-sandbox-1"},
            [
                step("whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"}),
                step("sms", "447700900009"),
            ],
        )
        bearer = live_app.bearer()
        live_uuid = _post(server.url, bearer, [step("sms", "447700900003")])
        dead_uuid = _post(server.url, dead_app.basic(), [step("sms", "447700900004")])
        received = receiver.wait_for(lambda got: final_report(got, sandbox_uuid), timeout_s=20)
        received += live_receiver.wait_for(lambda got: final_report(got, live_uuid), timeout_s=20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            dead = httpx.get(
                f"{server.url}/v0.1/webhooks?state=dead", headers=dead_app.basic(), timeout=10
            ).json()
            if dead["_embedded"]["webhooks"]:
                break
            time.sleep(0.1)  # real time: the webhook's retry period must pass
        view = get_workflow(server, sandbox_app, sandbox_uuid)
        server.stop()
        log = server.log()
        secrets = [
            SECRET_KEY,
            QUERY_SECRET,
            twilio.auth_token,
            base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode(),
            bearer["Authorization"].removeprefix("Bearer "),
            *(webhook.headers["authorization"].removeprefix("Bearer ") for webhook in received),
        ]
        for app in (sandbox_app, live_app, dead_app):
            secrets += [
                app.api_secret,
                app.signature_secret,
                app.basic()["Authorization"].removeprefix("Basic "),
                *app.private_key.splitlines()[1:-1],  # the key's base64 body, line by line
            ]
    return Story(
        log=log,
        sandbox_app=sandbox_app,
        live_app=live_app,
        dead_app=dead_app,
        sandbox_uuid=sandbox_uuid,
        live_uuid=live_uuid,
        dead_uuid=dead_uuid,
        message_uuids=[message["message_uuid"] for message in view["messages"]],
        receiver_url=receiver.url,
        dead_url=dead_url,
        secrets=secrets,
    )


def check_story(story: Story, lines: list[Line]) -> None:
    sandbox = {
        "dispatch_uuid": story.sandbox_uuid,
        "application_id": story.sandbox_app.application_id,
    }
    [accepted] = story.events(lines, "workflow accepted", **sandbox)
    assert accepted.level == "INFO"
    assert accepted.fields["request_id"] == "story-sandbox-1"
    assert str(accepted.fields["steps"]) == "2"
    first, second = story.message_uuids
    [rejected] = story.events(
        lines, "step sent", **sandbox, message_uuid=first, step=0, channel="whatsapp"
    )
    assert rejected.level == "INFO"
    assert (rejected.fields["provider"], rejected.fields["outcome"]) == ("sandbox", "rejected")
    assert str(rejected.fields["error"]) == "1300"
    assert "sandbox: recipient ends in 1" in rejected.fields["reason"]
    [failover] = story.events(lines, "failover", **sandbox)
    assert failover.level == "INFO"
    assert [str(failover.fields[k]) for k in ("from_step", "to_step")] == ["0", "1"]
    assert failover.fields["reason"] == "rejected"
    [sent] = story.events(lines, "step sent", **sandbox, message_uuid=second, step=1)
    assert (sent.fields["channel"], sent.fields["outcome"]) == ("sms", "submitted")
    [ended] = story.events(lines, "workflow ended", **sandbox)
    assert ended.level == "INFO"
    assert (ended.fields["status"], str(ended.fields["messages"])) == ("completed", "2")
    assert accepted.index < rejected.index < failover.index < sent.index < ended.index

    # The live workflow: its provider named, the request id the server chose for it.
    live = {"dispatch_uuid": story.live_uuid, "application_id": story.live_app.application_id}
    [live_accepted] = story.events(lines, "workflow accepted", **live)
    assert re.fullmatch(r"[0-9a-f-]{36}", live_accepted.fields["request_id"])
    [live_sent] = story.events(lines, "step sent", **live)
    assert (live_sent.fields["provider"], live_sent.fields["outcome"]) == (
        "twilio-main",
        "submitted",
    )
    assert story.events(lines, "workflow ended", **live, status="completed")

    # The webhook answered 500 once: one failed attempt, per attempt so at DEBUG, with where
    # it went (its query hidden) and why.
    [failed] = story.events(lines, "webhook attempt failed", **sandbox)
    assert failed.level == "DEBUG"
    assert failed.fields["url"] == f"{story.receiver_url}/status?***"
    assert (str(failed.fields["status_code"]), failed.fields["reason"]) == ("500", "HTTP 500")
    assert (failed.fields["kind"], str(failed.fields["attempt"])) == ("message_status", "1")
    assert int(failed.fields["retry_in_ms"]) > 0

    # The receiver that is not there: its webhook given up, said as a warning.
    dead = {"dispatch_uuid": story.dead_uuid, "application_id": story.dead_app.application_id}
    refused = story.events(lines, "webhook attempt failed", **dead, url=story.dead_url)
    assert refused
    assert refused[0].fields["status_code"] in ("-", None)
    assert "refused" in refused[0].fields["reason"]
    [given_up] = story.events(lines, "webhook dead", **dead, url=story.dead_url)
    assert given_up.level == "WARNING"
    assert given_up.fields["reason"]

    for secret in story.secrets:
        assert secret not in story.log, f"a secret is in the log: {secret[:6]}..."


def test_text_lines_tell_each_event_with_its_fields_and_no_secret(
    database: TestDatabase, tmp_path: Path
):
    story = run_story(
        database.url, tmp_path, "--log-level", "debug", "--log-format", "text", env={}
    )
    check_story(story, parse_text(story.log))


def test_json_lines_tell_the_same_and_every_line_is_json(database: TestDatabase, tmp_path: Path):
    story = run_story(
        database.url,
        tmp_path,
        "--log-level", "debug",
        env={"OPENDISPATCH_LOG_FORMAT": "json"},  # the environment's name for --log-format
    )  # fmt: skip
    lines = parse_json(story.log)
    check_story(story, lines)
    # Fields keep their JSON types; uvicorn's own lines are JSON too.
    [accepted] = [line for line in lines if line.event == "workflow accepted"][:1]
    assert accepted.fields["steps"] == 2
    assert accepted.message.startswith("workflow accepted dispatch_uuid=")
    assert any(line.event == "webhook attempt failed" and line.fields["status_code"] == 500
               for line in lines)  # fmt: skip
    assert any(
        line.logger == "uvicorn.error" and "startup complete" in line.message for line in lines
    )


def test_the_default_level_tells_workflows_and_leaves_attempts_out(tmp_path: Path):
    story = run_story(f"sqlite:///{tmp_path / 'default.db'}", tmp_path, env={})
    lines = parse_text(story.log)
    sandbox = {"dispatch_uuid": story.sandbox_uuid}
    for name in ("workflow accepted", "step sent", "failover", "workflow ended", "webhook dead"):
        assert story.events(lines, name), name
    assert not story.events(lines, "webhook attempt failed", **sandbox)
    assert all(line.level != "DEBUG" for line in lines)
