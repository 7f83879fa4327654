"""README.md's shell commands, run as a newcomer runs them, so the README cannot drift.

Every shell block (```sh) of README.md is covered in one of two ways:

- The blocks of the sections in `RUN_HERE` ("Try it") are run by bash, in order, in a fresh
  directory, against a real server process, as they are written. Only the ports change:
  8080 and 9000 become free ones (`OPENDISPATCH_PORT` gives the server its port), and
  `.venv/bin/` holds shims for the interpreter running the tests. A block that runs until
  stopped (`LONG_RUNNING`) is started in the background, like a second terminal.
- Any other block is named in `COVERED_ELSEWHERE` by a snippet of its text, with the test
  that exercises it (`tests/...py::test_name`, then any note), or `not run: ` and why.

`test_every_shell_block_is_run_or_mapped` fails for a shell block that is neither (or that
several snippets name), for a snippet found in no block, and for a test that does not exist.
To cover a new block, add one line to `COVERED_ELSEWHERE`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opendispatch.webhooks.signing import Signer
from tests.readme import Block, blocks, shell_blocks
from tests.support import REPO, free_port

RUN_HERE = frozenset({"Try it"})
LONG_RUNNING = ("opendispatch serve",)  # a block containing this runs until it is stopped
# A block containing this is run once the receiver has printed the final report, as a reader
# runs it once the receiver's output stops.
AFTER_THE_FAILOVER = "/v0.1/dispatch/$DISPATCH_UUID"
PORTS = ("8080", "9000")  # the server's and the receiver's, replaced by free ones
RECEIVER = REPO / "examples" / "receiver.py"
BACKGROUND_JOB = re.compile(r"(?<!&)&\s*$", re.MULTILINE)  # a line that starts a job with `&`
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\S+Z ")  # how the receiver's lines start

COVERED_ELSEWHERE: dict[str, str] = {
    # Set up (two commands)
    "pip install -e .": "tests/acceptance/test_disk_failures.py"
    "::test_a_fresh_directory_gets_its_database_without_a_step (serve with no flag; the"
    " install is what ./scripts/test does)",
    "./scripts/test": "not run: the test run itself (.ci/run runs exactly it, with"
    " OPENDISPATCH_TEST_POSTGRES set)",
    # The API: Messages API v1
    "http://127.0.0.1:8080/v1/messages": "tests/acceptance/test_messages_v1_readme.py"
    "::test_the_readme_v1_example_fails_over_to_sms_with_signed_v1_webhooks",
    # Command line
    "opendispatch send --application": "tests/acceptance/test_cli_send.py"
    "::test_a_workflow_sent_from_the_cli_runs_at_once_on_the_running_server_with_its_failover"
    " (send and status; tail: tests/acceptance/test_cli_tail.py"
    "::test_tail_follows_each_event_as_it_happens_and_ctrl_c_ends_it_quietly)",
    "opendispatch db purge-expired": "tests/acceptance/test_cli_progress.py"
    "::test_purge_expired_runs_retention_to_its_end_with_progress (db upgrade's lines:"
    " tests/acceptance/test_cli.py"
    "::test_db_upgrade_says_each_migration_as_it_starts_and_its_duration_as_it_ends)",
    # The API: Idempotency
    "Idempotency-Key: order-1042-code": "tests/integration/test_idempotency.py"
    "::test_the_same_key_and_body_again_get_the_first_answer_and_no_second_workflow (the"
    " header and a body of fixed bytes, as curl -d @file sends them)",
    # The developer sandbox
    "/v0.1/sandbox/messages/": "tests/integration/test_runtime.py"
    "::test_injected_statuses_move_a_silent_message",
    # Real providers: real accounts are needed; sends through local fakes: test_live_providers.py
    "opendispatch providers add": "tests/acceptance/test_cli_providers.py"
    "::test_apps_route_orders_providers_and_refuses_what_cannot_work",
    # Webhooks
    "apps create --name dev": "tests/acceptance/test_cli.py"
    "::test_allow_private_webhooks_by_flag_or_environment",
    "opendispatch webhooks replay": "tests/integration/test_webhook_routes.py"
    "::test_the_cli_lists_and_replays_dead_webhooks",
    # Webhooks: Changing an application (update, rotate-secret, list: the same file's others)
    "opendispatch apps rotate-secret ID": "tests/acceptance/test_changing_applications.py"
    "::test_deleting_an_application_ends_its_running_workflows_on_a_running_server",
    # Dashboard
    "opendispatch operators create alice": "tests/acceptance/test_dashboard_http.py"
    "::test_operators_cli_lists_and_deletes_and_a_deleted_operator_is_signed_out (create: its"
    " fixture, tests/dashboard.py)",
    # HTTPS
    "--tls-cert /etc/opendispatch/cert.pem": "tests/acceptance/test_https.py"
    "::test_the_api_is_served_over_https_to_a_client_trusting_the_ca (the files' problems:"
    " tests/acceptance/test_start_failures.py)",
    # Scale out on PostgreSQL
    "opendispatch db upgrade --database postgresql": "tests/acceptance/test_scale_out.py"
    "::test_three_processes_share_the_work_and_send_every_step_exactly_once",
    # Container: no Docker engine on the test machines; the files' command lines run instead
    "docker build -t opendispatch .": "tests/acceptance/test_container.py"
    "::test_image_serves_on_every_interface_as_its_user_with_the_database_in_the_volume"
    " (the image itself: test_docker_builds_the_image_and_it_becomes_healthy, where docker"
    " works; names checked: tests/unit/test_container_files.py)",
    "docker compose up -d --build": "tests/acceptance/test_container.py"
    "::test_compose_servers_start_together_and_each_serves_what_the_other_accepted"
    " (runs the .env command as written)",
    # Performance
    "bench/accept.py": "not run: benchmarks, minutes each (bench/ is not part of the test run)",
}


# -- every block is accounted for -------------------------------------------------------------


def _mapped(block: Block) -> list[str]:
    return [snippet for snippet in COVERED_ELSEWHERE if snippet in block.text]


def _coverage_problems(found: list[Block]) -> list[str]:
    problems = []
    for block in found:
        if block.section in RUN_HERE:
            continue
        matches = _mapped(block)
        if not matches:
            problems.append(f"{block.where()}: neither run nor in COVERED_ELSEWHERE")
        elif len(matches) > 1:
            problems.append(f"{block.where()}: matched by several entries {matches}")
    elsewhere = [block for block in found if block.section not in RUN_HERE]
    for snippet, coverage in COVERED_ELSEWHERE.items():
        if not any(snippet in _mapped(block) for block in elsewhere):
            problems.append(
                f"COVERED_ELSEWHERE[{snippet!r}] is in no shell block outside {RUN_HERE}"
            )
        if coverage.startswith("not run: "):
            continue
        node = coverage.split(" ", 1)[0]
        path, _, name = node.partition("::")
        source = REPO / path
        if not name or not source.is_file() or f"def {name}(" not in source.read_text():
            problems.append(f"COVERED_ELSEWHERE[{snippet!r}]: no test {node}")
    return problems


def test_every_shell_block_is_run_or_mapped():
    problems = _coverage_problems(shell_blocks())
    assert not problems, "\n".join(problems)


def test_a_new_shell_block_is_caught(tmp_path: Path):
    """Whatever its fence says (sh, bash, console...), a block nobody runs fails the check."""
    readme = tmp_path / "README.md"
    readme.write_text("## Somewhere\n\n```bash\nopendispatch frobnicate\n```\n\n```text\nx\n```\n")
    [new] = shell_blocks(readme)
    assert (new.section, new.line, new.text) == ("Somewhere", 3, "opendispatch frobnicate\n")
    assert (
        "README.md:3 (Somewhere): opendispatch frobnicate: neither run nor in COVERED_ELSEWHERE"
        in _coverage_problems([*shell_blocks(), new])
    )


# -- the receiver the README shows is the one committed ---------------------------------------


def test_the_readme_shows_the_committed_receiver():
    shown = [b.text for b in blocks() if b.section == "Try it" and b.language == "python"]
    assert RECEIVER.read_text() in shown, "README 'Try it' must show examples/receiver.py as is"


SECRET = "kN3x0-5Ht4yQ2vR8sW1zL6mP9bC7dF0gJ2hK4nT6uV8"  # as long as a real signature secret


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """examples/receiver.py on a free port, with the signature secret `SECRET`."""
    port = free_port()
    output = tmp_path / "receiver.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(RECEIVER), str(port)],
            env={**os.environ, "SIGNATURE_SECRET": SECRET},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/webhooks", output
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_receiver_prints_a_signed_webhook_and_refuses_a_bad_signature(
    receiver: tuple[str, Path],
):
    url, output = receiver
    body = b'{"timestamp":"2026-01-01T00:00:00.000Z","to":{"type":"sms"},"status":"delivered"}'

    def signed(content: bytes, secret: str, issuer: str = "Vonage") -> dict[str, str]:
        token = Signer(issuer=issuer).authorization(
            content,
            signature_secret=secret,
            api_key="k",
            application_id="a",
            now_s=int(time.time()),
            jti="j",
        )
        return {"Authorization": token, "Content-Type": "application/json"}

    assert httpx.post(url, content=body, headers=signed(body, SECRET)).status_code == 200
    refused = [
        httpx.post(url, content=body, headers=signed(body, "another secret")),
        httpx.post(url, content=body.replace(b"delivered", b"read"), headers=signed(body, SECRET)),
        httpx.post(url, content=body, headers=signed(body, SECRET, issuer="Mallory")),
        httpx.post(url, content=body, headers={"Content-Type": "application/json"}),
        httpx.post(url, content=body, headers={"Authorization": "Bearer not.a.token"}),
    ]
    assert [answer.status_code for answer in refused] == [401] * 5
    lines = output.read_text().splitlines()
    assert lines[0].split() == ["2026-01-01T00:00:00.000Z", "sms", "delivered"]
    assert lines[1:] == ["refused a webhook: bad signature"] * 5


# -- "Try it", for real -----------------------------------------------------------------------


class Terminal:
    """Runs README blocks with bash in one directory, carrying exported variables along.

    Each block runs under `set -euo pipefail`, so a failing command or an unset variable
    fails the test. Its output, and that of the jobs it starts with `&`, goes to a file of its
    own, as if each block had a terminal.
    """

    def __init__(self, directory: Path, ports: dict[str, int]) -> None:
        self.directory = directory
        self.ports = ports
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDISPATCH_")}
        # The sandbox's delays stay the README's (1 s): 0.1 s would save 2 s of the 15 s wait.
        self.env["OPENDISPATCH_PORT"] = str(ports["8080"])
        self.sessions: list[subprocess.Popen[bytes]] = []
        self.outputs: dict[Path, bool] = {}  # each block's output file: is it a foreground one?
        bin_dir = directory / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        for name, command in (("python", ""), ("opendispatch", " -m opendispatch")):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}"{command} "$@"\n')
            shim.chmod(0o755)
        (directory / "examples").mkdir()
        shutil.copy(RECEIVER, directory / "examples" / "receiver.py")

    def script(self, block: Block) -> str:
        text = block.text
        for port in self.ports_in(block):
            text = re.sub(rf"\b{port}\b", str(self.ports[port]), text)
        return text

    def start(self, block: Block, *, foreground: bool = False) -> subprocess.Popen[bytes]:
        """Start `block` in a session of its own (its jobs stay in its process group)."""
        output = self.directory / f"block-{block.line}.out"
        self.outputs[output] = foreground
        save_env = f'"{sys.executable}" -c "{_SAVE_ENV}" {self.directory / "exported.json"}'
        with output.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", f"set -euo pipefail\n{self.script(block)}\n{save_env}\n"],
                cwd=self.directory,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.sessions.append(process)
        return process

    def run(self, block: Block) -> str:
        """Run `block` to its end; what it exported is seen by the next block."""
        returncode = self.start(block, foreground=True).wait(timeout=60)
        output = list(self.outputs)[-1].read_text(errors="replace")
        assert returncode == 0, f"{block.where()} failed ({returncode}):\n{output}"
        self.env = json.loads((self.directory / "exported.json").read_text())
        if BACKGROUND_JOB.search(block.text):  # listening by the time a reader pastes on
            named = [self.ports[port] for port in self.ports_in(block)]
            assert _wait_for(lambda: all(map(_listening, named)), 10), self.transcript()
        return output

    def ports_in(self, block: Block) -> list[str]:
        return [port for port in self.ports if re.search(rf"\b{port}\b", block.text)]

    def printed(self) -> str:
        """What the foreground blocks and their jobs (the receiver) printed so far."""
        return "".join(path.read_text() for path, foreground in self.outputs.items() if foreground)

    def transcript(self) -> str:
        """Everything, the server's log included: for a failing test's message."""
        return "\n".join(f"--- {path.name}\n{path.read_text()}" for path in self.outputs)

    def close(self) -> None:
        """Stop every process a block started, each session being its own process group."""
        for process in self.sessions:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.sessions:
            process.wait(timeout=15)


_SAVE_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


def _wait_for_port(port: int, process: subprocess.Popen[bytes], path: str = "/") -> None:
    """Until `port` answers HTTP (200, for /health), while `process` runs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early with {process.returncode}"
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            if path != "/health" or answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nothing ready on {port}{path} after 30 s")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _receiver_lines(printed: str) -> list[list[str]]:
    """What the receiver printed, without the timestamps: [["sms", "delivered"], ...]."""
    return [line.split()[1:] for line in printed.splitlines() if TIMESTAMP.match(line)]


def _final_report_printed(printed: str) -> bool:
    return any(line[:2] == ["final", "report"] for line in _receiver_lines(printed))


# What the receiver prints for the README's workflow, in the order things happen.
THE_FAILOVER = [
    ["whatsapp", "submitted"],
    ["whatsapp", "delivered"],
    ["sms", "submitted"],
    ["sms", "delivered"],
    ["final", "report", "completed"],
]


@pytest.mark.slow
def test_try_it_shows_a_failover_with_verified_webhooks(tmp_path: Path):
    """The README's "Try it" as written: WhatsApp not read in time, then SMS (about 16 s)."""
    ports = {port: free_port() for port in PORTS}
    terminal = Terminal(tmp_path, ports)
    last_output = ""
    try:
        for block in [block for block in shell_blocks() if block.section in RUN_HERE]:
            if any(marker in block.text for marker in LONG_RUNNING):
                _wait_for_port(ports["8080"], terminal.start(block), "/health")
                continue
            if AFTER_THE_FAILOVER in block.text:
                printed_it = _wait_for(lambda: _final_report_printed(terminal.printed()), 40)
                assert printed_it, terminal.transcript()
            last_output = terminal.run(block)
        printed, transcript = terminal.printed(), terminal.transcript()
    finally:
        terminal.close()

    # The receiver printed each webhook, all verified, the final report last (webhooks are
    # delivered concurrently: two that happened close together may arrive swapped).
    lines = _receiver_lines(printed)
    assert sorted(lines) == sorted(THE_FAILOVER), transcript
    assert lines[-1] == THE_FAILOVER[-1], transcript
    assert "refused" not in printed, transcript
    # The story: delivered, never read, and the SMS sent once the 15 s had passed.
    story = json.loads(last_output)
    assert story["status"] == "completed", story
    whatsapp, sms = story["messages"]
    assert whatsapp["channel"] == "whatsapp"
    assert [event["status"] for event in whatsapp["history"]] == ["submitted", "delivered"]
    assert (sms["channel"], sms["status"]) == ("sms", "delivered")
    waited = _instant(sms["sent_at"]) - _instant(whatsapp["sent_at"])
    assert waited.total_seconds() >= 15, (whatsapp["sent_at"], sms["sent_at"])
    assert [webhook["state"] for webhook in story["webhooks"]] == ["delivered"] * 5
