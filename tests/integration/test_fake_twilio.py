"""The Twilio adapter against the fake Twilio over real HTTP on 127.0.0.1: sends, refusals,
faults, and the fake's signed callbacks verified and read by the adapter."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
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
from opendispatch.providers.twilio import TwilioAdapter, check_settings
from tests.fakes.base import CallbackPlan, FakeProvider
from tests.fakes.twilio import FakeTwilio

SENDER = "447700900001"
CALLBACK_PATH = "/v0.1/providers/tw/callbacks"


class CallbackReceiver:
    """Our callback endpoint reduced to the adapter's part: verify, read, answer (200, or
    the refusal's status). Runs on the test's event loop."""

    def __init__(self, adapter: TwilioAdapter) -> None:
        self.adapter = adapter
        self.statuses: list[CallbackStatus] = []
        self.refused: list[CallbackRefused] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(CALLBACK_PATH, self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._origin = f"http://127.0.0.1:{port}"
        self.url = f"{self._origin}{CALLBACK_PATH}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        received = CallbackRequest(
            method=request.method,
            url=f"{self._origin}{request.raw_path}",
            query=parse_qsl(request.query_string, keep_blank_values=True),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.read(),
            received_at_ms=int(time.time() * 1000),
        )
        try:
            self.adapter.verify_callback(received)
            self.statuses.extend(self.adapter.read_callback(received))
        except CallbackRefused as refused:
            self.refused.append(refused)
            return web.Response(status=refused.status_code)
        return web.Response(status=200)


def adapter_for(fake: FakeTwilio, **overrides: str) -> TwilioAdapter:
    settings = {**fake.account_settings(), **overrides}
    settings = {key: value for key, value in settings.items() if value}
    check_settings(settings)
    config = AccountConfig(name="tw", kind="twilio", base_url=fake.url, settings=settings)
    return TwilioAdapter(config)


def outbound(
    channel: str = "sms", to: str = "447700900005", content: dict[str, Any] | None = None
) -> OutboundMessage:
    return OutboundMessage(
        message_uuid=f"0000000{to[-1]}-aaaa-bbbb-cccc-{to[-12:]}",
        dispatch_uuid="dddddddd-0000-0000-0000-000000000000",
        channel=channel,
        to={"type": channel, "number": to},
        from_={"type": channel, "number": SENDER},
        message={"content": content or {"type": "text", "text": "Your code is 64873"}},
        attempt=1,
    )


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def receiver(fake: FakeTwilio) -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver(adapter_for(fake))
    await receiver.start()
    yield receiver
    await receiver.stop()


async def carry(http: httpx.AsyncClient, request: HttpRequest) -> HttpAnswer:
    response = await http.request(
        request.method, request.url, headers=dict(request.headers), content=request.body
    )
    return HttpAnswer(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        body=response.content,
    )


async def send(
    http: httpx.AsyncClient,
    adapter: TwilioAdapter,
    message: OutboundMessage,
    callback_url: str | None = None,
) -> Accepted | Rejected | Unavailable:
    now_ms = int(time.time() * 1000)
    request = adapter.send_request(message, callback_url=callback_url, now_ms=now_ms)
    assert isinstance(request, HttpRequest)
    return adapter.read_answer(message, await carry(http, request), now_ms=now_ms)


async def wait_for(fake: FakeTwilio, predicate: Callable[[FakeProvider], bool]) -> None:
    """Wait off the event loop: the receiver answering the fake's callbacks runs on it."""
    await anyio.to_thread.run_sync(lambda: fake.wait_for(predicate))


def sent_for(fake: FakeTwilio, sid: str) -> list[str]:
    return [sent.status for sent in fake.callbacks if sent.provider_message_id == sid]


def statuses_of(receiver: CallbackReceiver, sid: str) -> list[MessageStatus | None]:
    return [status.status for status in receiver.statuses if status.provider_message_id == sid]


# -- sends ------------------------------------------------------------------------------------

IMAGE = {"type": "image", "image": {"url": "https://example.com/a.jpg", "caption": "Look"}}
FILE = {"type": "file", "file": {"url": "https://example.com/i.pdf", "caption": "Invoice"}}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("channel", "content", "to", "media"),
    [
        ("sms", None, "+447700900005", []),
        ("mms", IMAGE, "+447700900005", ["https://example.com/a.jpg"]),
        ("whatsapp", None, "whatsapp:+447700900005", []),
        ("whatsapp", IMAGE, "whatsapp:+447700900005", ["https://example.com/a.jpg"]),
        ("whatsapp", FILE, "whatsapp:+447700900005", ["https://example.com/i.pdf"]),
        (
            "whatsapp",
            {"type": "audio", "audio": {"url": "https://example.com/a.mp3"}},
            "whatsapp:+447700900005",
            ["https://example.com/a.mp3"],
        ),
        (
            "whatsapp",
            {"type": "video", "video": {"url": "https://example.com/v.mp4"}},
            "whatsapp:+447700900005",
            ["https://example.com/v.mp4"],
        ),
    ],
)
async def test_each_channel_is_accepted_with_the_sid_twilio_created(
    fake: FakeTwilio,
    http: httpx.AsyncClient,
    channel: str,
    content: dict[str, Any] | None,
    to: str,
    media: list[str],
) -> None:
    result = await send(http, adapter_for(fake), outbound(channel, content=content))
    [created] = fake.messages
    assert result == Accepted(provider_message_id=created.provider_message_id)
    assert created.provider_message_id.startswith("SM")
    assert created.to == to
    assert created.request["MediaUrl"] == media
    assert fake.requests[-1].answered_status == 201


@pytest.mark.anyio
async def test_api_key_authenticates_in_the_account_path(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    adapter = adapter_for(fake, api_key_sid=fake.api_key_sid, api_key_secret=fake.api_key_secret)
    assert isinstance(await send(http, adapter, outbound()), Accepted)
    assert fake.requests[-1].path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"


@pytest.mark.anyio
async def test_messaging_service_sends_without_from(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    adapter = adapter_for(fake, messaging_service_sid=fake.messaging_service_sid)
    assert isinstance(await send(http, adapter, outbound()), Accepted)
    [created] = fake.messages
    assert created.request["MessagingServiceSid"] == fake.messaging_service_sid
    assert "From" not in created.request


@pytest.mark.anyio
async def test_recipient_ending_in_1_is_refused_as_the_recipients_doing(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    result = await send(http, adapter_for(fake), outbound(to="447700900001"))
    assert result == Rejected(
        error=MessageError(code=21610, reason="Attempt to send to unsubscribed recipient"),
        provider_side=False,
    )
    assert fake.messages == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "path_account"),
    [
        ({"auth_token": "0" * 32}, None),
        ({"api_key_sid": "SK" + "0" * 32, "api_key_secret": "wrong"}, None),
        ({}, "AC" + "0" * 32),
    ],
    ids=["wrong auth token", "unknown api key", "another account's path"],
)
async def test_wrong_credentials_are_a_provider_side_refusal(
    fake: FakeTwilio,
    http: httpx.AsyncClient,
    overrides: dict[str, str],
    path_account: str | None,
) -> None:
    if path_account is not None:
        overrides = {"account_sid": path_account}
    result = await send(http, adapter_for(fake, **overrides), outbound())
    assert result == Rejected(
        error=MessageError(code=20003, reason="Authenticate"), provider_side=True
    )
    assert fake.requests[-1].answered_status == 401


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"To": "+44 7700 900005"}, 21211),
        ({"From": "447700900001"}, 21212),
        ({"To": "whatsapp:+447700900005"}, 21910),
        ({"Body": ""}, 21602),
        ({"Body": "x" * 1601}, 21617),
        ({"StatusCallback": "https://bad_host.example.com/cb"}, 21609),
    ],
)
async def test_the_fake_refuses_what_twilio_refuses_in_its_error_shape(
    fake: FakeTwilio, http: httpx.AsyncClient, change: dict[str, str], code: int
) -> None:
    adapter = adapter_for(fake)
    message = outbound()
    request = adapter.send_request(message, callback_url="https://od.example.com/cb", now_ms=0)
    assert isinstance(request, HttpRequest)
    fields = {**dict(parse_qsl(request.body.decode())), **change}
    altered = HttpRequest(
        method=request.method,
        url=request.url,
        headers=request.headers,
        body=urlencode(fields).encode(),
    )
    answer = await carry(http, altered)
    assert answer.status == 400
    body = httpx.Response(400, content=answer.body).json()
    assert set(body) == {"code", "message", "more_info", "status"}
    assert body["code"] == code
    result = adapter.read_answer(message, answer, now_ms=0)
    assert isinstance(result, Rejected)
    assert result.error.code == code


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_outage_is_unavailable(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    fake.outage = True
    result = await send(http, adapter_for(fake), outbound())
    assert result == Unavailable(reason="Service Unavailable")


@pytest.mark.anyio
async def test_failed_sends_are_unavailable_until_the_faults_are_used_up(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    fake.fail_next(2, status=500)
    adapter = adapter_for(fake)
    results = [await send(http, adapter, outbound()) for _ in range(3)]
    assert results[:2] == [Unavailable(reason="Internal Server Error")] * 2
    assert isinstance(results[2], Accepted)


@pytest.mark.anyio
@pytest.mark.parametrize(("hint_s", "retry_after_ms"), [(2, 2000), (None, None)])
async def test_throttling_is_unavailable_with_the_hint_read_back(
    fake: FakeTwilio, http: httpx.AsyncClient, hint_s: float | None, retry_after_ms: int | None
) -> None:
    fake.throttle_next(1, retry_after_s=hint_s)
    adapter = adapter_for(fake)
    result = await send(http, adapter, outbound())
    assert result == Unavailable(
        reason="Too Many Requests", throttled=True, retry_after_ms=retry_after_ms
    )
    assert isinstance(await send(http, adapter, outbound()), Accepted)


# -- callbacks --------------------------------------------------------------------------------

S, D, R = MessageStatus.SUBMITTED, MessageStatus.DELIVERED, MessageStatus.READ
UNREACHABLE = MessageError(code=30003, reason="Twilio error 30003")
OUTSIDE_WINDOW = MessageError(code=63016, reason="Twilio error 63016")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("channel", "to", "expected", "error"),
    [
        ("sms", "447700900002", [S, MessageStatus.UNDELIVERABLE], UNREACHABLE),
        ("whatsapp", "447700900002", [S, MessageStatus.REJECTED], OUTSIDE_WINDOW),
        ("sms", "447700900003", [S, D], None),
        ("whatsapp", "447700900003", [S, D], None),
        ("sms", "447700900005", [S, D], None),
        ("mms", "447700900005", [S, D], None),
        ("whatsapp", "447700900005", [S, D, R], None),
    ],
)  # fmt: skip
async def test_each_script_callbacks_are_verified_and_read(
    fake: FakeTwilio,
    http: httpx.AsyncClient,
    receiver: CallbackReceiver,
    channel: str,
    to: str,
    expected: list[MessageStatus],
    error: MessageError | None,
) -> None:
    content = IMAGE if channel == "mms" else None
    message = outbound(channel, to, content)
    result = await send(http, adapter_for(fake), message, receiver.url)
    assert isinstance(result, Accepted)
    sid = result.provider_message_id
    await wait_for(fake, lambda f: len(f.callbacks) == len(expected))
    assert all(sent.answered_status == 200 for sent in fake.callbacks)
    assert receiver.refused == []
    assert statuses_of(receiver, sid) == expected
    assert {status.message_uuid for status in receiver.statuses} == {message.message_uuid}
    assert receiver.statuses[-1].error == error
    assert all(status.error is None for status in receiver.statuses[:-1])


@pytest.mark.anyio
async def test_silent_script_sends_no_callback(
    fake: FakeTwilio, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    result = await send(http, adapter_for(fake), outbound(to="447700900004"), receiver.url)
    assert isinstance(result, Accepted)
    # A silent script plans no callback at all, so nothing can still be on its way.
    assert fake.statuses_for(fake.messages[0], "4") == []
    assert fake.callbacks == []


@pytest.mark.anyio
async def test_no_callback_url_means_no_callbacks(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    assert isinstance(await send(http, adapter_for(fake), outbound("whatsapp")), Accepted)
    assert "StatusCallback" not in fake.messages[0].request
    assert fake.statuses_for(fake.messages[0], "5") == []


@pytest.mark.anyio
async def test_shuffled_and_duplicated_callbacks_are_all_verified_and_read(
    fake: FakeTwilio, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    fake.shuffle_callbacks = True
    fake.duplicate_callbacks = True
    adapter = adapter_for(fake)
    sids = []
    for to in ("447700900005", "447700900002"):
        result = await send(http, adapter, outbound("whatsapp", to), receiver.url)
        assert isinstance(result, Accepted)
        sids.append(result.provider_message_id)
    await wait_for(fake, lambda f: len(f.callbacks) == 10)
    assert [sent.answered_status for sent in fake.callbacks] == [200] * 10
    assert receiver.refused == []
    assert statuses_of(receiver, sids[0]) == [R, R, D, D, S, S]
    assert statuses_of(receiver, sids[1]) == [MessageStatus.REJECTED] * 2 + [S, S]
    assert [sent_for(fake, sid) for sid in sids] == [
        ["read", "read", "delivered", "delivered", "sent", "sent"],
        ["failed", "failed", "sent", "sent"],
    ]


@pytest.mark.anyio
async def test_messaging_service_callbacks_are_verified_and_read(
    fake: FakeTwilio, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    adapter = adapter_for(fake, messaging_service_sid=fake.messaging_service_sid)
    result = await send(http, adapter, outbound(to="447700900003"), receiver.url)
    assert isinstance(result, Accepted)
    await wait_for(fake, lambda f: len(f.callbacks) == 2)
    assert statuses_of(receiver, result.provider_message_id) == [S, D]


async def genuine_callback(
    fake: FakeTwilio, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> tuple[str, dict[str, str], bytes]:
    """A callback exactly as the fake would sign it, for a message it accepted (not sent)."""
    fake.auto_callbacks = False
    result = await send(http, adapter_for(fake), outbound(), receiver.url)
    assert isinstance(result, Accepted)
    return fake.callback_request(CallbackPlan(message=fake.messages[0], status="delivered"))


async def post(fake: FakeTwilio, url: str, headers: dict[str, str], body: bytes) -> int:
    return await anyio.to_thread.run_sync(fake.post_raw, url, headers, body)


@pytest.mark.anyio
async def test_genuine_callback_posted_raw_is_accepted(
    fake: FakeTwilio, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    url, headers, body = await genuine_callback(fake, http, receiver)
    assert await post(fake, url, headers, body) == 200
    assert [status.status for status in receiver.statuses] == [D]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda url, headers, body: (url, {**headers, "X-Twilio-Signature": "x" * 28}, body),
            id="forged signature",
        ),
        pytest.param(
            lambda url, headers, body: (
                url,
                {k: v for k, v in headers.items() if k != "X-Twilio-Signature"},
                body,
            ),
            id="unsigned",
        ),
        pytest.param(
            lambda url, headers, body: (url, headers, body.replace(b"delivered", b"failed")),
            id="tampered body",
        ),
        pytest.param(
            lambda url, headers, body: (url.replace("uuid=0", "uuid=1"), headers, body),
            id="another message's reference",
        ),
    ],
)  # fmt: skip
async def test_forged_callbacks_are_refused(
    fake: FakeTwilio,
    http: httpx.AsyncClient,
    receiver: CallbackReceiver,
    forge: Callable[[str, dict[str, str], bytes], tuple[str, dict[str, str], bytes]],
) -> None:
    url, headers, body = forge(*await genuine_callback(fake, http, receiver))
    assert await post(fake, url, headers, body) == 401
    assert receiver.statuses == []


@pytest.mark.anyio
async def test_account_without_auth_token_refuses_even_genuine_callbacks(
    fake: FakeTwilio, http: httpx.AsyncClient, receiver: CallbackReceiver
) -> None:
    receiver.adapter = adapter_for(
        fake, auth_token="", api_key_sid=fake.api_key_sid, api_key_secret=fake.api_key_secret
    )
    url, headers, body = await genuine_callback(fake, http, receiver)
    assert await post(fake, url, headers, body) == 401
    assert "auth_token" in receiver.refused[0].reason
