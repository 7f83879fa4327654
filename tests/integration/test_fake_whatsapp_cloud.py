"""The WhatsApp Cloud adapter against its fake over real HTTP on 127.0.0.1.

The test carries the adapter's `HttpRequest` with httpx and hands the answer back, as the
runtime's transport does; a small aiohttp receiver in the test plays the callback endpoint:
it verifies and reads each callback with the adapter and answers as the server would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    hash_setting,
)
from opendispatch.providers.whatsapp_cloud import KIND
from tests.fakes.base import CallbackPlan
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

pytestmark = pytest.mark.anyio

CALLBACK_PATH = "/v0.1/providers/wa/callbacks"
NOW_MS = 1_750_000_000_000


@dataclass
class CallbackEndpoint:
    """The server's callback route for one account, reduced to what the adapter decides."""

    adapter: AccountAdapter
    url: str = ""
    statuses: list[CallbackStatus] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        got = CallbackRequest(
            method=request.method,
            url=str(request.url),
            query=list(request.query.items()),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            received_at_ms=NOW_MS,
        )
        try:
            if request.method == "GET":
                return web.Response(body=self.adapter.handshake(got))
            self.adapter.verify_callback(got)
            self.statuses.extend(self.adapter.read_callback(got))
        except CallbackRefused as refused:
            self.refused.append(refused.status_code)
            return web.Response(status=refused.status_code, text=refused.reason)
        return web.Response(text="ok")


def stored_settings(values: dict[str, str]) -> dict[str, str]:
    """The settings as the core stores them: hashed ones hashed."""
    stored = {}
    for key, value in values.items():
        setting = KIND.setting(key)
        stored[key] = hash_setting(value) if setting is not None and setting.hashed else value
    return stored


def adapter_for(fake: FakeWhatsAppCloud, **changes: str) -> AccountAdapter:
    settings = stored_settings(fake.account_settings() | changes)
    config = AccountConfig(name="wa", kind=KIND.name, base_url=fake.url, settings=settings)
    KIND.check_settings(fake.account_settings() | changes)
    return KIND.adapter(config)


@pytest.fixture
def fake() -> Iterator[FakeWhatsAppCloud]:
    with FakeWhatsAppCloud() as fake:
        yield fake


@pytest.fixture
async def endpoint(fake: FakeWhatsAppCloud) -> AsyncIterator[CallbackEndpoint]:
    endpoint = CallbackEndpoint(adapter_for(fake))
    app = web.Application()
    app.router.add_route("*", CALLBACK_PATH, endpoint.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}{CALLBACK_PATH}"
    fake.callback_url = endpoint.url  # Meta: configured on the app, not per message
    yield endpoint
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def message(
    number: str, content: dict[str, Any] | None = None, uuid: str = "m-1", **options: Any
) -> OutboundMessage:
    return OutboundMessage(
        message_uuid=uuid,
        dispatch_uuid="d-1",
        channel="whatsapp",
        to={"type": "whatsapp", "number": number},
        from_={"type": "whatsapp", "number": "15550783881"},
        message={"content": content or {"type": "text", "text": "Your code is 64873."}, **options},
        attempt=1,
    )


async def send(
    adapter: AccountAdapter, http: httpx.AsyncClient, outbound: OutboundMessage
) -> Accepted | Rejected | Unavailable:
    request = adapter.send_request(outbound, callback_url="https://unused.test/", now_ms=NOW_MS)
    assert isinstance(request, HttpRequest)
    response = await http.request(
        request.method, request.url, headers=dict(request.headers), content=request.body
    )
    answer = HttpAnswer(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items()},
        body=response.content,
    )
    return adapter.read_answer(outbound, answer, now_ms=NOW_MS)


async def wait_for(fake: FakeWhatsAppCloud, predicate: Callable[[Any], bool]) -> None:
    """Wait in a thread: the callback endpoint runs on this test's loop."""
    await asyncio.to_thread(fake.wait_for, predicate)


# -- sends -------------------------------------------------------------------------------------


async def test_a_text_is_accepted_and_its_sent_delivered_read_callbacks_are_read(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    got = await send(endpoint.adapter, http, message("447700900005", uuid="m-text"))
    assert isinstance(got, Accepted)
    assert got.provider_message_id.startswith("wamid.")
    (received,) = fake.requests
    assert received.path == f"/v23.0/{fake.phone_number_id}/messages"
    assert received.json["biz_opaque_callback_data"] == "m-text"

    await wait_for(fake, lambda f: len(f.callbacks) == 3)
    assert [c.answered_status for c in fake.callbacks] == [200, 200, 200]
    assert [(s.status, s.message_uuid, s.provider_message_id) for s in endpoint.statuses] == [
        (MessageStatus.SUBMITTED, "m-text", got.provider_message_id),
        (MessageStatus.DELIVERED, "m-text", got.provider_message_id),
        (MessageStatus.READ, "m-text", got.provider_message_id),
    ]


@pytest.mark.parametrize(
    ("content", "options"),
    [
        ({"type": "image", "image": {"url": "https://x.test/a.jpg", "caption": "c"}}, {}),
        ({"type": "audio", "audio": {"url": "https://x.test/a.mp3"}}, {}),
        ({"type": "video", "video": {"url": "https://x.test/v.mp4"}}, {}),
        ({"type": "file", "file": {"url": "https://x.test/f.pdf", "caption": "c"}}, {}),
        (
            {
                "type": "template",
                "template": {"name": "whatsapp:hsm:ns:verify", "parameters": [{"default": "1"}]},
            },
            {"whatsapp": {"locale": "en-GB"}},
        ),
        (
            {
                "type": "custom",
                "custom": {"type": "location", "location": {"latitude": "1", "longitude": "2"}},
            },
            {},
        ),
    ],
    ids=["image", "audio", "video", "file", "template", "custom"],
)
async def test_each_content_type_is_accepted_by_the_fakes_checks(
    fake: FakeWhatsAppCloud,
    endpoint: CallbackEndpoint,
    http: httpx.AsyncClient,
    content: dict[str, Any],
    options: dict[str, Any],
) -> None:
    got = await send(endpoint.adapter, http, message("447700900004", content, **options))
    assert isinstance(got, Accepted), got
    assert fake.messages[0].request["type"] == fake.requests[0].json["type"]


async def test_recipient_ending_in_1_is_refused_as_the_recipients_problem(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    got = await send(endpoint.adapter, http, message("447700900001"))
    assert isinstance(got, Rejected)
    assert not got.provider_side
    assert got.error.code == 131030
    assert "allowed list" in got.error.reason
    assert fake.messages == []


async def test_recipient_ending_in_2_fails_with_errors_0_after_acceptance(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    got = await send(endpoint.adapter, http, message("447700900002", uuid="m-2"))
    assert isinstance(got, Accepted)
    await wait_for(fake, lambda f: len(f.callbacks) == 1)
    (failed,) = endpoint.statuses
    assert failed.status is MessageStatus.REJECTED
    assert failed.message_uuid == "m-2"
    assert failed.error == MessageError(code=131026, reason="Message undeliverable.")


async def test_recipient_ending_in_3_is_delivered_never_read(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    assert isinstance(await send(endpoint.adapter, http, message("447700900003")), Accepted)
    await wait_for(fake, lambda f: len(f.callbacks) == 2)
    assert [s.status for s in endpoint.statuses] == [
        MessageStatus.SUBMITTED,
        MessageStatus.DELIVERED,
    ]


async def test_outage_is_unavailable(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    fake.outage = True
    got = await send(endpoint.adapter, http, message("447700900004"))
    assert isinstance(got, Unavailable)
    assert not got.throttled
    assert fake.requests[0].answered_status == 503


async def test_fail_next_is_unavailable_then_accepted(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    fake.fail_next(2, status=500)
    results = [await send(endpoint.adapter, http, message("447700900004")) for _ in range(3)]
    assert [type(r) for r in results] == [Unavailable, Unavailable, Accepted]


async def test_throttling_is_read_with_metas_regain_access_estimate(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    fake.throttle_next(1, retry_after_s=120)
    hinted = await send(endpoint.adapter, http, message("447700900004"))
    assert hinted == Unavailable(
        reason="(#130429) Rate limit hit: Message failed to send because there were too many "
        "messages sent from this phone number in a short period of time",
        throttled=True,
        retry_after_ms=120_000,
    )
    fake.throttle_next(1)
    bare = await send(endpoint.adapter, http, message("447700900004"))
    assert isinstance(bare, Unavailable)
    assert bare.throttled
    assert bare.retry_after_ms is None
    assert isinstance(await send(endpoint.adapter, http, message("447700900004")), Accepted)


async def test_a_wrong_access_token_is_a_provider_side_rejection(
    fake: FakeWhatsAppCloud, http: httpx.AsyncClient
) -> None:
    adapter = adapter_for(fake, access_token="EAAGnot-the-token")
    got = await send(adapter, http, message("447700900004"))
    assert isinstance(got, Rejected)
    assert got.provider_side
    assert got.error.code == 190
    assert fake.requests[0].answered_status == 401


async def test_a_phone_number_id_the_app_does_not_have_is_a_provider_side_rejection(
    fake: FakeWhatsAppCloud, http: httpx.AsyncClient
) -> None:
    got = await send(adapter_for(fake, phone_number_id="123"), http, message("447700900004"))
    assert isinstance(got, Rejected)
    assert got.provider_side
    assert got.error.code == 100


# -- callbacks ---------------------------------------------------------------------------------


async def test_shuffled_callbacks_are_all_read_in_the_order_they_came(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    fake.shuffle_callbacks = True
    assert isinstance(await send(endpoint.adapter, http, message("447700900005")), Accepted)
    await wait_for(fake, lambda f: len(f.callbacks) == 3)
    assert [s.raw_status for s in endpoint.statuses] == ["read", "delivered", "sent"]
    assert endpoint.refused == []


async def test_duplicated_callbacks_are_each_verified_and_read(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    fake.duplicate_callbacks = True
    assert isinstance(await send(endpoint.adapter, http, message("447700900003")), Accepted)
    await wait_for(fake, lambda f: len(f.callbacks) == 4)
    assert [s.raw_status for s in endpoint.statuses] == ["sent", "sent", "delivered", "delivered"]
    assert all(c.answered_status == 200 for c in fake.callbacks)


async def test_forged_unsigned_and_tampered_callbacks_are_refused(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint, http: httpx.AsyncClient
) -> None:
    fake.auto_callbacks = False
    assert isinstance(await send(endpoint.adapter, http, message("447700900005")), Accepted)
    (sent,) = fake.messages
    payload = fake.status_payload(CallbackPlan(message=sent, status="delivered"))
    headers, body = fake.signed(payload)
    tampered = body.replace(b'"delivered"', b'"read"')
    forged_fake = FakeWhatsAppCloud(phone_number_id=fake.phone_number_id)  # another secret
    forged_headers, forged_body = forged_fake.signed(payload)
    unsigned = {"Content-Type": "application/json"}

    url = endpoint.url
    answers = await asyncio.to_thread(
        lambda: [
            fake.post_raw(url, forged_headers, forged_body),
            fake.post_raw(url, unsigned, body),
            fake.post_raw(url, headers, tampered),
            fake.post_raw(url, *fake.signed({"entry": "not a list"})),
            fake.post_raw(url, headers, body),
        ]
    )
    assert answers == [401, 401, 401, 400, 200]
    assert [s.raw_status for s in endpoint.statuses] == ["delivered"]


async def test_the_verification_handshake_echoes_the_challenge_only_to_the_right_token(
    fake: FakeWhatsAppCloud, endpoint: CallbackEndpoint
) -> None:
    status, body, challenge = await asyncio.to_thread(fake.verify_webhook, endpoint.url)
    assert (status, body) == (200, challenge.encode())
    wrong = await asyncio.to_thread(lambda: fake.verify_webhook(endpoint.url, verify_token="guess"))
    assert wrong[0] == 403
    bad_mode = await asyncio.to_thread(
        lambda: fake.verify_webhook(endpoint.url, mode="unsubscribe")
    )
    assert bad_mode[0] == 400


async def test_the_fakes_statuses_serialise_as_meta_signs_them(fake: FakeWhatsAppCloud) -> None:
    """The fake's own contract: escaped-unicode JSON, signature over those exact bytes."""
    _, body = fake.signed({"text": "Olá"})
    assert body == json.dumps({"text": "Olá"}, separators=(",", ":")).encode()
    assert b"\\u00e1" in body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"to": "447700900004", "type": "text", "text": {"body": "x"}}, 100),
        ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, 131008),
        ({"messaging_product": "whatsapp", "to": "44-77", "text": {"body": "x"}}, 131009),
        ({"messaging_product": "whatsapp", "to": "447700900004", "type": "image"}, 131008),
        (
            {
                "messaging_product": "whatsapp",
                "to": "447700900004",
                "type": "audio",
                "audio": {"link": "https://x.test/a.mp3", "caption": "no"},
            },
            100,
        ),
        ({"messaging_product": "whatsapp", "to": "447700900004", "type": "fax", "fax": {}}, 131051),
    ],
    ids=["no-product", "no-to", "bad-to", "no-object", "audio-caption", "unknown-type"],
)
async def test_the_fake_refuses_what_meta_refuses_in_the_graph_error_shape(
    fake: FakeWhatsAppCloud,
    endpoint: CallbackEndpoint,
    http: httpx.AsyncClient,
    body: Any,
    code: int,
) -> None:
    response = await http.post(
        f"{fake.url}/v23.0/{fake.phone_number_id}/messages",
        headers={"Authorization": f"Bearer {fake.access_token}"},
        json=body,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert {"message", "type", "fbtrace_id"} <= error.keys()
    answer = HttpAnswer(status=400, headers={}, body=response.content)
    got = endpoint.adapter.read_answer(message("447700900004"), answer, now_ms=NOW_MS)
    assert isinstance(got, Rejected)
    assert not got.provider_side
    assert fake.messages == []
