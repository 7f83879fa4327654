"""`/openapi.json` documents every route the server serves, and `/docs` shows it from this
server alone: its page, files and document load from here, by relative URLs that keep a
proxy's path prefix."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from opendispatch.api.request_models import Channel
from opendispatch.engine.model import WorkflowStatus
from tests.conftest import Api

pytestmark = pytest.mark.anyio

METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
# What a page can point a browser at: src, href, and url(...) in inline styles.
REFERENCE = re.compile(rb"""(?:src|href)\s*=\s*["']([^"']*)["']|url\(\s*["']?([^"')]*)""")


async def document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def documented_path(template: str) -> str:
    """A route's path as the document writes it: `/v0.1/dispatch/` is `/v0.1/dispatch`."""
    return template.rstrip("/") or "/"


# The operators' HTML pages (README "Dashboard"): for browsers signed in with an operator's
# session, not part of the API the document describes.
NOT_API = ("/dashboard",)


async def test_every_route_the_server_serves_is_in_the_openapi_document(api: Api):
    paths = (await document(api))["paths"]
    missing = [
        f"{method} {route.template}"
        for route in api.app.routes
        for method in route.methods
        if method.lower() not in paths.get(documented_path(route.template), {})
        and not route.template.startswith(NOT_API)
    ]
    assert missing == []
    assert any(route.template.startswith(NOT_API) for route in api.app.routes)  # still served


async def test_every_documented_operation_is_served(api: Api):
    served = {
        (documented_path(route.template), method.lower())
        for route in api.app.routes
        for method in route.methods
    }
    paths = (await document(api))["paths"]
    documented = {(path, method) for path, item in paths.items() for method in item}
    assert documented <= served
    assert all(set(item) <= METHODS for item in paths.values())


async def test_the_list_filters_and_the_message_and_sandbox_routes_are_documented(api: Api):
    doc = await document(api)
    listing = doc["paths"]["/v0.1/dispatch"]["get"]
    parameters = {parameter["name"]: parameter for parameter in listing["parameters"]}
    assert set(parameters) == {
        "page_size",
        "cursor",
        "status",
        "channel",
        "created_after",
        "created_before",
    }
    assert parameters["status"]["schema"]["items"]["enum"] == [s.value for s in WorkflowStatus]
    assert parameters["channel"]["schema"]["enum"] == [c.value for c in Channel]
    message = doc["paths"]["/workflows/{dispatch_uuid}/messages/{message_uuid}"]["get"]
    assert message["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MessageView"
    }
    inject = doc["paths"]["/v0.1/sandbox/messages/{message_uuid}/status"]["post"]
    schema = inject["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    injected = doc["components"]["schemas"][schema.rsplit("/", 1)[1]]
    assert {"status", "timestamp", "error", "usage"} <= set(injected["properties"])
    assert "before the message was submitted" in inject["description"]
    for ref in re.findall(r'"\$ref": ?"#/components/schemas/(\w+)"', str(doc).replace("'", '"')):
        assert ref in doc["components"]["schemas"]


async def test_docs_page_and_its_files_load_from_this_server_only(api: Api):
    page = await api.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    # The browser is held to this server: no script, style, image or request elsewhere.
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert not re.search(r"https?:|//|\*", policy)
    assert not re.search(rb"https?:|//", page.content)  # no URL to any host

    references = [a or b for a, b in REFERENCE.findall(page.content)]
    assert references  # a stylesheet, scripts, icons
    loaded: dict[str, httpx.Response] = {}
    for reference in references:
        text = reference.decode()
        assert not text.startswith("/"), f"{text} would leave a path prefix behind"
        url = urljoin("http://testserver/docs", text)
        response = await api.client.get(url)
        assert response.status_code == 200, url
        loaded[text] = response
    types = {text: response.headers["content-type"] for text, response in loaded.items()}
    assert types["docs/swagger-ui.css"] == "text/css; charset=utf-8"
    assert types["docs/swagger-ui-bundle.js"] == "text/javascript; charset=utf-8"
    assert b"SwaggerUIBundle" in loaded["docs/swagger-ui-bundle.js"].content
    assert len(loaded["docs/swagger-ui-bundle.js"].content) > 500_000  # the real thing

    # Ours: this server's document, by a relative URL, and no online validator.
    init = loaded["docs/init.js"].content
    assert b'url: "openapi.json"' in init
    assert b"validatorUrl: null" in init
    assert not re.search(rb"https?:|//", init)
    spec = await api.client.get(urljoin("http://testserver/docs", "openapi.json"))
    assert spec.json()["openapi"].startswith("3.1")
    assert spec.json()["servers"] == [{"url": "./", "description": "This server"}]


async def test_docs_keep_a_proxys_path_prefix(api: Api):
    """Behind a proxy serving OpenDispatch at /dispatch/ (and stripping it), every URL the
    page uses resolves under /dispatch/, and `/docs/` goes back to the page there."""
    page = (await api.client.get("/docs")).content
    references = [(a or b).decode() for a, b in REFERENCE.findall(page)] + ["openapi.json"]
    for reference in references:
        public = urlsplit(urljoin("https://example.com/dispatch/docs", reference)).path
        assert public.startswith("/dispatch/"), reference
        response = await api.client.get(public.removeprefix("/dispatch"))
        assert response.status_code == 200, public
    document = (await api.client.get("/openapi.json")).json()
    server = urljoin("https://example.com/dispatch/openapi.json", document["servers"][0]["url"])
    assert server == "https://example.com/dispatch/"

    slash = await api.client.get("/docs/")
    assert slash.status_code == 308
    assert urljoin("https://example.com/dispatch/docs/", slash.headers["location"]) == (
        "https://example.com/dispatch/docs"
    )


@pytest.mark.parametrize("asset", ["index.html", "swagger-ui-standalone-preset.js", "..%2Fx"])
async def test_only_the_files_the_page_loads_are_served(api: Api, asset: str):
    response = await api.client.get(f"/docs/{asset}")
    assert response.status_code == 404


async def test_the_messages_v1_route_documents_its_request_and_its_problem_answers(api: Api):
    document = (await api.client.get("/openapi.json")).json()

    send = document["paths"]["/v1/messages"]["post"]
    schema = send["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/SendMessageRequest"}
    # v1 answers its errors as application/problem+json (RFC 7807), as the server sends them.
    assert set(send["responses"]["422"]["content"]) == {"application/problem+json"}
    assert "workflow_id" in document["components"]["schemas"]["MessageAccepted"]["properties"]
