"""`/v0.1/dispatch` through the ASGI app on a real SQLite file: create, get, list, errors."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from opendispatch.api.app import DispatchApp
from opendispatch.auth.provisioning import provision_application
from opendispatch.config import Settings
from opendispatch.runtime.clock import ManualClock
from tests.conftest import Api
from tests.databases import TestDatabase
from tests.support import AppCredentials, two_step_workflow

pytestmark = pytest.mark.anyio

ERROR_KEYS = {"type", "title", "detail", "instance", "invalid_parameters"}


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert isinstance(body["instance"], str)
    assert body["instance"]
    assert response.headers["x-request-id"] == body["instance"]
    assert body["type"].startswith("https://")
    return dict(body)


async def stored_workflow_count(api: Api) -> int:
    count: int = await api.database.scalar("SELECT count(*) FROM workflows")
    return count


async def test_accepted_workflow_answers_202_with_its_uuid_and_is_stored_as_submitted(api: Api):
    body = two_step_workflow()
    body["workflow"][0]["message"]["client_ref"] = "kept as submitted"
    response = await api.client.post("/v0.1/dispatch", json=body, headers=api.alice.basic())
    assert response.status_code == 202
    dispatch_uuid = response.json()["dispatch_uuid"]
    assert response.headers["location"] == f"/v0.1/dispatch/{dispatch_uuid}"

    fetched = await api.client.get(f"/v0.1/dispatch/{dispatch_uuid}", headers=api.alice.basic())
    assert fetched.status_code == 200
    view = fetched.json()
    assert view["dispatch_uuid"] == dispatch_uuid
    assert view["template"] == "failover"
    assert view["status"] == "in_progress"  # the engine ran in the accept transaction
    assert view["workflow"] == body["workflow"]
    assert view["created_at"].endswith("Z")
    assert len(view["created_at"]) == 24
    assert view["_links"]["self"]["href"] == f"/workflows/{dispatch_uuid}"


async def test_trailing_slash_and_jwt_are_accepted_like_the_spec_url(api: Api):
    response = await api.client.post(
        "/v0.1/dispatch/", json=two_step_workflow(), headers=api.alice.bearer()
    )
    assert response.status_code == 202


async def test_workflow_href_from_webhooks_is_served(api: Api):
    created = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=api.alice.basic()
    )
    dispatch_uuid = created.json()["dispatch_uuid"]
    response = await api.client.get(f"/workflows/{dispatch_uuid}", headers=api.alice.bearer())
    assert response.status_code == 200
    assert response.json()["dispatch_uuid"] == dispatch_uuid


async def test_another_applications_workflow_is_not_found(api: Api):
    created = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=api.alice.basic()
    )
    dispatch_uuid = created.json()["dispatch_uuid"]
    for path in (f"/v0.1/dispatch/{dispatch_uuid}", f"/workflows/{dispatch_uuid}"):
        response = await api.client.get(path, headers=api.bob.basic())
        assert_error_shape(response, 404)
    listed = await api.client.get("/v0.1/dispatch", headers=api.bob.basic())
    assert listed.json()["_embedded"]["workflows"] == []


@pytest.mark.parametrize(
    "dispatch_uuid", ["01937a2c-5b0e-7d3a-9c1e-6f2b8a4d0e51", "not-a-uuid", "x" * 300]
)
async def test_unknown_workflow_is_404_in_vonage_shape(api: Api, dispatch_uuid: str):
    response = await api.client.get(f"/v0.1/dispatch/{dispatch_uuid}", headers=api.alice.basic())
    assert_error_shape(response, 404)


async def test_list_is_newest_first_and_paginated_by_cursor(api: Api):
    created = []
    for _ in range(5):
        response = await api.client.post(
            "/v0.1/dispatch", json=two_step_workflow(), headers=api.alice.basic()
        )
        created.append(response.json()["dispatch_uuid"])
    await api.client.post("/v0.1/dispatch", json=two_step_workflow(), headers=api.bob.basic())

    seen: list[str] = []
    url: str | None = "/v0.1/dispatch?page_size=2"
    pages = 0
    while url is not None:
        page = (await api.client.get(url, headers=api.alice.basic())).json()
        assert page["page_size"] == 2
        seen += [workflow["dispatch_uuid"] for workflow in page["_embedded"]["workflows"]]
        url = page["_links"].get("next", {}).get("href")
        pages += 1
    assert seen == sorted(created, reverse=True)
    assert pages == 3


@pytest.mark.parametrize(
    "query",
    [
        "page_size=0",
        "page_size=101",
        "page_size=x",
        "page_size=%C2%B2",  # superscript two: a digit to str.isdigit, not to int()
        "page_size=%D9%A3",  # Arabic-Indic three: int() reads it, the API must not
        "page_size=" + "9" * 5000,
        "cursor=abc",
    ],
)
async def test_bad_list_parameters_are_named(api: Api, query: str):
    response = await api.client.get(f"/v0.1/dispatch?{query}", headers=api.alice.basic())
    body = assert_error_shape(response, 400)
    assert body["invalid_parameters"][0]["name"] == query.split("=")[0]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("status=done", ["status"]),
        ("status=", ["status"]),
        ("status=error,", ["status"]),
        ("status=ERROR", ["status"]),
        ("channel=telegram", ["channel"]),
        ("channel=sms&channel=mms", ["channel"]),  # one channel: any or all would be a guess
        ("page_size=5&page_size=6", ["page_size"]),
        ("created_after=yesterday", ["created_after"]),
        ("created_before=2026-13-01", ["created_before"]),
        ("created_after=2026-02-01&created_before=2026-01-01", ["created_before"]),
        ("created_after=2026-01-01T00:00:00Z&created_before=2026-01-01", ["created_before"]),
        ("page_size=0&status=done&channel=fax", ["page_size", "status", "channel"]),
        ("state=error", ["state"]),  # the webhook list's filter, not this one's
        ("statuses=error&page=2", ["page", "statuses"]),
    ],
)
async def test_a_bad_or_unknown_list_parameter_is_400_naming_each_never_ignored(
    api: Api, query: str, names: list[str]
):
    await api.client.post("/v0.1/dispatch", json=two_step_workflow(), headers=api.alice.basic())
    response = await api.client.get(f"/v0.1/dispatch?{query}", headers=api.alice.basic())
    body = assert_error_shape(response, 400)
    assert [problem["name"] for problem in body["invalid_parameters"]] == names


async def test_invalid_workflow_names_every_field_and_stores_nothing(api: Api):
    body = two_step_workflow()
    del body["workflow"][0]["failover"]
    body["workflow"][1]["to"]["number"] = "+447700900001"
    response = await api.client.post("/v0.1/dispatch", json=body, headers=api.alice.basic())
    error = assert_error_shape(response, 400)
    names = [parameter["name"] for parameter in error["invalid_parameters"]]
    assert names == ["workflow[0].failover", "workflow[1].to.number"]
    assert error["type"] == "https://www.nexmo.com/messages/Errors#InvalidParams"
    assert await stored_workflow_count(api) == 0


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {"content-type": "application/json"}, 400),
        (b"", {"content-type": "application/json"}, 400),
        (b"template=failover", {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b"<workflow/>", {"content-type": "text/xml"}, 415),
        (b"[]", {"content-type": "application/json"}, 400),
    ],
)
async def test_unusable_bodies_are_refused_in_vonage_shape_and_store_nothing(
    api: Api, content: bytes, headers: dict[str, str], status: int
):
    response = await api.client.post(
        "/v0.1/dispatch", content=content, headers={**headers, **api.alice.basic()}
    )
    error = assert_error_shape(response, status)
    if status == 400:
        assert error["invalid_parameters"][0]["name"] == "body"
    assert await stored_workflow_count(api) == 0


async def test_json_with_charset_and_vendor_json_types_are_json(api: Api):
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = await api.client.post(
            "/v0.1/dispatch",
            content=json.dumps(two_step_workflow()),
            headers={"content-type": content_type, **api.alice.basic()},
        )
        assert response.status_code == 202, response.text


async def test_oversized_body_is_413_without_being_stored(api: Api):
    body = two_step_workflow()
    body["workflow"][0]["message"]["padding"] = "x" * (70 * 1024)
    response = await api.client.post("/v0.1/dispatch", json=body, headers=api.alice.basic())
    assert_error_shape(response, 413)
    assert await stored_workflow_count(api) == 0


async def test_authentication_is_checked_before_the_body(api: Api):
    for content, content_type in ((b"{broken", "application/json"), (b"x" * 100_000, "text/plain")):
        response = await api.client.post(
            "/v0.1/dispatch", content=content, headers={"content-type": content_type}
        )
        assert_error_shape(response, 401)
        assert "basic" in response.headers["www-authenticate"].lower()


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_are_405_with_allow_never_501(api: Api, method: str):
    response = await api.client.request(method, "/v0.1/dispatch", headers=api.alice.basic())
    assert_error_shape(response, 405)
    assert response.headers["allow"] == "GET, HEAD, POST"
    response = await api.client.request(method, "/health")
    assert_error_shape(response, 405)


async def test_unknown_path_is_404_in_vonage_shape(api: Api):
    assert_error_shape(await api.client.get("/v0.2/dispatch"), 404)
    assert_error_shape(await api.client.post("/messages", json={}), 404)


async def test_caller_request_id_is_echoed_as_instance(api: Api):
    response = await api.client.get("/nowhere", headers={"x-request-id": "trace-42"})
    assert assert_error_shape(response, 404)["instance"] == "trace-42"


async def test_health_and_head(api: Api):
    response = await api.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    head = await api.client.head("/health")
    assert head.status_code == 200
    assert head.content == b""


async def test_max_messages_is_configurable(database: TestDatabase):
    body = two_step_workflow()
    body["workflow"].insert(0, dict(body["workflow"][0]))
    small = DispatchApp(Settings(database=database.url, max_messages=2), run_workers=False)
    await small.startup()
    try:
        provisioned = await provision_application(
            small.store, name="s", status_url="http://127.0.0.1:9/s"
        )
        credentials = AppCredentials.from_provisioned(provisioned)
        transport = httpx.ASGITransport(app=small)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/v0.1/dispatch", json=body, headers=credentials.basic())
            error = assert_error_shape(response, 400)
            assert [p["name"] for p in error["invalid_parameters"]] == ["workflow"]
            response = await client.post(
                "/v0.1/dispatch", json=two_step_workflow(), headers=credentials.basic()
            )
            assert response.status_code == 202
    finally:
        await small.shutdown()


async def test_at_capacity_new_workflows_get_503_with_retry_after_and_nothing_is_stored(
    api: Api,
):
    admission = api.app.runtime.admission
    await admission.stop()  # its intervals are driven here
    for _ in range(200):
        admission.observe_queue_delay(10.0)  # sends have been waiting for seconds
        admission.update()
    response = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=api.alice.basic()
    )
    body = assert_error_shape(response, 503)
    assert response.headers["retry-after"] == "1"
    assert "capacity" in body["detail"]
    listing = await api.client.get("/v0.1/dispatch", headers=api.alice.basic())
    assert listing.status_code == 200  # reads go on
    assert listing.json()["_embedded"]["workflows"] == []
    for _ in range(200):
        admission.observe_queue_delay(0.0)
        admission.update()
    accepted = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=api.alice.basic()
    )
    assert accepted.status_code == 202


async def test_past_its_rate_limit_an_application_gets_429_with_retry_after_and_nothing_stored(
    database: TestDatabase,
):
    clock = ManualClock(start_ms=int(time.time() * 1000))
    settings = Settings(database=database.url, rate_limit=2)
    app = DispatchApp(settings, clock=clock, run_workers=False)
    await app.startup()
    try:
        alice, bob = [
            AppCredentials.from_provisioned(
                await provision_application(app.store, name=name, status_url="http://x.test/")
            )
            for name in ("alice", "bob")
        ]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def post(who: AppCredentials) -> httpx.Response:
                return await client.post(
                    "/v0.1/dispatch", json=two_step_workflow(), headers=who.basic()
                )

            assert [(await post(alice)).status_code for _ in range(2)] == [202, 202]
            refused = await post(alice)
            body = assert_error_shape(refused, 429)
            assert body["title"] == "Too Many Requests"
            assert "2 requests per second" in body["detail"]
            assert refused.headers["retry-after"] == "1"
            # Every route counts, and the budget is the application's, not the server's.
            listed = await client.get("/v0.1/dispatch", headers=alice.basic())
            assert listed.status_code == 429
            assert (await post(bob)).status_code == 202
            assert await database.scalar("SELECT count(*) FROM workflows") == 3
            await clock.advance(1000)
            assert (await post(alice)).status_code == 202
    finally:
        await app.shutdown()
