"""The ASGI application: lifespan, routes, and the conversion of every error to Vonage's shape."""

from __future__ import annotations

import gc
import json
import logging
from typing import Any

from opendispatch.api.callback_routes import CallbackRoutes
from opendispatch.api.dispatch_routes import DispatchRoutes
from opendispatch.api.docs import DocsRoutes
from opendispatch.api.http import Receive, Request, Response, Route, Router, Scope, Send
from opendispatch.api.messages_v1.problems import as_messages_problem
from opendispatch.api.messages_v1.routes import MessagesRoutes
from opendispatch.api.metrics_route import MetricsRoute
from opendispatch.api.openapi import openapi_document
from opendispatch.api.problems import problem_response
from opendispatch.api.rate_limit import RateLimiter
from opendispatch.api.sandbox_routes import SandboxRoutes
from opendispatch.api.webhook_routes import WebhookRoutes
from opendispatch.auth.authenticator import Authenticator
from opendispatch.auth.replay import JwtReplay
from opendispatch.config import Settings
from opendispatch.dashboard import Dashboard
from opendispatch.errors import (
    ApiError,
    DatabaseUnavailable,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    StoreError,
)
from opendispatch.metrics import Metrics, QueueDepths
from opendispatch.runtime.assembly import build_runtime
from opendispatch.runtime.clock import Clock, SystemClock
from opendispatch.runtime.webhook_worker import WebhookPoster
from opendispatch.store.database import DatabaseStore
from opendispatch.store.factory import create_store

__all__ = ["DispatchApp"]

log = logging.getLogger("opendispatch.api")

_HEALTH_OK = b'{"status":"ok"}'
_HEALTH_STARTING = b'{"status":"starting"}'


class DispatchApp:
    """`DispatchApp(settings)` is an ASGI app; uvicorn runs it, tests may call it directly."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: DatabaseStore | None = None,
        clock: Clock | None = None,
        webhook_client: WebhookPoster | None = None,
        run_workers: bool = True,
        freeze_heap_after_startup: bool = False,
    ) -> None:
        self.settings = settings
        self._freeze_heap = freeze_heap_after_startup
        self._run_workers = run_workers
        self.store = (
            store
            if store is not None
            else create_store(
                settings.database,
                serving=run_workers,
                pool_min=settings.db_pool_min,
                pool_max=settings.db_pool_max,
            )
        )
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.runtime = build_runtime(
            settings,
            store=self.store,
            clock=self.clock,
            webhook_client=webhook_client,
            metrics=self.metrics,
        )
        self.ready = False
        authenticator = Authenticator(
            self.store,
            cache_seconds=_credentials_cache_s(settings, self.store),
            jwt_leeway_s=settings.jwt_leeway_s,
            max_token_age_s=settings.jwt_max_age_s,
            replay=JwtReplay(settings.jwt_replay),
        )
        self.runtime.on_application_changed.append(authenticator.forget)
        # One bucket per application across every route: the limit is the application's.
        rate_limiter = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        # What every group of authenticated routes is built with (`AuthenticatedRoutes`).
        shared: dict[str, Any] = {
            "settings": settings,
            "store": self.store,
            "runtime": self.runtime,
            "authenticator": authenticator,
            "clock_ms": self.clock.now_ms,
            "rate_limiter": rate_limiter,
        }
        dispatch = DispatchRoutes(**shared, admission=self.runtime.admission)
        messages = MessagesRoutes(**shared, admission=self.runtime.admission)
        sandbox = SandboxRoutes(**shared)
        webhooks = WebhookRoutes(**shared)
        callbacks = CallbackRoutes(
            intake=self.runtime.callbacks, public_url=settings.public_url, clock=self.clock
        )
        dashboard = Dashboard(
            settings=settings, store=self.store, runtime=self.runtime, clock=self.clock
        )
        self._openapi = openapi_document(metrics=settings.metrics)
        docs = DocsRoutes()
        collection = {"GET": dispatch.list, "POST": dispatch.create}
        metrics = (
            [
                Route(
                    "/metrics",
                    {
                        "GET": MetricsRoute(
                            self.metrics.registry,
                            QueueDepths(self.store, self.clock, self.metrics.registry),
                            token=settings.metrics_token,
                        ).get
                    },
                )
            ]
            if settings.metrics
            else []
        )
        # Every route here is in /openapi.json (tests/integration/test_openapi.py checks).
        self._router = Router(
            [
                Route("/health", {"GET": self._health}),
                *metrics,
                Route("/openapi.json", {"GET": self._openapi_json}),
                Route("/docs", {"GET": docs.page}),
                Route("/docs/", {"GET": docs.page_with_slash}),
                Route("/docs/{asset}", {"GET": docs.asset}),
                Route("/v0.1/dispatch", collection),
                Route("/v0.1/dispatch/", collection),
                Route("/v0.1/dispatch/{dispatch_uuid}", {"GET": dispatch.get}),
                Route("/workflows/{dispatch_uuid}", {"GET": dispatch.get}),
                Route("/v0.1/dispatch/{dispatch_uuid}/cancel", {"POST": dispatch.cancel}),
                Route("/v1/messages", {"POST": messages.send}),
                Route(
                    "/workflows/{dispatch_uuid}/messages/{message_uuid}",
                    {"GET": dispatch.get_message},
                ),
                Route(
                    "/v0.1/sandbox/messages/{message_uuid}/status",
                    {"POST": sandbox.inject_status},
                ),
                Route("/v0.1/webhooks", {"GET": webhooks.list}),
                Route("/v0.1/webhooks/replay", {"POST": webhooks.replay_many}),
                Route("/v0.1/webhooks/{webhook_id}/replay", {"POST": webhooks.replay_one}),
                Route(
                    "/v0.1/providers/{name}/callbacks",
                    {"POST": callbacks.receive, "GET": callbacks.handshake},
                ),
                *dashboard.routes(),
            ]
        )

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every route this app serves."""
        return self._router.routes

    # -- lifecycle -------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store (migrating it) and start the workers. A start that fails closes
        what it opened, quietly, and raises: the caller says why (`cli/startup.py`)."""
        try:
            await self.store.open()
            if self._run_workers:
                await self.runtime.start()
        except BaseException:
            await self._abandon_startup()
            raise
        if self._freeze_heap:
            # Everything alive now (modules, pydantic schemas, caches) lives as long as the
            # process: moving it out of the collector's sight makes each collection scan only
            # request garbage. Measured: ~+15 % POST throughput, latency spread 4 ms -> 1 ms.
            gc.collect()
            gc.freeze()
            # Requests and transitions allocate many short-lived objects; collecting the
            # youngest generation every 700 allocations cost about 2 % of the server's CPU
            # per workflow (bench/failover.py e2e, 1.46-1.50 vs 1.51-1.52 ms).
            gc.set_threshold(50_000, 20, 100)
        self.ready = True

    async def _abandon_startup(self) -> None:
        for step in (self.runtime.stop, self.runtime.close, self.store.close):
            try:
                await step()
            except Exception:
                log.debug("closing after a failed start", exc_info=True)

    async def shutdown(self) -> None:
        self.ready = False
        await self.runtime.stop()
        await self.runtime.close()
        await self.store.close()
        log.info("OpenDispatch stopped")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if not self.ready:  # `opendispatch serve` starts it before uvicorn
                        await self.startup()
                except DatabaseUnavailable as exc:
                    # Missing or damaged database: the message says what to do; a traceback
                    # would only bury it.
                    log.error("cannot start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests --------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        method = request.method
        head_only = method == "HEAD"
        try:
            response = await self._route(request, "GET" if head_only else method)
        except ApiError as error:
            response = self._problem(request, error)
        except DatabaseUnavailable:
            # Logged once, when the store failed; `/health` says why.
            response = self._problem(
                request,
                ServiceUnavailable(
                    "The server's database is unavailable (deleted, replaced or damaged); "
                    "nothing was stored. An operator must restore it."
                ),
            )
        except StoreError as error:
            log.warning("store error on %s %s: %s", method, request.path, error)
            response = self._problem(
                request,
                ServiceUnavailable(
                    "The database is busy; try again.", headers=((b"retry-after", b"1"),)
                )
                if error.retryable
                else ApiError("The server could not complete the request."),
            )
        except Exception:
            log.exception("unhandled error on %s %s [%s]", method, request.path, request.request_id)
            response = self._problem(
                request, ApiError("The server could not complete the request.")
            )
        await response.send(send, head_only=head_only)

    async def _route(self, request: Request, method: str) -> Response:
        found = self._router.match(request.path)
        if found is None:
            raise NotFound(f"No such resource: {request.path}")
        route, request.path_params = found
        handler = route.methods.get(method)
        if handler is None:
            raise MethodNotAllowed(
                f"{request.method} is not allowed on {request.path}.",
                headers=((b"allow", route.allow),),
            )
        return await handler(request)

    def _problem(self, request: Request, error: ApiError) -> Response:
        level = logging.ERROR if error.status >= 500 else logging.INFO
        if isinstance(error, ServiceUnavailable):
            # Busy, or refusing at capacity: expected under load, and logged once when it
            # starts (see `admission`); a line per refused request would flood the log.
            level = logging.DEBUG
        log.log(
            level,
            "%s %s -> %d %s: %s [request %s]",
            request.method,
            request.path,
            error.status,
            error.title,
            error.detail,
            request.request_id,
        )
        if request.path.startswith("/v1/"):  # the Messages API v1 answers in its own words
            return problem_response(
                as_messages_problem(error),
                request.request_id,
                content_type=b"application/problem+json",
            )
        return problem_response(error, request.request_id)

    # -- small endpoints -------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        if not self.ready:
            return Response(503, _HEALTH_STARTING)
        failure = self.store.failure
        if failure is not None:
            body = {"status": "failed", "reason": failure}
            return Response(503, json.dumps(body, separators=(",", ":")).encode())
        return Response(200, _HEALTH_OK)

    async def _openapi_json(self, request: Request) -> Response:
        return Response(200, self._openapi)


def _credentials_cache_s(settings: Settings, store: DatabaseStore) -> float:
    """How long credentials read for a request may serve the next ones. On PostgreSQL every
    change (`apps rotate-secret`, `apps delete`) is announced to every process, which then
    forgets what it cached. On SQLite the command that changes them is another process with
    no way to tell this one, and reading them is a local indexed read on the event loop, so
    they are read at every request: a secret replaced without a grace period, or a deleted
    application, is refused from the next request on."""
    return settings.credentials_cache_s if store.dialect != "sqlite" else 0.0
