"""A real HTTP webhook receiver for tests: records what arrives, answers as told.

It runs an aiohttp server on 127.0.0.1 (a free port) in a background thread with its own event
loop, so synchronous tests, asyncio tests and server processes started by a test can all post
to it, and a test's own event loop is never blocked by it. It keeps connections alive and
handles thousands of requests a second, so delivery throughput tests measure the sender.

    with WebhookReceiver() as receiver:
        receiver.fail_next(2, status=503)          # two failures, then 200 again
        ...  # point the application's status_url at f"{receiver.url}/status"
        got = receiver.wait_for(lambda got: len(got) >= 3, timeout_s=5)

Every request is recorded on arrival, including those answered with an error, so retry tests
can see each attempt.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["ReceivedWebhook", "WebhookReceiver"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedWebhook:
    """One request as it arrived: header names lower-cased, the body byte for byte."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic(), comparable across threads of this process
    peer: str  # "host:port" of the sender's socket: equal peers mean a reused connection
    answered_status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def summary(self) -> str:
        return f"{self.method} {self.path} -> {self.answered_status} {self.body[:120]!r}"


class WebhookReceiver:
    """Records webhooks and answers `respond_with` status (200), after `delay_s` seconds."""

    def __init__(self, *, status: int = 200, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self._status = status
        self._failures_left = 0
        self._failure_status = 500
        self._received: list[ReceivedWebhook] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None
        self._stop: asyncio.Event | None = None
        self._port = 0

    # -- behaviour -----------------------------------------------------------------------------

    def respond_with(self, status: int) -> None:
        """Answer every later request with `status` (e.g. 503 to force retries)."""
        with self._changed:
            self._status = status

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` requests with `status`, then go back to `respond_with`'s."""
        with self._changed:
            self._failures_left = n
            self._failure_status = status

    # -- what arrived --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. "http://127.0.0.1:41234"."""
        if not self._port:
            raise RuntimeError("WebhookReceiver is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def received(self) -> list[ReceivedWebhook]:
        """A snapshot of everything received so far, in arrival order."""
        with self._changed:
            return list(self._received)

    def clear(self) -> None:
        with self._changed:
            self._received.clear()

    def wait_for(
        self, predicate: Callable[[list[ReceivedWebhook]], bool], timeout_s: float = 5.0
    ) -> list[ReceivedWebhook]:
        """Block until `predicate(everything received)` holds; return that snapshot.

        Wakes on each arrival rather than polling on a timer, so a test waits only as long as
        delivery takes. On timeout, fails with the list of what did arrive.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(list(self._received)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    arrived = "\n  ".join(w.summary() for w in self._received) or "(nothing)"
                    raise AssertionError(
                        f"condition not met within {timeout_s} s; "
                        f"{len(self._received)} webhook(s) arrived:\n  {arrived}"
                    )
                self._changed.wait(remaining)
            return list(self._received)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(started))
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise RuntimeError("webhook receiver failed to start") from failure[0]
        if not self._port:
            raise RuntimeError("webhook receiver did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, started: threading.Event) -> None:
        self._stop = asyncio.Event()
        # handler_cancellation: a sender that gave up (timeout) frees the delayed handler, and a
        # short shutdown_timeout keeps `stop()` from waiting on slow answers still pending.
        server = web.Server(self._handle, handler_cancellation=True)
        runner = web.ServerRunner(server, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self._port = runner.addresses[0][1]
        started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self._changed:
            if self._failures_left > 0:
                self._failures_left -= 1
                status = self._failure_status
            else:
                status = self._status
            self._received.append(
                ReceivedWebhook(
                    method=request.method,
                    path=request.path,
                    headers=headers,
                    body=body,
                    received_at=time.monotonic(),
                    peer=f"{peer[0]}:{peer[1]}" if peer else "?",
                    answered_status=status,
                )
            )
            self._changed.notify_all()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=status)
