"""The 202 of `POST /v0.1/dispatch` warns about a condition that can never be met, and is
byte for byte what it always was otherwise."""

from __future__ import annotations

import pytest

from tests.conftest import Api
from tests.support import step, two_step_workflow

pytestmark = pytest.mark.anyio


async def test_read_condition_on_sms_is_accepted_with_a_warning_in_the_202(api: Api):
    body = {
        "template": "failover",
        "workflow": [
            step("sms", "447700900004", {"expiry_time": 600, "condition_status": "read"}),
            step("whatsapp", "447700900004"),
        ],
    }

    response = await api.client.post("/v0.1/dispatch", json=body, headers=api.alice.basic())

    assert response.status_code == 202, response.text
    answer = response.json()
    assert set(answer) == {"dispatch_uuid", "warnings"}
    assert answer["warnings"] == [
        {
            "name": "workflow[0].failover.condition_status",
            "reason": "sms never reports read, so this condition can never be met: this "
            "message always fails over to the next once its expiry_time passes",
        }
    ]
    assert response.headers["location"] == f"/v0.1/dispatch/{answer['dispatch_uuid']}"
    stored = await api.client.get(response.headers["location"], headers=api.alice.basic())
    assert stored.json()["workflow"] == body["workflow"]  # accepted as submitted


async def test_without_warnings_the_202_body_is_unchanged(api: Api):
    response = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=api.alice.basic()
    )

    assert response.status_code == 202
    uuid = response.json()["dispatch_uuid"]
    assert response.content == b'{"dispatch_uuid":"' + uuid.encode() + b'"}'


async def test_warnings_are_described_in_the_openapi_document(api: Api):
    document = (await api.client.get("/openapi.json")).json()

    accepted = document["components"]["schemas"]["DispatchAccepted"]
    assert accepted["required"] == ["dispatch_uuid"]
    assert accepted["properties"]["warnings"]["items"] == {
        "$ref": "#/components/schemas/InvalidParameterBody"
    }
