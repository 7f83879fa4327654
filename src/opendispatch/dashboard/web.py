"""What every dashboard page shares: the URL prefix, templates, cookies, forms, and the headers
that keep a page of operators' data to itself.

**Behind a proxy at a sub-path.** With `--public-url https://example.com/od`, a proxy passes
`https://example.com/od/dashboard/...` on as `/dashboard/...`: the server routes the path it
receives, and writes every link, form action, asset URL, redirect and cookie path with the
prefix (`/od`), so the browser only ever sees the public address. Cookies are `Secure` when
the public URL is https or, without one, when the server serves https itself (`--tls-cert`):
the address the browser uses is the public URL's when there is one.

**Templates** are Jinja2's, autoescaping everything; pages are self-contained: the styles and
the one script come from this package (`static/`), and the Content-Security-Policy allows no
other source, no inline script and no framing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2

from opendispatch.api.http import Request, Response
from opendispatch.timefmt import iso_ms

if TYPE_CHECKING:
    from opendispatch.runtime.clock import Clock
    from opendispatch.runtime.service import Runtime
    from opendispatch.store.browse import Browse
    from opendispatch.store.database import DatabaseStore

__all__ = [
    "FORM_LIMIT_BYTES",
    "Cookie",
    "DashboardError",
    "Pages",
    "query",
    "read_cookie",
    "read_form",
    "uuid7_ms",
]

FORM_LIMIT_BYTES = 16 * 1024
_HTML = b"text/html; charset=utf-8"
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
_STATIC_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}


class DashboardError(Exception):
    """A page that cannot be shown, as the operator will read it."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Cookie:
    name: str
    value: str
    max_age_s: int  # 0: delete it
    path: str = ""  # under the dashboard's own path


def read_cookie(request: Request, name: str) -> str | None:
    """A cookie's value (the last one of that name, as browsers send the most specific last
    only by accident: a dashboard sets each name on one path)."""
    found = None
    for header in request.header_values(b"cookie"):
        for pair in header.decode("latin-1").split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name:
                found = value
    return found


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (what the dashboard's forms post), each
    field's last value."""
    body = await request.body(FORM_LIMIT_BYTES)
    if not body:
        return {}
    content_type = (request.header(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/x-www-form-urlencoded":
        raise DashboardError(415, "Unsupported form", "The form was not posted as a form.")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def query(request: Request, name: str) -> str | None:
    """A query parameter's last value. Pages read their query leniently (a bookmark with an
    extra parameter still opens); what each value must be, each page checks."""
    values = parse_qs(request.scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[-1] if values else None


def uuid7_ms(dispatch_uuid: str) -> int | None:
    """When a UUIDv7 was made (its first 48 bits); None for anything else."""
    digits = dispatch_uuid[:8] + dispatch_uuid[9:13]
    try:
        return int(digits, 16) if len(digits) == 12 else None
    except ValueError:
        return None


def _time(unix_ms: int | None) -> str:
    """`2026-11-30 18:13:57.969`: UTC, as every time in the dashboard (the page says so)."""
    if unix_ms is None:
        return ""
    return iso_ms(unix_ms).replace("T", " ").removesuffix("Z")


class Pages:
    """Renders pages and builds responses for one public URL."""

    def __init__(self, public_url: str | None, *, served_over_tls: bool = False) -> None:
        parts = urlsplit(public_url) if public_url else None
        self.prefix = parts.path.rstrip("/") if parts else ""
        self.secure_cookies = parts.scheme == "https" if parts else served_over_tls
        self.root = f"{self.prefix}/dashboard"
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("opendispatch.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.globals.update(url=self.url, static=self.static)
        self._templates.filters.update(time=_time)
        self._static = {
            entry.name: entry.read_bytes()
            for entry in resources.files("opendispatch.dashboard").joinpath("static").iterdir()
            if entry.name.endswith(tuple(_STATIC_TYPES))
        }

    def url(self, path: str = "", **query: Any) -> str:
        """The public path of a dashboard page, `path` relative to `/dashboard`, with the
        query's non-empty values."""
        kept = {name: value for name, value in query.items() if value not in (None, "")}
        return self.root + path + (f"?{urlencode(kept)}" if kept else "")

    def static(self, name: str) -> str:
        return f"{self.root}/static/{name}"

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        # Every page has these, if only as None (an unknown name is an error: StrictUndefined).
        context = {"session": None, "section": None} | context
        body = self._templates.get_template(template).render(**context).encode()
        return Response(status, body, list(_SECURITY_HEADERS), content_type=_HTML)

    def error(self, error: DashboardError, **context: Any) -> Response:
        return self.page(
            "error.html", error.status, title=error.title, detail=error.detail, **context
        )

    def redirect(self, location: str, *cookies: Cookie) -> Response:
        """303: the browser follows it with a GET (after a form, a reload posts nothing)."""
        headers = [(b"location", location.encode()), *_SECURITY_HEADERS]
        headers += [(b"set-cookie", self._set_cookie(cookie)) for cookie in cookies]
        return Response(303, b"", headers, content_type=_HTML)

    def with_cookies(self, response: Response, *cookies: Cookie) -> Response:
        response.headers += [(b"set-cookie", self._set_cookie(cookie)) for cookie in cookies]
        return response

    def static_file(self, name: str) -> Response:
        body = self._static.get(name)
        if body is None:
            raise DashboardError(404, "Not found", f"No such file: {name}")
        content_type = _STATIC_TYPES[name[name.rindex(".") :]]
        headers = [(b"cache-control", b"max-age=3600"), (b"x-content-type-options", b"nosniff")]
        return Response(200, body, headers, content_type=content_type)

    def _set_cookie(self, cookie: Cookie) -> bytes:
        parts = [
            f"{cookie.name}={cookie.value}",
            f"Path={self.root}{cookie.path}",
            f"Max-Age={cookie.max_age_s}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure_cookies:
            parts.append("Secure")
        return "; ".join(parts).encode()


class PageGroup:
    """What every group of pages works with: rendering, the cross-application reads, the
    store and the runtime (for what operators change), and the clock."""

    def __init__(
        self,
        pages: Pages,
        browse: Browse,
        store: DatabaseStore,
        runtime: Runtime,
        clock: Clock,
    ) -> None:
        self._pages = pages
        self._browse = browse
        self._store = store
        self._runtime = runtime
        self._clock = clock
