"""Carries an adapter's `HttpRequest` to its provider and brings the answer back, saying
which failures left the request unsent (safe to try again) and which may have delivered it.

The distinction is the point of this module. None of the providers takes an idempotency key,
so a request that reached the provider must not be sent again: a connection refused, a DNS
or TLS failure, a connect timeout or a full pool mean nothing was sent (`NotSent`); a read
timeout or a connection lost after the request was written mean it may have been
(`AnswerLost`). aiohttp raises them apart (`ClientConnectorError` and `ConnectionTimeoutError`
before sending, `SocketTimeoutError` and `ServerDisconnectedError` after), and it never
retries a POST on its own.

The client is aiohttp's: a well-kept HTTP/1.1 client with pooling and TLS, measured in
`bench/failover.py providers` against the sandbox path.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from opendispatch.providers.kinds import HttpAnswer, HttpRequest

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AnswerLost", "NotSent", "ProviderHttp"]

_MAX_ANSWER_BYTES = 1024 * 1024


class NotSent(Exception):
    """The request never reached the provider: trying again is safe."""


class AnswerLost(Exception):
    """The request was written and no complete answer came back: it may have been sent."""


class ProviderHttp:
    """One pooled client for every provider account of a process."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 256,
        ca_file: str | None = None,
        user_agent: str = "opendispatch",
    ) -> None:
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._tls: ssl.SSLContext | bool = True
        if ca_file is not None:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=ca_file)
            self._tls = context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp  # here, not at the top: a third of start-up, and only live sends need it

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=15, ssl=self._tls
                ),
                # Waiting for a pooled connection and connecting count as "not sent";
                # reading the answer is where a timeout leaves the outcome unknown.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.timeout_s, sock_read=self.timeout_s
                ),
                headers={"User-Agent": self._user_agent},
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def exchange(self, request: HttpRequest) -> HttpAnswer:
        """Raises `NotSent` or `AnswerLost` (with a short reason, no secrets) on failure."""
        import aiohttp  # loaded by `_client` already: a lookup

        try:
            async with self._client().request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                allow_redirects=False,
            ) as response:
                body = await response.content.read(_MAX_ANSWER_BYTES)
                return HttpAnswer(
                    status=response.status,
                    headers={name.lower(): value for name, value in response.headers.items()},
                    body=body,
                )
        except aiohttp.ConnectionTimeoutError:
            raise NotSent(f"connecting timed out after {self.timeout_s} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(f"cannot connect: {_reason(exc)}") from None
        except aiohttp.SocketTimeoutError:
            raise AnswerLost(f"no answer within {self.timeout_s} s") from None
        except aiohttp.ServerDisconnectedError:
            raise AnswerLost("the provider closed the connection before answering") from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise AnswerLost(f"unreadable answer: {_reason(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AnswerLost(f"connection failed while sending: {_reason(exc)}") from None
        except TimeoutError:
            raise AnswerLost(f"no answer within {self.timeout_s} s") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
