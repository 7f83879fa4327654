"""The dashboard's routes under `/dashboard`, and who may use them.

Every page but the login needs an operator's session: without one, a GET goes to the login
page (and back where it was once signed in), a POST changes nothing and does the same. Every
POST carries the session's CSRF token in a hidden field, checked in constant time: a form
posted from another site, or without the token, is refused (403) before anything changes.
The login form has its own token, paired with a short-lived cookie (a site cannot sign a
browser in as someone else). Signing in, signing out, cancelling and replaying are logged with
the operator's name (never a token).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from opendispatch.api.http import Request, Response, Route
from opendispatch.auth.operators import (
    SESSION_LIFETIME_MS,
    OperatorAuth,
    Session,
    csrf_token_matches,
    new_secret,
)
from opendispatch.config import Settings
from opendispatch.dashboard.overview import OverviewPage
from opendispatch.dashboard.web import (
    Cookie,
    DashboardError,
    Pages,
    query,
    read_cookie,
    read_form,
)
from opendispatch.dashboard.webhook_pages import WebhookPages
from opendispatch.dashboard.workflow_pages import WorkflowPages
from opendispatch.errors import DatabaseUnavailable, StoreError
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.service import Runtime
from opendispatch.store.browse import Browse
from opendispatch.store.database import DatabaseStore
from opendispatch.store.operators import OperatorStore

__all__ = ["Dashboard"]

log = logging.getLogger("opendispatch.dashboard")

SESSION_COOKIE = "od_session"
LOGIN_COOKIE = "od_login"
_LOGIN_FORM_S = 3600  # how long a login form stays good
_SESSION_COOKIE_S = SESSION_LIFETIME_MS // 1000  # the browser drops it when the server does

PageHandler = Callable[[Request, Session], Awaitable[Response]]
ActionHandler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]
Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    def __init__(
        self, *, settings: Settings, store: DatabaseStore, runtime: Runtime, clock: Clock
    ) -> None:
        self.pages = Pages(settings.public_url, served_over_tls=settings.tls_cert is not None)
        self._clock = clock
        self._auth = OperatorAuth(OperatorStore(store.connector))
        browse = Browse(store.connector)
        self._overview = OverviewPage(self.pages, browse, clock)
        self._workflows = WorkflowPages(self.pages, browse, store, runtime, clock)
        self._webhooks = WebhookPages(self.pages, browse, store, runtime, clock)

    def routes(self) -> list[Route]:
        page, action = self._page, self._action
        return [
            Route("/dashboard", {"GET": page(self._overview.show)}),
            Route("/dashboard/", {"GET": page(self._overview.show)}),
            Route("/dashboard/login", {"GET": self._login_form, "POST": self._login}),
            Route("/dashboard/logout", {"POST": action(self._logout)}),
            Route("/dashboard/workflows", {"GET": page(self._workflows.list)}),
            Route("/dashboard/workflows/{dispatch_uuid}", {"GET": page(self._workflows.timeline)}),
            Route(
                "/dashboard/workflows/{dispatch_uuid}/cancel",
                {"POST": action(self._workflows.cancel)},
            ),
            Route("/dashboard/webhooks", {"GET": page(self._webhooks.list)}),
            Route("/dashboard/webhooks/replay", {"POST": action(self._webhooks.replay_many)}),
            Route(
                "/dashboard/webhooks/{webhook_id}/replay",
                {"POST": action(self._webhooks.replay_one)},
            ),
            Route("/dashboard/static/{name}", {"GET": self._static}),
        ]

    # -- who is asking -------------------------------------------------------------------------

    def _page(self, handler: PageHandler) -> Handler:
        """A GET for a signed-in operator; anyone else is sent to sign in first."""

        async def guarded(request: Request) -> Response:
            async def shown(session: Session) -> Response:
                return await handler(request, session)

            return await self._signed_in(request, shown, change=False)

        return guarded

    def _action(self, handler: ActionHandler) -> Handler:
        """A POST by a signed-in operator, with the session's CSRF token."""

        async def guarded(request: Request) -> Response:
            async def done(session: Session) -> Response:
                form = await read_form(request)
                if not csrf_token_matches(session.session_id, form.get("csrf")):
                    log.warning(
                        "operator %s: %s %s refused, its CSRF token is missing or wrong",
                        session.operator,
                        request.method,
                        request.path,
                    )
                    raise DashboardError(
                        403,
                        "Forbidden",
                        "This form did not come from this dashboard page (its security token "
                        "is missing or wrong); nothing was changed. Reload the page and try "
                        "again.",
                    )
                return await handler(request, session, form)

            return await self._signed_in(request, done, change=True)

        return guarded

    async def _signed_in(
        self,
        request: Request,
        respond: Callable[[Session], Awaitable[Response]],
        *,
        change: bool,
    ) -> Response:
        session: Session | None = None
        try:
            session = await self._auth.session(
                read_cookie(request, SESSION_COOKIE), now_ms=self._clock.now_ms()
            )
            if session is None:
                back = None if change else _path_and_query(request)
                return self.pages.redirect(self.pages.url("/login", next=back))
            return await respond(session)
        except DashboardError as error:
            return self.pages.error(error, session=session)
        except DatabaseUnavailable as exc:
            return self.pages.error(
                DashboardError(503, "Database unavailable", str(exc)), session=session
            )
        except StoreError as exc:
            log.warning("dashboard: %s %s: %s", request.method, request.path, exc)
            return self.pages.error(
                DashboardError(503, "Database busy", "The database is busy; try again."),
                session=session,
            )

    # -- signing in and out ------------------------------------------------------------------------

    async def _login_form(self, request: Request) -> Response:
        return self._login_page(_safe_next(query(request, "next")), failed=False)

    def _login_page(self, next_page: str | None, *, failed: bool) -> Response:
        token = new_secret()
        response = self.pages.page(
            "login.html",
            401 if failed else 200,
            session=None,
            login_token=token,
            failed=failed,
            next=next_page,
        )
        return self.pages.with_cookies(
            response, Cookie(LOGIN_COOKIE, token, _LOGIN_FORM_S, path="/login")
        )

    async def _login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except DashboardError as error:
            return self.pages.error(error, session=None)
        expected = read_cookie(request, LOGIN_COOKIE)
        given = form.get("login_token", "")
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            return self.pages.error(
                DashboardError(
                    403,
                    "Forbidden",
                    "This sign-in form did not come from this dashboard, or it is more than "
                    "an hour old. Open the sign-in page again.",
                ),
                session=None,
            )
        name = form.get("operator", "").strip()
        session = await self._auth.login(
            name, form.get("token", "").strip(), now_ms=self._clock.now_ms()
        )
        if session is None:
            log.warning("dashboard sign-in refused for operator name %r", name[:64])
            return self._login_page(_safe_next(form.get("next")), failed=True)
        log.info("operator %s signed in", session.operator)
        target = _safe_next(form.get("next")) or ""
        return self.pages.redirect(
            self.pages.url(target),
            Cookie(SESSION_COOKIE, session.session_id, _SESSION_COOKIE_S),
            Cookie(LOGIN_COOKIE, "", 0, path="/login"),
        )

    async def _logout(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        await self._auth.logout(session)
        log.info("operator %s signed out", session.operator)
        return self.pages.redirect(self.pages.url("/login"), Cookie(SESSION_COOKIE, "", 0))

    async def _static(self, request: Request) -> Response:
        try:
            return self.pages.static_file(request.path_params["name"])
        except DashboardError as error:
            return self.pages.error(error, session=None)


def _path_and_query(request: Request) -> str:
    """Where a signed-out operator was going, relative to `/dashboard`."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return request.path.removeprefix("/dashboard") + (f"?{query}" if query else "")


def _safe_next(given: str | None) -> str | None:
    """A page of this dashboard to go back to after signing in: a path relative to
    `/dashboard`, never a URL of another site."""
    if not given or not given.startswith(("/", "?")) or given.startswith("//"):
        return None
    if "\\" in given or any(ord(c) < 0x20 for c in given):
        return None
    return given
