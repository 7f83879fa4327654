"""The Telnyx adapter against FakeTelnyx over real HTTP on 127.0.0.1: sends, faults, callbacks.

The adapter's requests are carried by httpx and the fake's answers read back into
`HttpAnswer`s, as the core's transport does. Callbacks land on a small aiohttp receiver in the
test's own event loop, which verifies and reads them with the adapter and answers as the
callback endpoint would (2xx, or the refusal's status); the fake records each answer. Waiting
on the fake (a blocking condition) runs in a worker thread so the receiver keeps serving.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web

from opendispatch.engine.model import MessageError, MessageStatus
from opendispatch.providers.base import Accepted, OutboundMessage, Rejected, Unavailable
from opendispatch.providers.kinds import (
    AccountAdapter,
    AccountConfig,
    CallbackRefused,
    CallbackRequest,
    CallbackStatus,
    HttpAnswer,
    HttpRequest,
)
from opendispatch.providers.telnyx import KIND
from tests.fakes.base import FakeProvider
from tests.fakes.telnyx import FakeTelnyx

SENDER = "447700900000"


def now_ms() -> int:
    return int(time.time() * 1000)


def account(fake: FakeTelnyx, **overrides: str) -> AccountAdapter:
    settings = {**fake.account_settings(), **overrides}
    KIND.check_settings(settings)
    config = AccountConfig(name="telnyx-test", kind="telnyx", base_url=fake.url, settings=settings)
    return KIND.adapter(config)


def sms(recipient: str, text: str = "Your code is 64873.") -> OutboundMessage:
    return _message("sms", recipient, {"type": "text", "text": text})


def mms(recipient: str) -> OutboundMessage:
    image = {"url": "https://example.com/boarding-pass.png", "caption": "Your boarding pass"}
    return _message("mms", recipient, {"type": "image", "image": image})


def _message(channel: str, recipient: str, content: dict[str, Any]) -> OutboundMessage:
    return OutboundMessage(
        message_uuid=str(uuid.uuid4()),
        dispatch_uuid=str(uuid.uuid4()),
        channel=channel,
        to={"type": channel, "number": recipient},
        from_={"type": channel, "number": SENDER},
        message={"content": content},
        attempt=1,
    )


async def carry(request: HttpRequest) -> HttpAnswer:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.request(
            request.method, request.url, headers=dict(request.headers), content=request.body
        )
    return HttpAnswer(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        body=response.content,
    )


async def send(
    adapter: AccountAdapter, message: OutboundMessage, callback_url: str | None = None
) -> Accepted | Rejected | Unavailable:
    request = adapter.send_request(message, callback_url=callback_url, now_ms=now_ms())
    assert isinstance(request, HttpRequest), request
    return adapter.read_answer(message, await carry(request), now_ms=now_ms())


async def wait_for_callbacks(fake: FakeTelnyx, count: int) -> None:
    def enough(provider: FakeProvider) -> bool:
        return len(provider.callbacks) >= count

    await anyio.to_thread.run_sync(fake.wait_for, enough)


class CallbackReceiver:
    """Our callback endpoint in miniature, verifying and reading with the adapter."""

    def __init__(self, adapter: AccountAdapter) -> None:
        self.adapter = adapter
        self.statuses: list[CallbackStatus] = []
        self.refusals: list[CallbackRefused] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/v0.1/providers/telnyx-test/callbacks", self._receive)])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v0.1/providers/telnyx-test/callbacks"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        received = CallbackRequest(
            method=request.method,
            url=str(request.url),
            query=list(request.query.items()),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.read(),
            received_at_ms=now_ms(),
        )
        try:
            self.adapter.verify_callback(received)
            statuses = self.adapter.read_callback(received)
        except CallbackRefused as refused:
            self.refusals.append(refused)
            return web.Response(status=refused.status_code)
        self.statuses.extend(statuses)
        return web.Response(status=200)


@pytest.fixture
def fake() -> Iterator[FakeTelnyx]:
    with FakeTelnyx() as fake:
        yield fake


@pytest.fixture
async def receiver(fake: FakeTelnyx) -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver(account(fake))
    await receiver.start()
    yield receiver
    await receiver.stop()


def accepted_id(result: Accepted | Rejected | Unavailable) -> str:
    assert isinstance(result, Accepted), result
    assert result.provider_message_id
    return result.provider_message_id


# -- sends -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sms_is_accepted_and_its_signed_statuses_are_read(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    message = sms("447700900125")
    message_id = accepted_id(await send(account(fake), message, receiver.url))
    await wait_for_callbacks(fake, 2)

    sent = fake.requests[0].json
    assert (sent["from"], sent["to"], sent["type"]) == ("+447700900000", "+447700900125", "SMS")
    assert sent["webhook_url"] == f"{receiver.url}?message_uuid={message.message_uuid}"
    assert sent["messaging_profile_id"] == fake.messaging_profile_id
    assert [c.answered_status for c in fake.callbacks] == [200, 200]
    assert [(s.status, s.raw_status) for s in receiver.statuses] == [
        (MessageStatus.SUBMITTED, "sent"),
        (MessageStatus.DELIVERED, "delivered"),
    ]
    for status in receiver.statuses:
        assert status.provider_message_id == message_id
        assert status.message_uuid == message.message_uuid
        assert status.price is None  # the fake bills in USD unless told otherwise
        assert abs(status.occurred_at_ms - now_ms()) < 60_000


@pytest.mark.anyio
async def test_mms_image_is_sent_with_its_caption_and_delivered(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    message = mms("447700900123")
    message_id = accepted_id(await send(account(fake), message, receiver.url))
    await wait_for_callbacks(fake, 2)

    sent = fake.requests[0].json
    assert sent["type"] == "MMS"
    assert sent["media_urls"] == ["https://example.com/boarding-pass.png"]
    assert sent["text"] == "Your boarding pass"
    assert [(s.provider_message_id, s.status) for s in receiver.statuses] == [
        (message_id, MessageStatus.SUBMITTED),
        (message_id, MessageStatus.DELIVERED),
    ]


@pytest.mark.anyio
async def test_recipient_digit_1_is_refused_at_send_for_the_recipient(fake: FakeTelnyx) -> None:
    result = await send(account(fake), sms("447700900121"))
    assert result == Rejected(
        error=MessageError(
            code=40310,
            reason="Invalid 'to' address: The 'to' address should be a single valid number.",
        ),
        provider_side=False,
    )
    assert fake.messages == []


@pytest.mark.anyio
async def test_recipient_digit_2_is_undeliverable_with_telnyx_error(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    accepted_id(await send(account(fake), sms("447700900122"), receiver.url))
    await wait_for_callbacks(fake, 2)
    submitted, failed = receiver.statuses
    assert submitted.status is MessageStatus.SUBMITTED
    assert (failed.status, failed.raw_status) == (MessageStatus.UNDELIVERABLE, "delivery_failed")
    assert failed.error == MessageError(
        code=40008, reason="Undeliverable: The recipient carrier did not accept the message."
    )


@pytest.mark.anyio
async def test_recipient_digit_4_is_accepted_and_then_silent(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    adapter = account(fake)
    silent_id = accepted_id(await send(adapter, sms("447700900124"), receiver.url))
    # The silent message planned no callbacks; the next one's arriving shows the fake's
    # callbacks have all been sent.
    delivered_id = accepted_id(await send(adapter, sms("447700900123"), receiver.url))
    await wait_for_callbacks(fake, 2)
    assert {s.provider_message_id for s in receiver.statuses} == {delivered_id}
    assert silent_id not in {c.provider_message_id for c in fake.callbacks}


@pytest.mark.anyio
async def test_a_cost_stated_in_eur_is_read_as_the_price(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    fake.cost_currency = "EUR"
    accepted_id(await send(account(fake), sms("447700900123"), receiver.url))
    await wait_for_callbacks(fake, 2)
    assert [s.price for s in receiver.statuses] == [None, "0.0040"]  # cost comes when final


@pytest.mark.anyio
async def test_without_a_public_url_statuses_come_by_the_profile_webhook_unreferenced(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    fake.callback_url = receiver.url  # the messaging profile's webhook
    message_id = accepted_id(await send(account(fake), sms("447700900123")))
    await wait_for_callbacks(fake, 2)
    assert "webhook_url" not in fake.requests[0].json
    assert [(s.provider_message_id, s.message_uuid) for s in receiver.statuses] == [
        (message_id, None),
        (message_id, None),
    ]


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_outage_is_unavailable_not_throttled(fake: FakeTelnyx) -> None:
    fake.outage = True
    result = await send(account(fake), sms("447700900123"))
    assert result == Unavailable(
        reason="telnyx answered HTTP 503: Unexpected error: An unexpected error occured."
    )


@pytest.mark.anyio
async def test_failed_sends_are_unavailable_until_the_fake_recovers(fake: FakeTelnyx) -> None:
    fake.fail_next(2, status=500)
    adapter = account(fake)
    results = [await send(adapter, sms("447700900123")) for _ in range(3)]
    assert [type(result) for result in results] == [Unavailable, Unavailable, Accepted]
    assert [r.answered_status for r in fake.requests] == [500, 500, 200]


@pytest.mark.anyio
async def test_throttling_is_read_back_with_telnyx_reset_hint(fake: FakeTelnyx) -> None:
    fake.throttle_next(1, retry_after_s=2)
    adapter = account(fake)
    throttled = await send(adapter, sms("447700900123"))
    assert throttled == Unavailable(
        reason="Too many requests: You have exceeded the maximum number of allowed requests.",
        throttled=True,
        retry_after_ms=2000,
    )
    assert fake.requests[0].answered_status == 429
    accepted_id(await send(adapter, sms("447700900123")))


@pytest.mark.anyio
async def test_sends_beyond_the_fake_rate_are_throttled_for_a_second(fake: FakeTelnyx) -> None:
    fake.max_rate_per_s = 1
    adapter = account(fake)
    accepted_id(await send(adapter, sms("447700900123")))
    throttled = await send(adapter, sms("447700900123"))
    assert isinstance(throttled, Unavailable)
    assert (throttled.throttled, throttled.retry_after_ms) == (True, 1000)


@pytest.mark.anyio
async def test_a_wrong_api_key_is_a_provider_side_rejection(fake: FakeTelnyx) -> None:
    result = await send(account(fake, api_key="KEYWRONG"), sms("447700900123"))
    assert isinstance(result, Rejected)
    assert (result.error.code, result.provider_side) == (10009, True)
    assert result.error.reason.startswith("Authentication failed")
    assert fake.messages == []


# -- callbacks in any order, any number of times, and forged ones ------------------------------


@pytest.mark.anyio
async def test_shuffled_callbacks_are_each_verified_and_read(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    fake.shuffle_callbacks = True
    accepted_id(await send(account(fake), sms("447700900122"), receiver.url))
    await wait_for_callbacks(fake, 2)
    assert [c.answered_status for c in fake.callbacks] == [200, 200]
    assert [s.status for s in receiver.statuses] == [
        MessageStatus.UNDELIVERABLE,
        MessageStatus.SUBMITTED,
    ]


@pytest.mark.anyio
async def test_duplicated_callbacks_are_each_verified_and_read(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    fake.duplicate_callbacks = True
    adapter = account(fake)
    accepted_id(await send(adapter, sms("447700900123"), receiver.url))
    accepted_id(await send(adapter, mms("447700900125"), receiver.url))
    await wait_for_callbacks(fake, 8)
    assert [c.answered_status for c in fake.callbacks] == [200] * 8
    assert len(receiver.statuses) == 8
    assert receiver.refusals == []


async def post(fake: FakeTelnyx, url: str, headers: dict[str, str], body: bytes) -> int:
    status: int = await anyio.to_thread.run_sync(fake.post_raw, url, headers, body)
    return status


def finalized_body() -> bytes:
    payload = {"id": str(uuid.uuid4()), "to": [{"phone_number": "+1", "status": "delivered"}]}
    data = {"event_type": "message.finalized", "payload": payload, "record_type": "event"}
    return json.dumps({"data": data}).encode()


@pytest.mark.anyio
async def test_a_genuine_callback_posted_by_hand_is_accepted(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    body = finalized_body()
    assert await post(fake, receiver.url, fake.signed_headers(body), body) == 200
    assert [s.status for s in receiver.statuses] == [MessageStatus.DELIVERED]


@pytest.mark.anyio
async def test_forged_tampered_unsigned_and_stale_callbacks_are_refused(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    body = finalized_body()
    genuine = fake.signed_headers(body)
    forger = FakeTelnyx()  # its own key pair; never started, it only signs
    forged = forger.signed_headers(body)
    stale = fake.signed_headers(body, timestamp=int(time.time()) - 301)
    unsigned = {"Content-Type": "application/json"}
    tampered_body = body.replace(b"delivered", b"delivery_failed")

    answers = [
        await post(fake, receiver.url, forged, body),
        await post(fake, receiver.url, genuine, tampered_body),
        await post(fake, receiver.url, unsigned, body),
        await post(fake, receiver.url, stale, body),
    ]
    assert answers == [401, 401, 401, 401]
    assert receiver.statuses == []
    assert [r.reason for r in receiver.refusals] == [
        "telnyx callback signature does not match",
        "telnyx callback signature does not match",
        "telnyx callback is not signed",
        "telnyx callback timestamp is more than 300 s away",
    ]


@pytest.mark.anyio
async def test_a_callback_signed_for_another_account_is_refused(
    fake: FakeTelnyx, receiver: CallbackReceiver
) -> None:
    with FakeTelnyx() as other:
        other.callback_url = receiver.url
        other_adapter = account(other)
        accepted_id(await send(other_adapter, sms("447700900123"), receiver.url))
        await wait_for_callbacks(other, 2)
    assert [c.answered_status for c in other.callbacks] == [401, 401]
    assert receiver.statuses == []


# -- the fake checks what Telnyx checks --------------------------------------------------------


async def raw_send(fake: FakeTelnyx, body: Any, content_type: str = "application/json") -> Any:
    headers = {"Authorization": f"Bearer {fake.api_key}", "Content-Type": content_type}
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{fake.url}/v2/messages",
            headers=headers,
            content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        )
    return response.status_code, response.json()["errors"][0]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "status", "code", "pointer"),
    [
        ({"from": "+447700900000", "text": "hi"}, 400, "10004", "/to"),
        ({"from": "+447700900000", "to": "447700900123", "text": "hi"}, 400, "40310", "/to"),
        ({"from": "0044 7700", "to": "+447700900123", "text": "hi"}, 400, "40305", "/from"),
        ({"to": "+447700900123", "text": "hi"}, 400, "10004", "/from"),
        ({"from": "+447700900000", "to": "+447700900123"}, 400, "10004", "/text"),
        (
            {"from": "+447700900000", "to": "+447700900123", "type": "MMS", "text": "x"},
            400,
            "10004",
            "/media_urls",
        ),
        (
            {"from": "+447700900000", "to": "+447700900123", "media_urls": ["ftp://x/a.png"]},
            400,
            "10003",
            "/media_urls",
        ),
        (
            {"from": "+447700900000", "to": "+447700900123", "text": "x", "webhook_url": "nope"},
            400,
            "10003",
            "/webhook_url",
        ),
    ],
)
async def test_the_fake_refuses_invalid_sends_in_telnyx_error_shape(
    fake: FakeTelnyx, body: dict[str, Any], status: int, code: str, pointer: str
) -> None:
    answered, error = await raw_send(fake, body)
    assert (answered, error["code"], error["source"]["pointer"]) == (status, code, pointer)
    assert error["title"]
    assert error["detail"]
    assert fake.messages == []


@pytest.mark.anyio
async def test_the_fake_refuses_a_body_that_is_not_json(fake: FakeTelnyx) -> None:
    assert (await raw_send(fake, b"to=+447700900123", "application/x-www-form-urlencoded"))[
        0
    ] == 415
    assert (await raw_send(fake, b"{not json"))[1]["code"] == "10023"
