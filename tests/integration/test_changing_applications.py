"""Applications changed after they were created, seen by the parts that serve them: the
store (where a webhook goes once its application's URLs changed).

Times are the caller's (`now_ms`): no test here waits on a clock. The real server and the
real CLI are in tests/acceptance/test_changing_applications.py."""

from __future__ import annotations

import pytest

from opendispatch.engine.model import MessageStatus
from opendispatch.store.records import ApplicationChange, WebhookAttempt
from tests.conftest import Api
from tests.support import two_step_workflow

pytestmark = pytest.mark.anyio

NOW_MS = 1_900_000_000_000


async def test_a_replayed_webhook_goes_to_the_url_the_application_has_now(api: Api):
    """A dead webhook is not moved by `apps update` (it is history), but a replay queues it
    again, and a queued webhook goes to the application's URL as it is now: the operator
    fixes the URL that made it dead, then replays it."""
    store, alice = api.app.store, api.alice
    response = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow("447700900005"), headers=alice.basic()
    )
    dispatch_uuid = response.json()["dispatch_uuid"]
    [send] = await store.send_records(dispatch_uuid)
    await api.app.runtime.report_status(send.message_uuid, MessageStatus.SUBMITTED)
    [webhook] = await store.list_webhooks(dispatch_uuid)
    assert webhook.url == "http://127.0.0.1:9/status"
    dead = WebhookAttempt(
        id=webhook.id, dispatch_uuid=dispatch_uuid, state="dead", next_attempt_at_ms=None,
        status_code=404, error="HTTP 404", at_ms=NOW_MS,
    )  # fmt: skip
    await store.record_webhook_attempts([dead])

    change = ApplicationChange(status_url="https://hooks.example.com/status")
    updated = await store.update_application(alice.application_id, change, now_ms=NOW_MS)
    assert updated is not None
    assert updated.webhooks_moved == 0
    assert (await store.list_webhooks(dispatch_uuid))[0].url == "http://127.0.0.1:9/status"
    assert await store.replay_webhook(webhook.id, now_ms=NOW_MS)
    [replayed] = await store.list_webhooks(dispatch_uuid)
    assert (replayed.state, replayed.url) == ("pending", "https://hooks.example.com/status")
