"""The Vonage adapter against FakeVonage over real HTTP on 127.0.0.1: sends, faults, callbacks.

The test carries each `HttpRequest` with httpx, as the transport will. Callbacks reach a small
aiohttp endpoint in the test that does what the server's callback route does with an adapter:
verify, read, answer 2xx or the refusal's status. Blocking waits on the fake run in a worker
thread, so the test's loop keeps serving that endpoint meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio.to_thread
import httpx
import pytest
from aiohttp import web

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import Accepted, OutboundMessage, Rejected, Unavailable
from opendispatch.providers.kinds import (
    AccountConfig,
    CallbackRefused,
    CallbackRequest,
    CallbackStatus,
    HttpAnswer,
    HttpRequest,
)
from opendispatch.providers.vonage import KIND, VonageAdapter
from tests.fakes.base import CallbackPlan, FakeProvider
from tests.fakes.vonage import FakeVonage

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> Iterator[FakeVonage]:
    with FakeVonage() as fake:
        yield fake


def account(
    fake: FakeVonage, auth: Literal["jwt", "basic"] = "jwt", **overrides: str
) -> VonageAdapter:
    """An adapter registered as the CLI would: the fake's settings pass the kind's check."""
    settings = {**fake.account_settings(auth), **overrides}
    KIND.check_settings(settings)
    return VonageAdapter(
        AccountConfig(name="vonage-test", kind="vonage", base_url=fake.url, settings=settings)
    )


SENDERS = {
    "sms": {"number": "447700900001"},
    "mms": {"number": "447700900001"},
    "whatsapp": {"number": "447700900001"},
    "viber_service_msg": {"id": "MyBrand"},
    "messenger": {"id": "5432109876543210"},
}


def outbound(
    channel: str,
    recipient: str = "447700900000",
    content: dict[str, Any] | None = None,
    **options: Any,
) -> OutboundMessage:
    to_field = "id" if channel == "messenger" else "number"
    return OutboundMessage(
        message_uuid=str(uuid.uuid4()),
        dispatch_uuid=str(uuid.uuid4()),
        channel=channel,
        to={"type": channel, to_field: recipient},
        from_={"type": channel, **SENDERS[channel]},
        message={"content": content or {"type": "text", "text": "Your code is 64873."}, **options},
        attempt=1,
    )


def now_ms() -> int:
    return int(time.time() * 1000)


async def carry(request: HttpRequest) -> HttpAnswer:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(
            request.method, request.url, headers=dict(request.headers), content=request.body
        )
    return HttpAnswer(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        body=response.content,
    )


async def send(
    vonage: VonageAdapter, message: OutboundMessage, callback_url: str | None = None
) -> Accepted | Rejected | Unavailable:
    request = vonage.send_request(message, callback_url=callback_url, now_ms=now_ms())
    if isinstance(request, Rejected):
        return request
    return vonage.read_answer(message, await carry(request), now_ms=now_ms())


async def wait_for(fake: FakeVonage, predicate: Callable[[FakeProvider], bool]) -> None:
    await anyio.to_thread.run_sync(fake.wait_for, predicate)


# -- sends -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "content", "vonage_channel"),
    [
        ("sms", {}, "sms"),
        ("mms", {"type": "image", "image": {"url": "https://x.test/a.jpg"}}, "mms"),
        ("whatsapp", {}, "whatsapp"),
        (
            "whatsapp",
            {
                "type": "template",
                "template": {"name": "verify", "parameters": [{"default": "64873"}]},
            },
            "whatsapp",
        ),
        ("viber_service_msg", {}, "viber_service"),
        ("messenger", {"type": "video", "video": {"url": "https://x.test/a.mp4"}}, "messenger"),
    ],
)
async def test_each_channel_is_accepted_with_vonage_message_uuid(
    fake: FakeVonage, channel: str, content: dict[str, Any], vonage_channel: str
) -> None:
    recipient = "0123456789" if channel == "messenger" else "447700900000"
    message = outbound(channel, recipient, content or None)
    result = await send(account(fake), message)
    assert isinstance(result, Accepted)
    [accepted] = fake.messages
    assert result.provider_message_id == accepted.provider_message_id
    assert uuid.UUID(result.provider_message_id)
    assert accepted.channel == vonage_channel
    assert accepted.reference == message.message_uuid
    assert fake.requests[-1].answered_status == 202


async def test_whatsapp_template_locale_reaches_vonage_in_its_own_form(fake: FakeVonage) -> None:
    message = outbound(
        "whatsapp",
        content={"type": "template", "template": {"name": "verify"}},
        whatsapp={"policy": "deterministic", "locale": "en-GB"},
    )
    assert isinstance(await send(account(fake), message), Accepted)
    assert fake.messages[0].request["whatsapp"] == {"policy": "deterministic", "locale": "en_GB"}


async def test_api_key_and_secret_account_is_accepted(fake: FakeVonage) -> None:
    assert isinstance(await send(account(fake, auth="basic"), outbound("sms")), Accepted)
    assert fake.requests[-1].headers["authorization"].startswith("Basic ")


async def test_application_jwt_is_reused_across_sends(fake: FakeVonage) -> None:
    vonage = account(fake)
    for _ in range(3):
        assert isinstance(await send(vonage, outbound("sms")), Accepted)
    tokens = {received.headers["authorization"] for received in fake.requests}
    assert len(tokens) == 1
    assert tokens.pop().startswith("Bearer ")


async def test_recipient_ending_in_1_is_refused_as_number_barred(fake: FakeVonage) -> None:
    result = await send(account(fake), outbound("whatsapp", "447700900001"))
    assert isinstance(result, Rejected)
    assert not result.provider_side
    assert result.error.code == 1050
    assert result.error.reason.startswith("Number barred: ")
    assert fake.messages == []


async def test_wrong_application_key_is_a_provider_side_rejection(fake: FakeVonage) -> None:
    other = FakeVonage(application_id=fake.application_id)  # another key pair, not started
    vonage = account(fake, private_key=other.private_key_pem)
    result = await send(vonage, outbound("sms"))
    assert result == Rejected(
        error=MessageError(
            code=401, reason="Unauthorized: You did not provide correct credentials."
        ),
        provider_side=True,
    )


async def test_wrong_api_secret_is_a_provider_side_rejection(fake: FakeVonage) -> None:
    result = await send(account(fake, auth="basic", api_secret="wrong"), outbound("sms"))
    assert isinstance(result, Rejected)
    assert result.provider_side
    assert result.error.code == 401


async def test_fake_refuses_missing_fields_as_vonage_does(fake: FakeVonage) -> None:
    vonage = account(fake)
    request = vonage.send_request(outbound("sms"), callback_url=None, now_ms=now_ms())
    assert isinstance(request, HttpRequest)
    body = json.loads(request.body)
    del body["text"]
    answer = await carry(
        HttpRequest(
            method="POST",
            url=request.url,
            headers=request.headers,
            body=json.dumps(body).encode(),
        )
    )
    assert answer.status == 422
    assert json.loads(answer.body)["invalid_parameters"] == [
        {"name": "text", "reason": "is required"}
    ]
    result = vonage.read_answer(outbound("sms"), answer, now_ms=now_ms())
    assert isinstance(result, Rejected)
    assert (result.error.code, result.provider_side) == (1010, False)


# -- faults ------------------------------------------------------------------------------------


async def test_outage_is_unavailable(fake: FakeVonage) -> None:
    fake.outage = True
    result = await send(account(fake), outbound("sms"))
    assert isinstance(result, Unavailable)
    assert not result.throttled
    assert "503" in result.reason


async def test_fail_next_is_unavailable_then_accepted(fake: FakeVonage) -> None:
    fake.fail_next(2, status=500)
    vonage = account(fake)
    results = [await send(vonage, outbound("sms")) for _ in range(3)]
    assert [type(result) for result in results] == [Unavailable, Unavailable, Accepted]


async def test_low_balance_is_a_provider_side_rejection(fake: FakeVonage) -> None:
    fake.fail_next(1, status=402)
    result = await send(account(fake), outbound("sms"))
    assert isinstance(result, Rejected)
    assert (result.error.code, result.provider_side) == (402, True)
    assert result.error.reason.startswith("Low balance: ")


async def test_sends_beyond_the_rate_limit_are_throttled(fake: FakeVonage) -> None:
    fake.max_rate_per_s = 2
    vonage = account(fake)
    results = [await send(vonage, outbound("sms")) for _ in range(3)]
    assert [type(result) for result in results] == [Accepted, Accepted, Unavailable]
    assert isinstance(results[2], Unavailable)
    assert results[2].throttled


async def test_throttle_next_with_a_hint_is_throttled_for_that_long(fake: FakeVonage) -> None:
    fake.throttle_next(1, retry_after_s=2)
    vonage = account(fake)
    assert await send(vonage, outbound("sms")) == Unavailable(
        reason="Rate Limit Hit: Please wait, then retry your request",
        throttled=True,
        retry_after_ms=2_000,
    )
    assert isinstance(await send(vonage, outbound("sms")), Accepted)


async def test_throttle_next_without_a_hint_is_throttled_without_one(fake: FakeVonage) -> None:
    fake.throttle_next(1)
    result = await send(account(fake), outbound("sms"))
    assert isinstance(result, Unavailable)
    assert result.throttled
    assert result.retry_after_ms is None


# -- callbacks ---------------------------------------------------------------------------------


class CallbackEndpoint:
    """What the server's callback route does with an adapter, in miniature."""

    def __init__(self, vonage: VonageAdapter) -> None:
        self.vonage = vonage
        self.statuses: list[CallbackStatus] = []
        self.answers: list[int] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        callback = CallbackRequest(
            method=request.method,
            url=self.url,
            query=list(request.query.items()),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.read(),
            received_at_ms=now_ms(),
        )
        try:
            self.vonage.verify_callback(callback)
            statuses = self.vonage.read_callback(callback)
        except CallbackRefused as refused:
            self.answers.append(refused.status_code)
            return web.Response(status=refused.status_code, text=refused.reason)
        self.statuses.extend(statuses)
        self.answers.append(204)
        return web.Response(status=204)

    def of(self, message: OutboundMessage) -> list[MessageStatus | None]:
        return [s.status for s in self.statuses if s.message_uuid == message.message_uuid]


@asynccontextmanager
async def endpoint(vonage: VonageAdapter) -> AsyncIterator[CallbackEndpoint]:
    callbacks = CallbackEndpoint(vonage)
    app = web.Application()
    app.router.add_post("/v0.1/providers/vonage-test/callbacks", callbacks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    callbacks.url = f"http://127.0.0.1:{port}/v0.1/providers/vonage-test/callbacks"
    try:
        yield callbacks
    finally:
        await runner.cleanup()


SUBMITTED, DELIVERED, READ = MessageStatus.SUBMITTED, MessageStatus.DELIVERED, MessageStatus.READ
REJECTED, UNDELIVERABLE = MessageStatus.REJECTED, MessageStatus.UNDELIVERABLE

SCRIPTS = [  # (channel, recipient, the statuses its callbacks report, in order)
    ("sms", "447700900000", [SUBMITTED, DELIVERED]),
    ("whatsapp", "447700900000", [SUBMITTED, DELIVERED, READ]),
    ("messenger", "0123456789", [SUBMITTED, DELIVERED, READ]),
    ("viber_service_msg", "447700900005", [SUBMITTED, DELIVERED, READ]),
    ("sms", "447700900002", [SUBMITTED, REJECTED]),
    ("whatsapp", "447700900002", [SUBMITTED, UNDELIVERABLE]),
    ("whatsapp", "447700900003", [SUBMITTED, DELIVERED]),
    ("mms", "447700900004", []),
]


async def send_scripts(
    fake: FakeVonage, vonage: VonageAdapter, callbacks: CallbackEndpoint
) -> list[tuple[OutboundMessage, list[MessageStatus]]]:
    sent = []
    for channel, recipient, statuses in SCRIPTS:
        content = None
        if channel == "mms":
            content = {"type": "image", "image": {"url": "https://x.test/a.jpg"}}
        message = outbound(channel, recipient, content)
        assert isinstance(await send(vonage, message, callbacks.url), Accepted)
        sent.append((message, statuses))
    return sent


async def test_every_script_callback_is_verified_and_read(fake: FakeVonage) -> None:
    vonage = account(fake)
    async with endpoint(vonage) as callbacks:
        sent = await send_scripts(fake, vonage, callbacks)
        expected = sum(len(statuses) for _, statuses in sent)
        await wait_for(fake, lambda f: len(f.callbacks) == expected)
    assert callbacks.answers == [204] * expected
    for message, statuses in sent:
        assert callbacks.of(message) == statuses, message.channel
    by_status = {(s.message_uuid, s.status): s for s in callbacks.statuses}
    sms, whatsapp = sent[0][0], sent[1][0]
    assert by_status[sms.message_uuid, SUBMITTED].price == "0.0333"
    assert by_status[whatsapp.message_uuid, DELIVERED].price == "0.0120"
    rejected = by_status[sent[4][0].message_uuid, REJECTED]
    assert rejected.error == MessageError(
        code=1330, reason="Unknown - The message could not be delivered"
    )
    accepted = {m.provider_message_id for m in fake.messages}
    assert {s.provider_message_id for s in callbacks.statuses} <= accepted
    assert all(abs(s.occurred_at_ms - now_ms()) < 60_000 for s in callbacks.statuses)


async def test_shuffled_and_duplicated_callbacks_are_all_verified_and_read(
    fake: FakeVonage,
) -> None:
    fake.shuffle_callbacks = True
    fake.duplicate_callbacks = True
    vonage = account(fake)
    async with endpoint(vonage) as callbacks:
        sent = await send_scripts(fake, vonage, callbacks)
        expected = 2 * sum(len(statuses) for _, statuses in sent)
        await wait_for(fake, lambda f: len(f.callbacks) == expected)
    assert callbacks.answers == [204] * expected
    for message, statuses in sent:
        twice_reversed = [status for status in reversed(statuses) for _ in range(2)]
        assert callbacks.of(message) == twice_reversed


async def test_forged_stale_tampered_and_unsigned_callbacks_are_refused(
    fake: FakeVonage,
) -> None:
    fake.auto_callbacks = False
    vonage = account(fake)
    async with endpoint(vonage) as callbacks:
        message = outbound("whatsapp")
        assert isinstance(await send(vonage, message, callbacks.url), Accepted)
        [accepted] = fake.messages
        body = fake.callback_body(CallbackPlan(message=accepted, status="read"))
        json_type = {"Content-Type": "application/json"}

        def post(authorization: str, payload: bytes = body) -> int:
            return fake.post_raw(
                callbacks.url, {**json_type, "Authorization": authorization}, payload
            )

        forged = fake.sign(body, secret="not-the-signature-secret-" + "x" * 20)
        stale = fake.sign(body, now_s=int(time.time()) - 600)
        tampered = body.replace(b'"read"', b'"sent"')
        answers = [
            await anyio.to_thread.run_sync(post, forged),
            await anyio.to_thread.run_sync(post, stale),
            await anyio.to_thread.run_sync(post, fake.sign(body), tampered),
            await anyio.to_thread.run_sync(fake.send_unsigned_callback, accepted),
            await anyio.to_thread.run_sync(post, fake.sign(body)),
        ]
    assert answers == [401, 401, 401, 503, 204]
    assert [(s.message_uuid, s.status) for s in callbacks.statuses] == [
        (message.message_uuid, READ)
    ]
