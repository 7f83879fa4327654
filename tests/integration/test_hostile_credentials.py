"""Hostile credentials over HTTP: what once reached the database and answered 500 (bytes that
are not ASCII, NUL, lone surrogates), dates that never expire, and two `Authorization`
headers are each a 401 in Vonage's shape that stores nothing, on both databases."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import Api
from tests.integration.test_dispatch_routes import assert_error_shape, stored_workflow_count
from tests.support import AppCredentials, two_step_workflow

pytestmark = pytest.mark.anyio

Headers = list[tuple[str, str | bytes]]


def _basic(api_key: str, api_secret: str) -> Headers:
    raw = f"{api_key}:{api_secret}".encode()
    return [("Authorization", "Basic " + base64.b64encode(raw).decode())]


def _bearer(credentials: AppCredentials, **claims: Any) -> Headers:
    return list(credentials.bearer(**claims).items())


HOSTILE: list[tuple[str, Any]] = [
    ("basic, not ascii", lambda c: [("Authorization", b"Basic \xff\xfe")]),
    ("basic, NUL in the api key", lambda c: _basic(c.api_key + "\x00", c.api_secret)),
    ("basic, NUL alone as the api key", lambda c: _basic("\x00", c.api_secret)),
    ("jwt, lone surrogate application_id", lambda c: _bearer(c, application_id="\ud800")),
    ("jwt, NUL in the application_id", lambda c: _bearer(c, application_id="a\x00b")),
    ("jwt, NUL in the jti", lambda c: _bearer(c, jti="a\x00b")),
    ("jwt, lone surrogate jti", lambda c: _bearer(c, jti="\udfff")),
    ("jwt, exp Infinity", lambda c: _bearer(c, exp=float("inf"))),
    ("jwt, exp NaN", lambda c: _bearer(c, exp=float("nan"))),
    ("jwt, iat NaN without exp", lambda c: _bearer(c, iat=float("nan"), exp=None)),
    ("jwt, iat -Infinity", lambda c: _bearer(c, iat=float("-inf"))),
    ("jwt, nbf NaN", lambda c: _bearer(c, nbf=float("nan"))),
    ("two Authorization headers", lambda c: _basic(c.api_key, "wrong") + _basic_of(c)),
]


def _basic_of(credentials: AppCredentials) -> Headers:
    return list(credentials.basic().items())


@pytest.mark.parametrize(("case", "headers"), HOSTILE, ids=[case for case, _ in HOSTILE])
async def test_hostile_credentials_are_401_in_vonage_shape_and_store_nothing(
    api: Api, case: str, headers: Any
):
    for method in ("POST", "GET"):
        response = await api.client.request(
            method, "/v0.1/dispatch", json=two_step_workflow(), headers=headers(api.alice)
        )
        assert_error_shape(response, 401)
        assert "basic" in response.headers["www-authenticate"].lower()
    assert await stored_workflow_count(api) == 0


async def test_two_authorization_headers_are_refused_not_the_last_one_picked(api: Api):
    # The last header is alice's valid one: picking it would answer 200.
    response = await api.client.get(
        "/v0.1/dispatch", headers=_basic("x", "y") + _basic_of(api.alice)
    )
    error = assert_error_shape(response, 401)
    assert "one Authorization header" in error["detail"]
