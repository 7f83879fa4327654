"""Who may call: HTTP Basic and RS256 JWTs as Vonage's SDKs make them; everything else is 401."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from opendispatch.auth.authenticator import Authenticator
from opendispatch.auth.secrets import hash_secret, verify_secret
from opendispatch.errors import Unauthorized
from tests.conftest import Api
from tests.support import AppCredentials, two_step_workflow

pytestmark = pytest.mark.anyio

Headers = Callable[[AppCredentials], dict[str, str]]


def _basic(key: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def _other_rsa_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _signed(credentials: AppCredentials, payload: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    key = kwargs.pop("key", credentials.private_key)
    algorithm = kwargs.pop("algorithm", "RS256")
    return {"Authorization": "Bearer " + jwt.encode(payload, key, algorithm=algorithm)}


def _claims(credentials: AppCredentials, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"application_id": credentials.application_id, "iat": now, "jti": str(uuid.uuid4())}
    claims |= {"exp": now + 900}
    for name, value in changes.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


ACCEPTED: list[tuple[str, Headers]] = [
    ("basic", lambda c: c.basic()),
    (
        "basic scheme in any case",
        lambda c: {"Authorization": "basic" + c.basic()["Authorization"][5:]},
    ),
    ("jwt with exp", lambda c: c.bearer()),
    (
        "jwt without exp, issued an hour ago",
        lambda c: c.bearer(exp=None, iat=int(time.time()) - 3600),
    ),
    ("jwt with extra claims (acl, sub)", lambda c: c.bearer(acl={"paths": {}}, sub="someone")),
    ("jwt issued 10 s in the future (clock skew)", lambda c: c.bearer(iat=int(time.time()) + 10)),
]

REFUSED: list[tuple[str, Headers]] = [
    ("no header", lambda c: {}),
    ("empty header", lambda c: {"Authorization": ""}),
    ("unknown scheme", lambda c: {"Authorization": "Digest abc"}),
    ("basic, wrong secret", lambda c: _basic(c.api_key, c.api_secret + "x")),
    ("basic, unknown api key", lambda c: _basic("0000000000000000", c.api_secret)),
    ("basic, no colon", lambda c: {"Authorization": "Basic " + base64.b64encode(b"k").decode()}),
    ("basic, not base64", lambda c: {"Authorization": "Basic %%%"}),
    ("basic, empty secret", lambda c: _basic(c.api_key, "")),
    ("jwt signed with another key", lambda c: _signed(c, _claims(c), key=_other_rsa_key())),
    ("jwt expired", lambda c: c.bearer(exp=int(time.time()) - 120)),
    (
        "jwt without exp older than 24 h",
        lambda c: c.bearer(exp=None, iat=int(time.time()) - 86_400 - 120),
    ),
    ("jwt issued an hour in the future", lambda c: c.bearer(iat=int(time.time()) + 3600)),
    ("jwt not before in the future", lambda c: c.bearer(nbf=int(time.time()) + 3600)),
    ("jwt unknown application", lambda c: c.bearer(application_id=str(uuid.uuid4()))),
    ("jwt without application_id", lambda c: c.bearer(application_id=None)),
    ("jwt without iat", lambda c: c.bearer(iat=None)),
    ("jwt without jti", lambda c: c.bearer(jti=None)),
    ("jwt with a string iat", lambda c: c.bearer(iat="yesterday")),
    (
        "jwt signed HS256 with the api secret",
        lambda c: _signed(c, _claims(c), key=c.api_secret * 2, algorithm="HS256"),
    ),
    (
        "jwt alg none",
        lambda c: {"Authorization": "Bearer " + jwt.encode(_claims(c), None, algorithm="none")},
    ),
    ("jwt garbage", lambda c: {"Authorization": "Bearer not.a.jwt"}),
    (
        "jwt ES256",
        lambda c: _signed(
            c, _claims(c), key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"
        ),
    ),
    (
        "both schemes glued",
        lambda c: {"Authorization": c.basic()["Authorization"] + " " + c.bearer()["Authorization"]},
    ),
]


@pytest.mark.parametrize(("case", "headers"), ACCEPTED, ids=[case for case, _ in ACCEPTED])
async def test_accepted_credentials(api: Api, case: str, headers: Headers):
    response = await api.client.post(
        "/v0.1/dispatch", json=two_step_workflow(), headers=headers(api.alice)
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(("case", "headers"), REFUSED, ids=[case for case, _ in REFUSED])
async def test_refused_credentials_get_401_and_store_nothing(api: Api, case: str, headers: Headers):
    for method, path in (("POST", "/v0.1/dispatch"), ("GET", "/v0.1/dispatch")):
        response = await api.client.request(
            method, path, json=two_step_workflow(), headers=headers(api.alice)
        )
        assert response.status_code == 401, (case, response.text)
        body = response.json()
        assert body["title"] == "Unauthorized"
        assert body["instance"]
    listed = await api.client.get("/v0.1/dispatch", headers=api.alice.basic())
    assert listed.json()["_embedded"]["workflows"] == []


async def test_one_applications_jwt_cannot_pose_as_another(api: Api):
    forged = _signed(api.alice, _claims(api.alice, application_id=api.bob.application_id))
    response = await api.client.get("/v0.1/dispatch", headers=forged)
    assert response.status_code == 401


async def test_401_never_says_whether_the_api_key_exists(api: Api):
    unknown = await api.client.get("/v0.1/dispatch", headers=_basic("0" * 16, "x"))
    wrong = await api.client.get("/v0.1/dispatch", headers=_basic(api.alice.api_key, "x"))
    assert unknown.json()["detail"] == wrong.json()["detail"]


async def test_new_application_works_at_once_despite_the_credentials_cache(api: Api):
    from opendispatch.auth.provisioning import provision_application

    # Warm the cache with a miss for a key that does not exist yet, then create it.
    await api.client.get("/v0.1/dispatch", headers=_basic("f" * 16, "x"))
    carol = await provision_application(api.app.store, name="carol", status_url="http://x.test/")
    credentials = AppCredentials.from_provisioned(carol)
    assert (await api.client.get("/v0.1/dispatch", headers=credentials.basic())).status_code == 200
    assert (await api.client.get("/v0.1/dispatch", headers=credentials.bearer())).status_code == 200


async def test_expiry_is_judged_by_the_given_clock(api: Api):
    """The authenticator takes `now`: a token valid now is expired an hour later."""
    authenticator = Authenticator(api.app.store)
    header = api.alice.bearer()["Authorization"].encode()
    now = time.time()
    principal = await authenticator.authenticate(header, now_s=now)
    assert principal.application_id == api.alice.application_id
    with pytest.raises(Unauthorized, match="expired"):
        await authenticator.authenticate(header, now_s=now + 3600)


def test_secret_hashes_are_salted_and_verify_only_the_secret():
    first, second = hash_secret("s3cret"), hash_secret("s3cret")
    assert first != second
    assert "s3cret" not in first
    assert verify_secret("s3cret", first)
    assert verify_secret("s3cret", second)
    assert not verify_secret("s3cret!", first)
    assert not verify_secret("s3cret", "garbage")
    assert not verify_secret("s3cret", first.replace("hmac-sha256", "md5"))
