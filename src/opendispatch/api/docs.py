"""`/docs`: interactive API documentation (Swagger UI) over `/openapi.json`.

Swagger UI's files come from a Python package (`openapi-ui-bundles`, Swagger UI 5, which
reads OpenAPI 3.1; the `swagger-ui-bundle` package still ships Swagger UI 4, which does not),
served by this server: no CDN, nothing fetched from another host, so the page works offline
and behind a firewall. The page's Content-Security-Policy holds the browser to that.

Every URL in the page is relative (`docs/swagger-ui.css`, `openapi.json`), and the document
names its server `./`: behind a proxy that serves OpenDispatch under a path prefix
(`https://example.com/dispatch/docs`), the page, its files, the document and "Try it out"
all stay under that prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from openapi_ui_bundles import swagger_ui

from opendispatch.api.http import Request, Response
from opendispatch.errors import NotFound

__all__ = ["DOCS_ASSETS", "DocsRoutes"]

_CSS: Final = b"text/css; charset=utf-8"
_JS: Final = b"text/javascript; charset=utf-8"

# The files the page loads (file name in the package -> content type); no other is served.
DOCS_ASSETS: Final = {
    "swagger-ui.css": _CSS,
    "swagger-ui-bundle.js": _JS,
    "favicon-32x32.png": b"image/png",
    "favicon-16x16.png": b"image/png",
}

# Ours, not the package's: which document to show, and no online validator badge (Swagger
# UI would otherwise send the document's URL to validator.swagger.io).
_INIT_JS: Final = b"""window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null
});
"""

_PAGE: Final = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>OpenDispatch API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

# Swagger UI styles its elements inline and draws icons from data: URIs; everything else,
# scripts included, only from this server.
_POLICY: Final = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
_HEADERS: Final = ((b"x-content-type-options", b"nosniff"),)


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: bytes


class DocsRoutes:
    """The page and its files, read from the package once, on first use."""

    def __init__(self) -> None:
        self._assets: dict[str, _Asset] | None = None

    async def page(self, request: Request) -> Response:
        return Response(
            200,
            _PAGE,
            [*_HEADERS, (b"content-security-policy", _POLICY), (b"cache-control", b"no-cache")],
            content_type=b"text/html; charset=utf-8",
        )

    async def page_with_slash(self, request: Request) -> Response:
        """`/docs/` would resolve the page's relative URLs one level too deep: go to `/docs`
        (relatively, so a path prefix is kept)."""
        return Response(308, b"", [(b"location", b"../docs")], content_type=b"text/plain")

    async def asset(self, request: Request) -> Response:
        asset = self._load().get(request.path_params["asset"])
        if asset is None:
            raise NotFound(f"No such resource: {request.path}")
        return Response(
            200,
            asset.body,
            [*_HEADERS, (b"cache-control", b"public, max-age=3600")],
            content_type=asset.content_type,
        )

    def _load(self) -> dict[str, _Asset]:
        if self._assets is None:
            folder = swagger_ui.static_path
            assets = {
                name: _Asset((folder / name).read_bytes(), content_type)
                for name, content_type in DOCS_ASSETS.items()
            }
            assets["init.js"] = _Asset(_INIT_JS, _JS)
            self._assets = assets
        return self._assets
