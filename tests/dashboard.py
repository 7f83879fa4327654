"""The dashboard for tests: a real server with an application, an operator and a webhook
receiver, and a client that signs in and posts forms as a browser does.

`DashboardClient` keeps cookies by hand, as a browser behind a TLS proxy would send them (a
cookie jar would not send a `Secure` cookie to the test's plain-HTTP server), and never
follows redirects: tests look at each answer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from tests.receiver import WebhookReceiver
from tests.support import AppCredentials, ServerProcess, run_cli, step

__all__ = [
    "DashboardClient",
    "Served",
    "inputs_of",
    "links_of",
    "rejected_sms",
    "serve_dashboard",
]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("href", "src", "action"):
            if values.get(name) is not None:
                self.found.append(str(values[name]))
        if tag == "input" and values.get("name") and values.get("value") is not None:
            self.inputs[str(values["name"])] = str(values["value"])


def links_of(html: str) -> list[str]:
    """Every href, src and form action of a page."""
    parser = _Links()
    parser.feed(html)
    return parser.found


def inputs_of(html: str) -> dict[str, str]:
    """The named inputs of a page that have a value (the last of each name)."""
    parser = _Links()
    parser.feed(html)
    return parser.inputs


@dataclass
class DashboardClient:
    """Requests as a browser sends them to `base` (the server, or the proxy's view of it)."""

    base: str
    prefix: str = ""  # the public path prefix a proxy strips (`/od`), seen in links
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)

    def _remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            self.set_cookies.append(header)
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if re.search(r"(?i)max-age=0\b", header):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def _path(self, path: str) -> str:
        """A public path (what links say) as the server receives it from the proxy."""
        return path.removeprefix(self.prefix) if self.prefix else path

    def get(self, path: str) -> httpx.Response:
        response = httpx.get(
            self.base + self._path(path), headers=self._cookie_header(), timeout=10
        )
        self._remember(response)
        return response

    def post(self, path: str, form: dict[str, str]) -> httpx.Response:
        response = httpx.post(
            self.base + self._path(path), data=form, headers=self._cookie_header(), timeout=10
        )
        self._remember(response)
        return response

    def _cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def sign_in(self, operator: str, token: str) -> httpx.Response:
        form = self.get(f"{self.prefix}/dashboard/login")
        assert form.status_code == 200, form.text
        login_token = inputs_of(form.text)["login_token"]
        return self.post(
            f"{self.prefix}/dashboard/login",
            {"login_token": login_token, "operator": operator, "token": token},
        )

    def csrf(self) -> str:
        """The session's CSRF token, as every page's forms carry it."""
        page = self.get(f"{self.prefix}/dashboard")
        assert page.status_code == 200, page.text
        return inputs_of(page.text)["csrf"]


@dataclass
class Served:
    server: ServerProcess
    receiver: WebhookReceiver
    app: AppCredentials
    operator: str
    token: str
    database_url: str

    def client(self, prefix: str = "") -> DashboardClient:
        return DashboardClient(self.server.url, prefix)

    def dispatch(self, workflow: list[dict[str, Any]]) -> str:
        response = httpx.post(
            f"{self.server.url}/v0.1/dispatch",
            json={"template": "failover", "workflow": workflow},
            headers=self.app.basic(),
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["dispatch_uuid"])

    def webhooks(self, state: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.server.url}/v0.1/webhooks",
            params={"state": state, "page_size": "100"},
            headers=self.app.basic(),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["_embedded"]["webhooks"]
        return found

    def wait_for_dead(self, count: int, timeout_s: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = self.webhooks("dead")
            if len(dead) >= count:
                return dead
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} dead webhooks: {self.webhooks('dead')}")

    def workflow(self, dispatch_uuid: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.server.url}/v0.1/dispatch/{dispatch_uuid}", headers=self.app.basic()
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


def serve_dashboard(tmp_path: Path, *extra: str, receiver_status: int = 500) -> Iterator[Served]:
    """A server whose application's webhooks go to a receiver answering `receiver_status`
    (given up after the first failure: `--webhook-retry-period 0`), and an operator `alice`."""
    database_url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    with WebhookReceiver(status=receiver_status) as receiver:
        created = run_cli(
            "apps", "create", "--name", "shop", "--status-url", f"{receiver.url}/status",
            "--allow-private-webhooks", "--database", database_url, "--json",
        )  # fmt: skip
        token = run_cli("operators", "create", "alice", "--database", database_url).strip()
        server = ServerProcess(database_url, cwd=tmp_path).start(
            "--webhook-retry-period", "0",
            "--sandbox-delivered-after-ms", "0", "--sandbox-read-after-ms", "0",
            *extra,
        )  # fmt: skip
        try:
            yield Served(
                server,
                receiver,
                AppCredentials.from_json(json.loads(created)),
                "alice",
                token,
                database_url,
            )
        finally:
            server.stop()


def rejected_sms() -> list[dict[str, Any]]:
    """An SMS the sandbox rejects at once: a status webhook and a final report."""
    return [step("sms", "447700900001")]
