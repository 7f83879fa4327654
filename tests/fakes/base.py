"""What every fake provider shares: a real HTTP server on 127.0.0.1, scripted faults, and
callbacks sent back the way the provider sends them.

A fake runs an aiohttp server in a background thread with its own event loop (as
`tests/receiver.py` does), so synchronous tests, asyncio tests and server processes can all
talk to it. The kind-specific part (`FakeProvider` subclasses in this package) checks what the
real provider checks (authentication, required fields, address formats), answers in the
provider's documented shapes, and signs its callbacks as the provider does.

What happens to an accepted message is chosen by its recipient's last digit, as in the
sandbox, so one workflow can be steered through a fake:

    1      refused at send (a recipient-side 4xx in the provider's error shape)
    2      accepted, then a failure callback (undeliverable / failed)
    3      accepted, then delivered, never read
    4      accepted, then silent
    other  accepted, then delivered, then read where the channel reports reads

Faults, for the tests of fallback, unknown outcomes and rate limits:

    fake.outage = True                  every send answers 503 (or the provider's 5xx)
    fake.fail_next(3, status=500)       the next three sends fail with that status
    fake.throttle_next(5, retry_after_s=1)  the next five answer 429 (with the provider's hint)
    fake.max_rate_per_s = 20            sends beyond 20/s (sliding second) answer 429
    fake.hang = True                    sends are read and never answered (a read timeout);
                                        each is recorded on arrival, `answered_status` 0

Callbacks: after an accepted send, the statuses its script says are posted to the message's
callback URL (or `fake.callback_url`, for providers configured per account), signed, each
after `callback_delay_s`. `shuffle_callbacks` sends them in reverse order and
`duplicate_callbacks` sends each twice, as providers do (at least once, in no order).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

__all__ = ["CallbackPlan", "FakeMessage", "FakeProvider", "Received", "SentCallback"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One request to the fake's API, as it arrived (header names lower-cased)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    answered_status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True, kw_only=True)
class FakeMessage:
    """A message the fake accepted: its id, where it goes, and where its callbacks go."""

    provider_message_id: str
    channel: str  # the provider's own word for it ("sms", "whatsapp", ...)
    to: str  # the recipient as the provider wrote it (digits, +E.164, whatsapp:+E.164)
    from_: str
    text: str | None
    callback_url: str | None
    request: dict[str, Any]  # the decoded request (JSON or form fields)
    reference: str | None = None  # the client's reference echoed back, if any


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackPlan:
    """One callback to send: a provider status word for a message, and a fault to inject."""

    message: FakeMessage
    status: str  # the provider's word: "delivered", "read", "failed", ...
    error_code: str | None = None
    error_text: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SentCallback:
    status: str
    provider_message_id: str
    url: str
    answered_status: int | None  # None when the server could not be reached


@dataclass(slots=True)
class _Faults:
    fail_next: deque[int] = field(default_factory=deque)
    throttle_next: int = 0
    retry_after_s: float | None = None
    window: deque[float] = field(default_factory=deque)


class FakeProvider(ABC):
    """The shared machinery; subclasses speak one provider's API."""

    #: which recipient digit scripts apply ("read" is only sent on channels reporting reads)
    reads_on_channels: frozenset[str] = frozenset({"whatsapp", "messenger", "viber_service"})

    def __init__(self) -> None:
        self.outage = False
        self.hang = False
        self.max_rate_per_s: float | None = None
        self.callback_url: str | None = None  # per-account callback URL (WhatsApp Cloud)
        self.callback_delay_s = 0.0
        self.shuffle_callbacks = False
        self.duplicate_callbacks = False
        self.auto_callbacks = True
        self.requests: list[Received] = []
        self.messages: list[FakeMessage] = []
        self.callbacks: list[SentCallback] = []
        self._faults = _Faults()
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what a kind implements ----------------------------------------------------------

    @abstractmethod
    def routes(self) -> list[web.RouteDef]:
        """The provider's API paths, each handled by a method that calls `self.accept_send`."""

    @abstractmethod
    def error_response(
        self, status: int, *, code: str | None = None, text: str | None = None
    ) -> web.Response:
        """An error in the provider's documented shape (429 with its rate-limit headers)."""

    @abstractmethod
    def callback_request(self, plan: CallbackPlan) -> tuple[str, dict[str, str], bytes]:
        """(url, headers, body) of one signed status callback, exactly as the provider sends."""

    @abstractmethod
    def statuses_for(self, message: FakeMessage, script: str) -> list[CallbackPlan]:
        """The callbacks one recipient digit's script sends, in the order they happen."""

    # -- for the kind's handlers ---------------------------------------------------------

    def new_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._ids):08d}{int(time.time() * 1000) % 100000:05d}"

    def fault(self) -> web.Response | None:
        """The scripted fault for this send, if any (checked after authentication)."""
        with self._changed:
            if self.outage:
                return self.error_response(503)
            if self._faults.fail_next:
                return self.error_response(self._faults.fail_next.popleft())
            if self._faults.throttle_next > 0:
                self._faults.throttle_next -= 1
                return self.error_response(429)
            if self.max_rate_per_s is not None:
                now = time.monotonic()
                window = self._faults.window
                while window and now - window[0] >= 1.0:
                    window.popleft()
                if len(window) >= self.max_rate_per_s:
                    return self.error_response(429)
                window.append(now)
        return None

    @property
    def retry_after_s(self) -> float | None:
        """The hint a 429 carries (the provider's header, where it has one)."""
        return self._faults.retry_after_s

    def accept_send(self, message: FakeMessage) -> None:
        """Record an accepted message and schedule its callbacks."""
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        if not self.auto_callbacks:
            return
        script = (message.to or "")[-1:]
        plans = self.statuses_for(message, script)
        if self.shuffle_callbacks:
            plans.reverse()
        if self.duplicate_callbacks:
            plans = [plan for plan in plans for _ in range(2)]
        if plans:
            self._spawn(self._send_callbacks(plans))

    async def wait_if_hanging(self) -> None:
        if self.hang:
            await asyncio.sleep(3600)

    # -- for tests -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to register as the account's `--base-url`."""
        if not self._port:
            raise RuntimeError("fake provider is not started")
        return f"http://127.0.0.1:{self._port}"

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._changed:
            self._faults.fail_next.extend([status] * count)

    def throttle_next(self, count: int, retry_after_s: float | None = None) -> None:
        with self._changed:
            self._faults.throttle_next = count
            self._faults.retry_after_s = retry_after_s

    def send_callbacks(self, plans: list[CallbackPlan]) -> list[SentCallback]:
        """Send these callbacks now (from the fake's loop); return how each was answered."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._send_callbacks(plans), self._loop)
        return future.result(30)

    def post_raw(self, url: str, headers: dict[str, str], body: bytes) -> int:
        """Post any bytes (a forged callback) from the fake; the answer's status."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._post(url, headers, body), self._loop)
        return future.result(30)

    def get_raw(self, url: str) -> tuple[int, bytes]:
        """GET `url` from the fake (a provider's verification handshake): status and body."""
        assert self._loop is not None, "fake provider is not started"
        future = asyncio.run_coroutine_threadsafe(self._get(url), self._loop)
        return future.result(30)

    def wait_for(self, predicate: Callable[[FakeProvider], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{type(self).__name__}: condition not met within {timeout_s} s; "
                        f"{len(self.requests)} requests, {len(self.messages)} accepted, "
                        f"{len(self.callbacks)} callbacks sent"
                    )
                self._changed.wait(min(remaining, 0.05))

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(started))
            except BaseException as exc:
                failure.append(exc)
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise RuntimeError("fake provider failed to start") from failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- machinery -----------------------------------------------------------------------

    async def _serve(self, started: threading.Event) -> None:
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._record_request])
        app.add_routes(self.routes())
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self._port = runner.addresses[0][1]
        self._session = aiohttp.ClientSession()
        started.set()
        try:
            await self._stop.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self._session.close()
            await runner.cleanup()

    @web.middleware
    async def _record_request(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        body = await request.read()

        def record(status: int) -> None:
            with self._changed:
                self.requests.append(
                    Received(
                        method=request.method,
                        path=request.path,
                        query=request.query_string,
                        headers={k.lower(): v for k, v in request.headers.items()},
                        body=body,
                        answered_status=status,
                    )
                )
                self._changed.notify_all()

        if self.hang:  # never answered: recorded as it arrives (answered_status 0)
            record(0)
            response: web.StreamResponse = await handler(request)
            return response
        response = await handler(request)
        record(response.status)
        return response

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_callbacks(self, plans: list[CallbackPlan]) -> list[SentCallback]:
        sent = []
        for plan in plans:
            if self.callback_delay_s:
                await asyncio.sleep(self.callback_delay_s)
            url, headers, body = self.callback_request(plan)
            try:
                status: int | None = await self._post(url, headers, body)
            except (aiohttp.ClientError, OSError, TimeoutError):
                status = None
            record = SentCallback(
                status=plan.status,
                provider_message_id=plan.message.provider_message_id,
                url=url,
                answered_status=status,
            )
            with self._changed:
                self.callbacks.append(record)
                self._changed.notify_all()
            sent.append(record)
        return sent

    async def _get(self, url: str) -> tuple[int, bytes]:
        assert self._session is not None
        async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
            return response.status, await response.read()

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        assert self._session is not None
        async with self._session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            await response.read()
            return response.status
