"""Hostile JSON bodies over HTTP: NaN, Infinity and deep nesting are a 400 in Vonage's shape
that stores nothing, and whatever is accepted (202) can be read back (GET), on both databases."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opendispatch.api.json_body import MAX_DEPTH
from tests.conftest import Api
from tests.integration.test_dispatch_routes import assert_error_shape, stored_workflow_count
from tests.support import two_step_workflow

pytestmark = pytest.mark.anyio


def _with_extra(value: str) -> bytes:
    """The README's workflow with `value` (raw JSON text) as an extra field of message 0."""
    body = json.dumps(two_step_workflow())
    marker = '"failover": {'
    return body.replace(marker, f'"extra": {value}, {marker}', 1).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


NOT_FINITE = [
    (_with_extra("NaN"), "workflow[0].extra"),
    (_with_extra('{"a": [1, Infinity]}'), "workflow[0].extra.a[1]"),
    (_with_extra("-Infinity"), "workflow[0].extra"),
    (_with_extra("1e400"), "workflow[0].extra"),  # read as infinity by pydantic
    (json.dumps(two_step_workflow()).replace("600", "NaN").encode(), "workflow[0].failover"),
    (b"NaN", "body"),
]


@pytest.mark.parametrize(("body", "name"), NOT_FINITE)
async def test_nan_and_infinity_anywhere_are_400_naming_the_field(api: Api, body: bytes, name: str):
    response = await api.client.post(
        "/v0.1/dispatch",
        content=body,
        headers={"content-type": "application/json", **api.alice.basic()},
    )
    error = assert_error_shape(response, 400)
    parameter = error["invalid_parameters"][0]
    assert parameter["name"].startswith(name)
    assert "finite" in parameter["reason"]
    assert await stored_workflow_count(api) == 0


TOO_DEEP = [
    ("1,000 levels (10 KB)", b"[" * 5000 + b"]" * 5000),
    ("1,000 levels, unclosed", b"[" * 1000),
    ("an extra field 256 levels deep", _with_extra(_nested(256))),
    ("an extra field 900 levels deep", _with_extra(_nested(900))),
    ("one level past the limit", _with_extra(_nested(MAX_DEPTH - 2))),
]


@pytest.mark.parametrize(("case", "body"), TOO_DEEP, ids=[case for case, _ in TOO_DEEP])
async def test_bodies_nested_past_the_limit_are_400_and_store_nothing(
    api: Api, case: str, body: bytes
):
    response = await api.client.post(
        "/v0.1/dispatch",
        content=body,
        headers={"content-type": "application/json", **api.alice.basic()},
    )
    error = assert_error_shape(response, 400)
    assert error["invalid_parameters"][0]["name"] == "body"
    assert f"more than {MAX_DEPTH} levels" in error["invalid_parameters"][0]["reason"]
    assert await stored_workflow_count(api) == 0


async def test_a_body_at_the_nesting_limit_is_accepted_and_reads_back(api: Api):
    body = _with_extra('{"s": "[[[[{{{{\\"[", "deep": ' + _nested(MAX_DEPTH - 4) + "}")
    response = await api.client.post("/v0.1/dispatch", content=body, headers={**api.alice.basic()})
    assert response.status_code == 202, response.text
    fetched = await api.client.get(response.headers["location"], headers=api.alice.basic())
    assert fetched.status_code == 200
    assert fetched.json()["workflow"] == json.loads(body)["workflow"]


async def test_other_json_bodies_get_the_same_limits(api: Api):
    for path in ("/v0.1/webhooks/replay",):
        for body in (b'{"state": NaN}', b"[" * 1000):
            response = await api.client.post(
                path,
                content=body,
                headers={"content-type": "application/json", **api.alice.basic()},
            )
            assert_error_shape(response, 400)


# -- what is accepted can be read back ---------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8)  # surrogates too
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def _extras(draw: st.DrawFn) -> str:
    """Raw JSON text for an extra field: any value, sometimes buried near the depth limit."""
    value = json.dumps(draw(_VALUES), allow_nan=True)
    depth = draw(st.sampled_from([0, 0, MAX_DEPTH - 6, MAX_DEPTH - 4, MAX_DEPTH - 3, 300]))
    return "[" * depth + value + "]" * depth


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(extra=_extras())
async def test_every_accepted_body_reads_back_through_get(api: Api, extra: str):
    body = _with_extra(extra)
    response = await api.client.post(
        "/v0.1/dispatch",
        content=body,
        headers={"content-type": "application/json", **api.alice.basic()},
    )
    if response.status_code != 202:
        assert_error_shape(response, 400)
        return
    fetched = await api.client.get(response.headers["location"], headers=api.alice.basic())
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["workflow"] == json.loads(body)["workflow"]
