"""Test support: request bodies, credentials, real server processes, the CLI as a subprocess."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from opendispatch.auth.provisioning import ProvisionedApplication

if TYPE_CHECKING:
    from tests.tls_ca import TestCA

REPO = Path(__file__).resolve().parent.parent


# -- request bodies ---------------------------------------------------------------------------


def two_step_workflow(number: str = "447700900001") -> dict[str, Any]:
    """WhatsApp, failing over to SMS if not read within 10 minutes: the README's example."""
    return {
        "template": "failover",
        "workflow": [
            {
                "to": {"type": "whatsapp", "number": number},
                "from": {"type": "whatsapp", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "Your code is 64873"}},
                "failover": {"expiry_time": 600, "condition_status": "read"},
            },
            {
                "to": {"type": "sms", "number": number},
                "from": {"type": "sms", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "Your code is 64873"}},
            },
        ],
    }


def step(channel: str, number: str, failover: dict[str, Any] | None = None) -> dict[str, Any]:
    """One message of a workflow, to `number` on `channel` (the sandbox reads its last digit)."""
    message: dict[str, Any] = {
        "to": {"type": channel, "number": number},
        "from": {"type": channel, "number": "447700900000"},
        "message": {"content": {"type": "text", "text": "code 1234"}},
    }
    if failover:
        message["failover"] = failover
    return message


# -- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppCredentials:
    application_id: str
    api_key: str
    api_secret: str
    private_key: str
    signature_secret: str

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> AppCredentials:
        return cls(
            application_id=fields["application_id"],
            api_key=fields["api_key"],
            api_secret=fields["api_secret"],
            private_key=fields["private_key"],
            signature_secret=fields["signature_secret"],
        )

    @classmethod
    def from_provisioned(cls, provisioned: ProvisionedApplication) -> AppCredentials:
        return cls.from_json(provisioned.as_json())

    def basic(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def bearer(self, **claims: Any) -> dict[str, str]:
        """A JWT as Vonage's SDKs make it; `claims` override or (with None) remove claims."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "application_id": self.application_id,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "exp": now + 900,
        }
        for name, value in claims.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        token = jwt.encode(payload, self.private_key, algorithm="RS256")
        return {"Authorization": f"Bearer {token}"}


# -- in-process API ---------------------------------------------------------------------------


# -- real processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run `opendispatch ARGS...` as a user would; returns stdout, fails the test on error."""
    completed = subprocess.run(
        [sys.executable, "-m", "opendispatch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def create_app_with_cli(database_url: str, name: str = "cli-app") -> AppCredentials:
    output = run_cli(
        "apps",
        "create",
        "--name",
        name,
        "--status-url",
        "http://127.0.0.1:9/status",
        "--allow-private-webhooks",
        "--database",
        database_url,
        "--json",
    )
    return AppCredentials.from_json(json.loads(output))


def wait_until_healthy(
    process: subprocess.Popen[Any],
    url: str,
    log: Callable[[], str],
    timeout: float = 30.0,
    *,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Until `GET /health` answers 200; fails with the server's log if it exits first.
    `verify`: what an https `url` is checked against (`TestCA.client_context()`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{log()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server not ready after {timeout}s:\n{log()}")


class ServerProcess:
    """`opendispatch serve` in its own process on 127.0.0.1, as an operator would run it;
    with `tls`, it serves https with that test CA's certificate (`tests/tls_ca.py`)."""

    def __init__(
        self,
        database_url: str,
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        tls: TestCA | None = None,
    ):
        self.database_url = database_url
        self.cwd = cwd
        self.tls = tls
        # The tests' receivers listen on 127.0.0.1, which a server refuses by default.
        self.env = {"OPENDISPATCH_ALLOW_PRIVATE_WEBHOOKS": "true", **(env or {})}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = cwd / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify=` for this server: its test CA when it serves https."""
        return True if self.tls is None else self.tls.client_context()

    def start(self, *extra: str) -> ServerProcess:
        self.log_path = self.cwd / f"server-{self.port}-{time.monotonic_ns()}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opendispatch",
                "serve",
                "--port",
                str(self.port),
                "--database",
                self.database_url,
                *self._tls_flags(),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env={**os.environ, **self.env},
        )
        self.wait_ready()
        return self

    def _tls_flags(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        wait_until_healthy(self.process, self.url, self.log, timeout, verify=self.verify)

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flush: what a crash looks like."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
