"""The runtime's start and stop with providers that take their time (real clock, real store).

The sandbox answers in microseconds, so these tests plug a deliberately slow provider in
behind the same interface, to see what stopping does to a send in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from opendispatch.auth.provisioning import ProvisionedApplication, provision_application
from opendispatch.ids import uuid7
from opendispatch.providers.base import Accepted, OutboundMessage, SendResult, Unavailable
from opendispatch.runtime.clock import Clock, ManualClock, SystemClock
from opendispatch.runtime.service import Runtime, RuntimeSettings
from opendispatch.store.factory import create_store
from opendispatch.store.protocol import Store
from opendispatch.store.records import NewWorkflow
from opendispatch.webhooks.client import WebhookClient
from opendispatch.webhooks.destinations import AddressPolicy
from opendispatch.webhooks.signing import Signer
from tests.databases import TestDatabase

pytestmark = pytest.mark.anyio

SMS = (
    '{"template":"failover","workflow":[{"to":{"type":"sms","number":"447700900009"},'
    '"from":{"type":"sms","number":"447700900000"},"message":{"content":{"type":"text",'
    '"text":"hi"}}}]}'
)

LOCAL = AddressPolicy(allow_private=True)  # the receivers here are on 127.0.0.1


class SlowProvider:
    """Accepts every message after `delay_s` of real time."""

    name = "slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.started = asyncio.Event()
        self.calls: list[str] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        self.calls.append(message.message_uuid)
        self.started.set()
        await asyncio.sleep(self.delay_s)
        return Accepted(provider_message_id=f"slow-{message.message_uuid}", price="0.01")

    async def close(self) -> None:
        return None


class FlakyProvider(SlowProvider):
    """Unavailable for the first `failures` attempts, then accepts."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__(0.0)
        self.failures = failures

    async def send(self, message: OutboundMessage) -> SendResult:
        self.calls.append(message.message_uuid)
        if len(self.calls) <= self.failures:
            return Unavailable(reason="503 from the provider", retry_after_ms=10)
        return Accepted(provider_message_id="ok", price="0.01")


@pytest.fixture
async def store(database: TestDatabase) -> AsyncIterator[Store]:
    store = create_store(database.url, serving=True)
    await store.open()
    yield store
    await store.close()


def runtime_with(store: Store, provider: SlowProvider, clock: Clock | None = None) -> Runtime:
    return Runtime(
        store=store,
        clock=clock or SystemClock(),
        providers={provider.name: provider},
        provider_for_channel={"sms": provider.name},
        webhook_client=WebhookClient(timeout_s=0.5, address_policy=LOCAL),
        signer=Signer(),
        # Short leases: on PostgreSQL a restarted process takes a dead one's claims over when
        # they expire (SQLite releases them all at start).
        settings=RuntimeSettings(lease_ms=300),
    )


async def accept(runtime: Runtime, app: ProvisionedApplication) -> str:
    dispatch_uuid = uuid7()
    workflow = NewWorkflow(
        dispatch_uuid=dispatch_uuid,
        application_id=app.application.application_id,
        template="failover",
        request_json=SMS,
        created_at_ms=runtime.clock.now_ms(),
        channels=("sms",),
    )
    credentials = await runtime.store.find_credentials(app.application.application_id)
    assert credentials is not None
    await runtime.accept(workflow, credentials)
    return dispatch_uuid


async def send_states(database: TestDatabase) -> list[str]:
    return [row[0] for row in await database.rows("SELECT send_state FROM messages")]


async def test_stopping_lets_a_send_in_flight_finish_and_records_its_answer(
    store: Store, database: TestDatabase
):
    app = await provision_application(store, name="a", status_url="http://127.0.0.1:9/s")
    provider = SlowProvider(delay_s=0.3)
    runtime = runtime_with(store, provider)
    await runtime.start()
    await accept(runtime, app)
    await asyncio.wait_for(provider.started.wait(), 5)
    await runtime.stop()  # while the provider is still answering
    await runtime.close()
    assert await send_states(database) == [
        "sent"
    ]  # not "sending": a restart will not send it again
    assert len(provider.calls) == 1


async def test_a_send_unfinished_at_stop_is_sent_again_after_restart(
    store: Store, database: TestDatabase
):
    app = await provision_application(store, name="a", status_url="http://127.0.0.1:9/s")
    provider = SlowProvider(delay_s=30)
    runtime = runtime_with(store, provider)
    await runtime.start()
    await accept(runtime, app)
    await asyncio.wait_for(provider.started.wait(), 5)
    await runtime.stop(drain_timeout_s=0.05)  # gives up on it: the claim stays
    await runtime.close()
    await store.close()  # the process is gone
    assert await send_states(database) == ["sending"]

    provider.delay_s = 0.0
    second = create_store(database.url, serving=True)  # a new process
    await second.open()
    restarted = runtime_with(second, provider)
    # SQLite releases the dead claim at start; PostgreSQL lets its lease expire first.
    await restarted.start()
    for _ in range(200):
        if await send_states(database) == ["sent"]:
            break
        await asyncio.sleep(0.01)
    await restarted.stop()
    await restarted.close()
    await second.close()
    assert await send_states(database) == ["sent"]
    assert len(provider.calls) == 2  # the documented window: asked twice, same message uuid
    assert len(set(provider.calls)) == 1


async def test_a_provider_unavailable_for_a_while_is_retried_until_it_accepts(
    store: Store, database: TestDatabase
):
    app = await provision_application(store, name="a", status_url="http://127.0.0.1:9/s")
    provider = FlakyProvider(failures=2)
    clock = ManualClock()
    runtime = runtime_with(store, provider, clock)
    await runtime.start()
    await accept(runtime, app)
    await runtime.settled()
    assert (await send_states(database), len(provider.calls)) == (["pending"], 1)
    await clock.advance(1000)  # the first retry: backoff 1 s (with jitter, at most that)
    await runtime.settled()
    assert len(provider.calls) == 2
    await clock.advance(2000)  # the second: at most 2 s later
    await runtime.settled()
    await runtime.stop()
    await runtime.close()
    assert await send_states(database) == ["sent"]
    assert len(provider.calls) == 3
