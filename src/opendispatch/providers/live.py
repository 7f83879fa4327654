"""A registered provider account as a `Provider`: its adapter's request, carried over HTTP,
its answer read back by the adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from opendispatch.providers.base import OutboundMessage, Rejected, SendResult, Unavailable, Unknown
from opendispatch.providers.http import AnswerLost, NotSent, ProviderHttp
from opendispatch.providers.kinds import AccountAdapter, AccountConfig

__all__ = ["NOT_SENT", "NO_ANSWER", "LiveProvider", "RequestCounter", "callback_path"]

# What a request that got no HTTP answer is counted as (else its status code).
NOT_SENT: Final = "not_sent"  # it never reached the provider: connecting failed or timed out
NO_ANSWER: Final = "no_answer"  # it was sent, and no complete answer came back

RequestCounter = Callable[[str, int | str], None]  # (account name, status code or the above)


def _uncounted(account: str, code: int | str) -> None:
    pass


def callback_path(account_name: str) -> str:
    """Where the account's provider posts its callbacks, below `--public-url`."""
    return f"/v0.1/providers/{account_name}/callbacks"


class LiveProvider:
    def __init__(
        self,
        config: AccountConfig,
        adapter: AccountAdapter,
        http: ProviderHttp,
        *,
        public_url: str | None,
        now_ms: Callable[[], int],
        count_request: RequestCounter | None = None,
    ) -> None:
        """`count_request`: told each request's status code (the metrics)."""
        self.name = config.name
        self.config = config
        self.adapter = adapter
        self._http = http
        self._now_ms = now_ms
        self._count_request = count_request or _uncounted
        self._callback_url = (
            None if public_url is None else public_url.rstrip("/") + callback_path(config.name)
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        request = self.adapter.send_request(
            message, callback_url=self._callback_url, now_ms=self._now_ms()
        )
        if isinstance(request, Rejected):
            return request  # this provider cannot carry it
        try:
            answer = await self._http.exchange(request)
        except NotSent as exc:
            self._count_request(self.name, NOT_SENT)
            return Unavailable(reason=f"{self.name}: {exc}")
        except AnswerLost as exc:
            self._count_request(self.name, NO_ANSWER)
            return Unknown(reason=f"{self.name}: {exc}")
        self._count_request(self.name, answer.status)
        return self.adapter.read_answer(message, answer, now_ms=self._now_ms())

    async def close(self) -> None:
        """The HTTP client is shared by every account; its owner closes it."""
