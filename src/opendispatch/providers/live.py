"""A registered provider account as a `Provider`: its adapter's request, carried over HTTP,
its answer read back by the adapter."""

from __future__ import annotations

from collections.abc import Callable

from opendispatch.providers.base import OutboundMessage, Rejected, SendResult, Unavailable, Unknown
from opendispatch.providers.http import AnswerLost, NotSent, ProviderHttp
from opendispatch.providers.kinds import AccountAdapter, AccountConfig

__all__ = ["LiveProvider", "callback_path"]


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
    ) -> None:
        self.name = config.name
        self.config = config
        self.adapter = adapter
        self._http = http
        self._now_ms = now_ms
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
            return Unavailable(reason=f"{self.name}: {exc}")
        except AnswerLost as exc:
            return Unknown(reason=f"{self.name}: {exc}")
        return self.adapter.read_answer(message, answer, now_ms=self._now_ms())

    async def close(self) -> None:
        """The HTTP client is shared by every account; its owner closes it."""
