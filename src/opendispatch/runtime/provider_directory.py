"""The provider accounts and routes of the database, as this process uses them.

Every server process reads the same tables, so `providers add` or `apps route` on any machine
reaches all of them within `refresh_s` (5 s by default; a route asked for and not found is
looked up again at once, at most once a second). Each account's adapter is built once per
stored version of the account (a Vonage adapter keeps its signed JWT), and its pacing and
circuit breaker live as long as the process, across refreshes.

Whether an application is live never changes after it is created, so it is read once per
application and kept. A sandbox application's route is the sandbox, whatever its routes
table says; a live one's is its route, and never the sandbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from opendispatch.errors import ConfigurationError
from opendispatch.providers.accounts import account_config, kind_of
from opendispatch.providers.base import Provider
from opendispatch.providers.http import ProviderHttp
from opendispatch.providers.kinds import AccountAdapter, ProviderKind
from opendispatch.providers.live import LiveProvider, RequestCounter
from opendispatch.providers.registry import rate_of
from opendispatch.providers.secret_box import SecretBox
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.provider_pacing import CircuitBreaker, RatePacer
from opendispatch.runtime.routing import Route, RouteStop
from opendispatch.store.database import DatabaseStore
from opendispatch.store.records import ProviderAccountRecord

__all__ = ["LiveAccount", "ProviderDirectory"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LiveAccount:
    record: ProviderAccountRecord
    kind: ProviderKind
    adapter: AccountAdapter
    provider: LiveProvider
    pacer: RatePacer
    breaker: CircuitBreaker


class ProviderDirectory:
    def __init__(
        self,
        store: DatabaseStore,
        *,
        sandbox: Provider,
        http: ProviderHttp,
        secret_box: SecretBox,
        public_url: str | None,
        clock: Clock,
        refresh_s: float = 5.0,
        count_request: RequestCounter | None = None,
    ) -> None:
        """`count_request`: told each provider request's status code (the metrics)."""
        self._store = store
        self._sandbox_route = Route(stops=(RouteStop(sandbox),))
        self._http = http
        self._secret_box = secret_box
        self._public_url = public_url
        self._clock = clock
        self._count_request = count_request
        self._refresh_ms = int(refresh_s * 1000)
        self._accounts: dict[str, LiveAccount] = {}
        self._routes: dict[tuple[str, str], tuple[str, ...]] = {}
        self._live: dict[str, bool] = {}
        self._loaded_at_ms: int | None = None
        self._forced_at_ms = -1_000_000
        self._loading: asyncio.Task[None] | None = None
        # Pacing and breakers by account name, kept across refreshes and rebuilt adapters.
        self._pacers: dict[str, RatePacer] = {}
        self._breakers: dict[str, CircuitBreaker] = {}

    async def start(self) -> None:
        """Load everything; an account whose secrets cannot be opened stops the start (a
        wrong `OPENDISPATCH_SECRET_KEY` must not look like a provider outage)."""
        await self._load(strict=True)

    async def route(self, application_id: str, channel: str) -> Route:
        live = await self._is_live(application_id)
        if not live:
            return self._sandbox_route
        await self._fresh()
        names = self._routes.get((application_id, channel))
        if names is None and self._may_force():
            await self._fresh(force=True)
            names = self._routes.get((application_id, channel))
        if not names:
            return Route(
                stops=(),
                live=True,
                missing=f"this live application has no provider route for {channel} "
                f"(opendispatch apps route {application_id} --channel {channel} --providers ...)",
            )
        stops = []
        for name in names:
            account = self._accounts.get(name)
            if account is not None:
                stops.append(RouteStop(account.provider, account.pacer, account.breaker))
        if not stops:
            return Route(
                stops=(),
                live=True,
                missing=f"no provider of the route for {channel} can be used "
                f"({', '.join(names)}): see the server log",
            )
        return Route(stops=tuple(stops), live=True)

    async def account(self, name: str) -> LiveAccount | None:
        """A provider account by name (its callbacks), refreshed like routes."""
        await self._fresh()
        account = self._accounts.get(name)
        if account is None and self._may_force():
            await self._fresh(force=True)
            account = self._accounts.get(name)
        return account

    async def close(self) -> None:
        await self._http.close()

    # -- loading ---------------------------------------------------------------------------

    async def _is_live(self, application_id: str) -> bool:
        live = self._live.get(application_id)
        if live is None:
            live = bool(await self._store.application_is_live(application_id))
            if len(self._live) > 100_000:
                self._live.clear()
            self._live[application_id] = live
        return live

    def _may_force(self) -> bool:
        now = self._clock.now_ms()
        if now - self._forced_at_ms < 1_000:
            return False
        self._forced_at_ms = now
        return True

    async def _fresh(self, *, force: bool = False) -> None:
        now = self._clock.now_ms()
        if (
            not force
            and self._loaded_at_ms is not None
            and now - self._loaded_at_ms < self._refresh_ms
        ):
            return
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._load(strict=False))
        await asyncio.shield(self._loading)

    async def _load(self, *, strict: bool) -> None:
        records = await self._store.list_provider_accounts()
        routes = await self._store.list_routes()
        accounts: dict[str, LiveAccount] = {}
        for record in records:
            current = self._accounts.get(record.name)
            if current is not None and current.record.updated_at_ms == record.updated_at_ms:
                accounts[record.name] = current
                continue
            try:
                accounts[record.name] = self._build(record)
            except ConfigurationError as exc:
                if strict:
                    raise
                log.error("provider account %s cannot be used: %s", record.name, exc)
        self._accounts = accounts
        self._routes = {(route.application_id, route.channel): route.providers for route in routes}
        self._loaded_at_ms = self._clock.now_ms()

    def _build(self, record: ProviderAccountRecord) -> LiveAccount:
        kind = kind_of(record)
        config = account_config(record, self._secret_box)
        adapter = kind.adapter(config)
        rate = rate_of(kind, record.settings)
        pacer = self._pacers.get(record.name)
        if pacer is None or pacer.rate_per_s != rate:
            pacer = self._pacers[record.name] = RatePacer(rate)
        breaker = self._breakers.setdefault(record.name, CircuitBreaker())
        provider = LiveProvider(
            config,
            adapter,
            self._http,
            public_url=self._public_url,
            now_ms=self._clock.now_ms,
            count_request=self._count_request,
        )
        return LiveAccount(
            record=record,
            kind=kind,
            adapter=adapter,
            provider=provider,
            pacer=pacer,
            breaker=breaker,
        )

    @property
    def accounts(self) -> Mapping[str, LiveAccount]:
        return self._accounts
