"""`opendispatch tail` as an operator runs it: a real process following real servers, on
SQLite (one server) and on PostgreSQL (two), until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import TestDatabase
from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, run_cli, step

pytestmark = pytest.mark.slow


def create_app(database: str, name: str, url: str) -> AppCredentials:
    created = run_cli(
        "apps", "create", "--name", name, "--status-url", f"{url}/{name}",
        "--allow-private-webhooks", "--database", database, "--json",
    )  # fmt: skip
    return AppCredentials.from_json(json.loads(created))


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tail:
    """`opendispatch tail ARGS...` in its own process, its output in files."""

    def __init__(self, directory: Path, name: str, *args: str) -> None:
        self.out = directory / f"{name}.out"
        self.err = directory / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "opendispatch", "tail", "--interval", "0.2", *args],
                stdout=out,
                stderr=err,
                env=dict(os.environ),
                # As at a terminal: a shell running this suite in the background (`.ci/run &`)
                # makes its children ignore SIGINT, and Python then never turns Ctrl-C into
                # KeyboardInterrupt; CI failed on that, not on `tail`.
                preexec_fn=_interruptible,
            )
        assert _wait(lambda: "following new events" in self.err.read_text(), 30), self.report()

    def lines(self) -> list[str]:
        """Each line without its timestamp, spaces squeezed: `status <uuid> step 0 ...`."""
        return [" ".join(line.split()[1:]) for line in self.out.read_text().splitlines()]

    def report(self) -> str:
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()}"


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_tail_follows_each_event_as_it_happens_and_ctrl_c_ends_it_quietly(
    database: TestDatabase, server_factory: Any, tmp_path: Path
):
    """Alice's workflow goes through the API of one server (WhatsApp rejected, then SMS),
    Bob's from `opendispatch send` (on PostgreSQL, another server runs beside): every
    event shows once, in the order it happened, including a webhook her receiver refused;
    `--application` shows one application's only; Ctrl-C ends both with status 0."""
    with WebhookReceiver() as hooks:
        alice = create_app(database.url, "alice", hooks.url)
        bob = create_app(database.url, "bob", hooks.url)
        # The sandbox's `delivered` comes a second after its send, so the send's answer
        # (`submitted`, with the price and the provider) is recorded first. A callback may
        # come first from a real provider, and then the status and the end show what was
        # known when they happened (the engine's rule); at 100 ms a loaded machine sometimes
        # recorded the answer after the status, and this test would see that other story.
        delays = ("--sandbox-delivered-after-ms", "1000", "--sandbox-read-after-ms", "100")
        servers = [server_factory(database.url).start(*delays)]
        if database.kind == "postgres":
            servers.append(server_factory(database.url).start(*delays))
        everything = Tail(tmp_path, "all", "--database", database.url)
        bobs = Tail(
            tmp_path, "bob", "--database", database.url, "--application", bob.application_id
        )

        hooks.fail_next(1, status=503)  # one delivery refused: a failure to see
        body = {
            "template": "failover",
            "workflow": [
                step("whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"}),
                step("sms", "447700900003"),
            ],
        }
        with httpx.Client(base_url=servers[0].url) as client:
            answer = client.post("/v0.1/dispatch", json=body, headers=alice.basic())
        a = answer.json()["dispatch_uuid"]
        v1 = {
            "channel": "whatsapp", "message_type": "text", "to": "447700900001",
            "from": "447700900000", "text": "hi",
            "failover": [{"channel": "sms", "message_type": "text", "to": "447700900003",
                          "from": "Shop", "text": "hi"}],
        }  # fmt: skip
        with httpx.Client(base_url=servers[0].url) as client:
            sent_v1 = client.post("/v1/messages", json=v1, headers=alice.basic())
            late_v1 = {
                "channel": "whatsapp", "message_type": "text", "to": "447700900005",
                "from": "447700900000", "text": "hi",
            }  # fmt: skip
            sent_late = client.post("/v1/messages", json=late_v1, headers=alice.basic())
        c = sent_v1.json()["workflow_id"]
        b = run_cli(
            "send", "--application", bob.application_id, "--to", "whatsapp:447700900005",
            "--text", "hi", "--database", database.url,
        ).strip()  # fmt: skip

        expected_a = [
            f"accepted {a} application {alice.application_id} whatsapp -> sms",
            f"status {a} step 0 whatsapp rejected via sandbox error 1300: Not part of the "
            "provider network (sandbox: recipient ends in 1)",
            f"failover {a} step 0 whatsapp -> step 1 sms (rejected)",
            f"status {a} step 1 sms submitted via sandbox",
            f"status {a} step 1 sms delivered via sandbox",
            f"ended {a} completed usage 0.0070 EUR",
        ]
        expected_b = [
            f"accepted {b} application {bob.application_id} whatsapp",
            f"status {b} step 0 whatsapp submitted via sandbox",
            f"status {b} step 0 whatsapp delivered via sandbox",
            f"ended {b} completed usage 0.0140 EUR",  # delivered completes a last message
            f"status {b} step 0 whatsapp read via sandbox",  # late: forwarded all the same
        ]

        # The Messages API v1: the same story (its error in v1's shape); it has no final
        # report, and its end is read from the workflow.
        expected_c = [
            f"accepted {c} application {alice.application_id} whatsapp -> sms",
            f"status {c} step 0 whatsapp rejected via sandbox error 1300: Not part of the "
            "provider network (sandbox: recipient ends in 1)",
            f"failover {c} step 0 whatsapp -> step 1 sms (rejected)",
            f"status {c} step 1 sms submitted via sandbox",
            f"status {c} step 1 sms delivered via sandbox",
            f"ended {c} completed usage 0.0070 EUR",
        ]

        # Its one message delivered ends it; `read` comes later: the end shows once.
        d_uuid = sent_late.headers["location"].rsplit("/", 1)[1]  # its workflow
        expected_d = [
            f"accepted {d_uuid} application {alice.application_id} whatsapp",
            f"status {d_uuid} step 0 whatsapp submitted via sandbox",
            f"status {d_uuid} step 0 whatsapp delivered via sandbox",
            f"ended {d_uuid} completed usage 0.0140 EUR",
            f"status {d_uuid} step 0 whatsapp read via sandbox",
        ]

        def shown(tail: Tail, expected: list[str]) -> bool:
            return all(line in tail.lines() for line in expected)

        def refused(tail: Tail) -> list[str]:
            return [line for line in tail.lines() if "failed: answered 503" in line]

        assert _wait(
            lambda: shown(everything, expected_a + expected_b + expected_c + expected_d), 30
        ), everything.report()
        assert _wait(lambda: bool(refused(everything)), 30), everything.report()
        assert _wait(lambda: shown(bobs, expected_b), 30), bobs.report()
        for tail in (everything, bobs):
            tail.process.send_signal(signal.SIGINT)
        codes = [tail.process.wait(timeout=15) for tail in (everything, bobs)]

    assert codes == [0, 0]
    for tail in (everything, bobs):
        assert tail.err.read_text() == "following new events (Ctrl-C to stop)\n", tail.report()

    def events_of(tail: Tail, dispatch_uuid: str) -> list[str]:
        return [
            line
            for line in tail.lines()
            if line.split()[1] == dispatch_uuid and not line.startswith("webhook ")
        ]

    # Each once, in the order it happened.
    assert events_of(everything, a) == expected_a, everything.report()
    assert events_of(everything, b) == expected_b, everything.report()
    assert events_of(everything, c) == expected_c, everything.report()
    assert events_of(everything, d_uuid) == expected_d, everything.report()
    assert events_of(bobs, b) == expected_b, bobs.report()
    assert not any(a in line for line in bobs.lines()), bobs.report()
    [failure] = refused(everything)
    assert failure.startswith("webhook ")
    assert "attempt 1 failed: answered 503; next try" in failure
