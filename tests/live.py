"""Live applications for tests: provider accounts registered against local fakes, routes, and
a real server process that sends through them.

    with live_setup(tmp_path) as live:
        live.account("twilio-main", FakeTwilio())
        app = live.application(status_url=receiver.url + "/status")
        live.route(app, "sms", "twilio-main")
        server = live.serve()
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from opendispatch.auth.provisioning import provision_application
from opendispatch.providers.accounts import new_account
from opendispatch.providers.secret_box import SECRET_KEY_VARIABLE, SecretBox
from opendispatch.store.factory import create_store
from opendispatch.timefmt import now_ms
from tests.fakes.base import FakeProvider
from tests.fakes.telnyx import FakeTelnyx
from tests.fakes.twilio import FakeTwilio
from tests.fakes.vonage import FakeVonage
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.support import AppCredentials, ServerProcess, free_port

__all__ = ["KIND_OF", "SECRET_KEY", "LiveSetup", "live_setup"]

# A fixed Fernet key: the tests' provider secrets are sealed with it.
SECRET_KEY = "vCq3Vh0Yy3H8rB7x0cJd9yDxg2QmH7d8b0Pz1uS4wQ0="

KIND_OF: dict[type[FakeProvider], str] = {
    FakeVonage: "vonage",
    FakeTwilio: "twilio",
    FakeWhatsAppCloud: "whatsapp-cloud",
    FakeTelnyx: "telnyx",
}


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@dataclass
class LiveSetup:
    database_url: str
    tmp_path: Path
    stack: ExitStack
    port: int = field(default_factory=free_port)
    fakes: dict[str, FakeProvider] = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def callback_url(self, account: str) -> str:
        return f"{self.public_url}/v0.1/providers/{account}/callbacks"

    def account(self, name: str, fake: FakeProvider, **extra: str) -> FakeProvider:
        """Start `fake` and register it as provider account `name`."""
        self.stack.enter_context(fake)
        settings = {**fake.account_settings(), **extra}  # type: ignore[attr-defined]
        record = new_account(
            name=name,
            kind_name=KIND_OF[type(fake)],
            base_url=fake.url,
            values=settings,
            secret_box=SecretBox(SECRET_KEY),
        )

        async def save(store: Any) -> None:
            await store.save_provider_account(record, replace=True, now_ms=now_ms())

        self._with_store(save)
        # WhatsApp Cloud's callback URL is set per app at Meta, not per message.
        fake.callback_url = self.callback_url(name)
        self.fakes[name] = fake
        return fake

    def application(self, *, status_url: str, live: bool = True) -> AppCredentials:
        async def create(store: Any) -> Any:
            return await provision_application(
                store, name="live-app", status_url=status_url, live=live
            )

        return AppCredentials.from_provisioned(self._with_store(create))

    def route(self, app: AppCredentials, channel: str, *names: str) -> None:
        async def set_route(store: Any) -> None:
            await store.set_route(app.application_id, channel, list(names))

        self._with_store(set_route)

    def serve(self, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(
            self.database_url,
            cwd=self.tmp_path,
            env={SECRET_KEY_VARIABLE: SECRET_KEY, **(env or {})},
        )
        server.port = self.port
        server.start("--public-url", self.public_url, *extra)
        self.stack.callback(server.stop)
        return server

    def _with_store(self, use: Any) -> Any:
        async def run() -> Any:
            store = create_store(self.database_url)
            await store.open()
            try:
                return await use(store)
            finally:
                await store.close()

        return _run(run())


@contextmanager
def live_setup(database_url: str, tmp_path: Path) -> Iterator[LiveSetup]:
    with ExitStack() as stack:
        yield LiveSetup(database_url=database_url, tmp_path=tmp_path, stack=stack)


def final_report(received: list[Any], dispatch_uuid: str) -> dict[str, Any] | None:
    for webhook in received:
        body = webhook.json
        if body.get("dispatch_uuid") == dispatch_uuid and "template" in body:
            return dict(body)
    return None


def get_workflow(server: ServerProcess, app: AppCredentials, dispatch_uuid: str) -> Any:
    answer = httpx.get(
        f"{server.url}/v0.1/dispatch/{dispatch_uuid}", headers=app.basic(), timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()
