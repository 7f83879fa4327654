"""One HTTP POST per webhook delivery attempt, with an outcome instead of an exception.

The delivery loop treats every failure the same way (schedule a retry, see `retry`), so this
seam turns refused connections, DNS failures, TLS errors, timeouts and non-2xx answers into a
`DeliveryOutcome` with a short reason for logs and the dead-letter record. Only programming
errors (and cancellation) propagate.

Built on aiohttp, chosen by measurement (`bench/webhook_client.py`, 400-byte bodies to a local
receiver on 2 cores): aiohttp sustained about 18,000 posts/s at 64 concurrent posts and 9,000/s
at 256, where httpx.AsyncClient managed about 600/s and 380/s, and never more than about
1,700/s even one post at a time (it spends ~0.5 ms of CPU per request, and its pool degrades
with concurrency: encode/httpx#3215). Our target is 2,000 webhooks/s with the receiver on the
same machine, which httpx cannot reach.

Choices that matter for a multi-tenant webhook sender:
- no cookie jar: a cookie one receiver sets must never be sent with another tenant's webhook;
- no redirects: a 3xx is not a delivery (following one would turn the POST into a GET or send
  the signed body somewhere the application did not configure);
- keep-alive connections expire after `keepalive_s` (4 s), just under the 5 s idle timeout of
  common servers (Node, uvicorn), so we rarely reuse a connection the receiver is closing;
- a per-host connection limit, so one slow receiver cannot take the whole pool.

One `WebhookClient` serves one event loop: the aiohttp session is created on the first post,
inside the running loop, and must be closed with `close()` (or `async with`).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp

__all__ = ["DeliveryOutcome", "WebhookClient", "describe_failure"]

_MAX_ERROR_CHARS = 200
# Answers are read (so the connection can be reused) but not kept; past this much we stop
# reading and let the connection close rather than buffer a receiver's large page.
_MAX_DRAIN_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOutcome:
    """What one POST achieved. `delivered` only for a 2xx answer; `error` says why not."""

    delivered: bool
    status_code: int | None
    error: str | None
    elapsed_ms: float


def describe_failure(exc: BaseException, *, timeout_s: float) -> str:
    """A short, stable reason for a failed attempt ("connection refused", "timed out ...")."""
    # Order matters: aiohttp's timeouts are also OSErrors, its TLS errors also connector errors.
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s} s"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return _short(f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        host = exc.host
        if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(
            exc.os_error, socket.gaierror
        ):
            return _short(f"DNS lookup failed for {host}")
        if isinstance(exc, aiohttp.ClientSSLError) or isinstance(exc.os_error, ssl.SSLError):
            return _short(f"TLS error with {host}: {_reason(exc.os_error)}")
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return _short(f"cannot connect to {host}: {_reason(exc.os_error)}")
    if isinstance(exc, ssl.SSLError):
        return _short(f"TLS error: {_reason(exc)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected before answering"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return _short(f"invalid HTTP response: {exc}")
    return _short(f"{type(exc).__name__}: {exc}")


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


class WebhookClient:
    """Posts webhook bodies over pooled keep-alive connections; `post` never raises for I/O."""

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        max_connections: int = 256,
        max_connections_per_host: int = 64,
        keepalive_s: float = 4.0,
        user_agent: str = "opendispatch-webhooks",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_connections < 1 or max_connections_per_host < 1:
            raise ValueError("connection limits must be at least 1")
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        self._max_connections_per_host = max_connections_per_host
        self._keepalive_s = keepalive_s
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=self._max_connections_per_host,
            keepalive_timeout=self._keepalive_s,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # One budget for the whole attempt: waiting for a pooled connection, connecting,
            # sending and reading the answer. A receiver that takes longer has not accepted.
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": self._user_agent},
            auto_decompress=False,
            raise_for_status=False,
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryOutcome:
        """POST `body` to `url` with exactly `headers` (plus Host, Content-Length, User-Agent)."""
        if self._closed:
            raise RuntimeError("WebhookClient is closed")
        if self._session is None:
            self._session = self._open_session()
        started = time.perf_counter()
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                await _drain(response)
        except (aiohttp.ClientError, OSError) as exc:
            return DeliveryOutcome(
                delivered=False,
                status_code=None,
                error=describe_failure(exc, timeout_s=self.timeout_s),
                elapsed_ms=(time.perf_counter() - started) * 1000,
            )
        elapsed_ms = (time.perf_counter() - started) * 1000
        if 200 <= status < 300:
            return DeliveryOutcome(
                delivered=True, status_code=status, error=None, elapsed_ms=elapsed_ms
            )
        return DeliveryOutcome(
            delivered=False, status_code=status, error=f"HTTP {status}", elapsed_ms=elapsed_ms
        )

    async def close(self) -> None:
        """Close pooled connections; the client cannot post afterwards."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read and drop the answer so the connection returns to the pool.

    The status line already decided the outcome: a receiver that answered 2xx and then stalled
    or broke off its body has still accepted the webhook, so errors here are not failures (the
    connection is then closed instead of reused).
    """
    received = 0
    try:
        while received <= _MAX_DRAIN_BYTES:
            chunk = await response.content.readany()
            if not chunk:
                return
            received += len(chunk)
    except (aiohttp.ClientError, OSError):
        return
