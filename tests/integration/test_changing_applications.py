"""Applications changed after they were created, seen by the parts that serve them: the
authenticator (a rotated secret, its grace period, a deleted application) and the store
(a workflow for a deleted application is never created, its workflows never move again).

Times are the caller's (`now_s`, `now_ms`): no test here waits on a clock. The real server
and the real CLI are in tests/acceptance/test_changing_applications.py."""

from __future__ import annotations

import base64

import pytest

from opendispatch.auth.authenticator import Authenticator
from opendispatch.auth.provisioning import provision_application, rotate_api_secret
from opendispatch.engine.model import MessageStatus
from opendispatch.errors import ApplicationDeleted, Unauthorized
from opendispatch.runtime.shell import Shell
from opendispatch.store.records import (
    ApplicationChange,
    NewWorkflow,
    ProviderAccountRecord,
    WebhookAttempt,
)
from tests.conftest import Api
from tests.support import AppCredentials, two_step_workflow

pytestmark = pytest.mark.anyio

NOW_MS = 1_900_000_000_000


def _basic(api_key: str, api_secret: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{api_key}:{api_secret}".encode())


async def test_a_replaced_secret_is_good_until_its_grace_period_ends_and_not_after(api: Api):
    """Cached credentials (as on PostgreSQL) do not stretch the grace period, and the new
    secret is good at once even though the cache still holds the old one."""
    authenticator = Authenticator(api.app.store, cache_seconds=3600)
    alice = api.alice
    old = _basic(alice.api_key, alice.api_secret)
    await authenticator.authenticate(old, now_s=NOW_MS / 1000)  # cached from here on

    rotated = await rotate_api_secret(
        api.app.store, alice.application_id, grace_s=60, now_ms=NOW_MS
    )
    assert rotated is not None
    assert rotated.previous_valid_until_ms == NOW_MS + 60_000
    new = _basic(alice.api_key, rotated.api_secret)

    await authenticator.authenticate(new, now_s=NOW_MS / 1000)
    await authenticator.authenticate(old, now_s=(NOW_MS + 59_999) / 1000)
    with pytest.raises(Unauthorized):
        await authenticator.authenticate(old, now_s=(NOW_MS + 60_000) / 1000)
    await authenticator.authenticate(new, now_s=(NOW_MS + 60_000) / 1000)


async def test_rotating_again_forgets_the_first_secret_and_no_grace_means_none(api: Api):
    store, alice = api.app.store, api.alice
    authenticator = Authenticator(store, cache_seconds=0)
    first = await rotate_api_secret(store, alice.application_id, grace_s=600, now_ms=NOW_MS)
    second = await rotate_api_secret(store, alice.application_id, grace_s=0, now_ms=NOW_MS)
    assert first is not None
    assert second is not None
    assert second.previous_valid_until_ms is None
    for secret in (alice.api_secret, first.api_secret):
        with pytest.raises(Unauthorized):
            await authenticator.authenticate(_basic(alice.api_key, secret), now_s=NOW_MS / 1000)
    await authenticator.authenticate(_basic(alice.api_key, second.api_secret), now_s=NOW_MS / 1000)
    # Bob's secret is untouched.
    await authenticator.authenticate(
        _basic(api.bob.api_key, api.bob.api_secret), now_s=NOW_MS / 1000
    )


async def test_a_deleted_application_is_refused_as_soon_as_its_change_is_announced(api: Api):
    """The PostgreSQL case: credentials cached until `forget` (the NOTIFY of `apps delete`)."""
    store, alice = api.app.store, api.alice
    authenticator = Authenticator(store, cache_seconds=3600)
    old = _basic(alice.api_key, alice.api_secret)
    await authenticator.authenticate(old, now_s=NOW_MS / 1000)
    assert await store.delete_application(alice.application_id, purge=False, now_ms=NOW_MS)
    authenticator.forget(alice.application_id)
    with pytest.raises(Unauthorized):
        await authenticator.authenticate(old, now_s=NOW_MS / 1000)
    with pytest.raises(Unauthorized):
        await authenticator.authenticate(
            AppCredentials.bearer(alice)["Authorization"].encode(), now_s=NOW_MS / 1000
        )


async def test_a_request_authenticated_before_the_delete_stores_nothing_and_gets_401(api: Api):
    """Credentials read before `apps delete` committed (a cache, or a request under way):
    the workflow is refused where it is written, in the same transaction as the check."""
    alice = api.alice
    assert (await api.client.get("/v0.1/dispatch", headers=alice.basic())).status_code == 200
    store = api.app.store
    assert await store.delete_application(alice.application_id, purge=False, now_ms=NOW_MS)
    shell = Shell(final_status_timeout_s=60)
    workflow = NewWorkflow(
        dispatch_uuid="01937a2c-5b0e-7d3a-9c1e-6f2b8a4d0e51",
        application_id=alice.application_id,
        template="failover",
        request_json='{"template":"failover","workflow":'
        '[{"to":{"type":"sms","number":"447700900005"},'
        '"from":{"type":"sms","number":"447700900000"},'
        '"message":{"content":{"type":"text","text":"hi"}}}]}',
        created_at_ms=NOW_MS,
        channels=("sms",),
    )
    transition = shell.accept(
        workflow, status_url="http://x.test/", final_report_url=None, now_ms=NOW_MS
    )
    with pytest.raises(ApplicationDeleted):
        await store.create_workflow(workflow, transition)
    # Through the API: 401, as if the credentials had never been good.
    response = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=alice.basic()
    )
    assert response.status_code == 401
    assert await api.database.scalar("SELECT count(*) FROM workflows") == 0
    assert await api.database.scalar("SELECT count(*) FROM messages") == 0


async def test_deleting_a_live_application_frees_the_provider_accounts_it_routed_to(api: Api):
    """Its routes are configuration, not history: kept, they would forbid `providers remove`
    for an application that no longer exists."""
    store = api.app.store
    account = ProviderAccountRecord(
        name="twilio-main", kind="twilio", base_url="https://api.twilio.com", settings={},
        sealed_secrets=None, created_at_ms=NOW_MS, updated_at_ms=NOW_MS,
    )  # fmt: skip
    await store.save_provider_account(account, replace=False, now_ms=NOW_MS)
    live = await provision_application(store, name="live", status_url="http://x.test/", live=True)
    application_id = live.application.application_id
    await store.set_route(application_id, "sms", ["twilio-main"])
    assert await store.remove_provider_account("twilio-main") == [(application_id, "sms")]
    assert await store.delete_application(application_id, purge=False, now_ms=NOW_MS)
    assert await store.list_routes(application_id) == []
    assert await store.remove_provider_account("twilio-main") == []


async def test_a_new_application_after_a_purge_is_unaffected(api: Api):
    store = api.app.store
    deleted = await store.delete_application(api.alice.application_id, purge=True, now_ms=NOW_MS)
    assert deleted is not None
    assert deleted.purged
    again = await provision_application(store, name="alice", status_url="http://x.test/")
    assert [app.name for app in await store.list_applications()] == ["bob", "alice"]
    assert again.application.application_id != api.alice.application_id


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
