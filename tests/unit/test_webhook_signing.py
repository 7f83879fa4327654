"""Webhook signatures: what we send is what a receiver written for Vonage accepts, and no more."""

from __future__ import annotations

import dataclasses
import hashlib

import jwt
import pytest

from opendispatch.webhooks.signing import Signer, WebhookSignatureError, verify_webhook

SECRET = "signature-secret-of-at-least-32-bytes!"
BODY = b'{"message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","status":"delivered"}'
JTI = "0b4b0a7e-9a5e-4b8e-8d7e-2f6d1b0c3a11"
APPLICATION_ID = "11111111-2222-3333-4444-555555555555"


def sign(body: bytes = BODY, *, signer: Signer | None = None, now_s: int = 1_577_887_200) -> str:
    return (signer or Signer()).authorization(
        body,
        signature_secret=SECRET,
        api_key="abcd1234",
        application_id=APPLICATION_ID,
        now_s=now_s,
        jti=JTI,
    )


def forge(claims: dict[str, object], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return "Bearer " + jwt.encode(claims, key, algorithm=algorithm)


def vonage_claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "iat": 1_577_887_200,
        "jti": JTI,
        "iss": "Vonage",
        "api_key": "abcd1234",
        "application_id": APPLICATION_ID,
        "payload_hash": hashlib.sha256(BODY).hexdigest(),
    }
    claims.update(overrides)
    return claims


def test_authorization_is_a_bearer_hs256_jwt_with_vonage_claims() -> None:
    scheme, token = sign().split(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    # Decoded the way Vonage's docs tell receivers to: HS256 with the signature secret.
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims == vonage_claims()


def test_signing_is_deterministic_given_time_and_jti() -> None:
    assert sign() == sign()
    assert sign(now_s=1) != sign(now_s=2)


def test_payload_hash_is_sha256_hex_of_the_exact_body_bytes() -> None:
    token = sign(b"{}").split(" ")[1]
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["payload_hash"] == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )


def test_verify_accepts_what_the_signer_produced_and_returns_claims() -> None:
    assert verify_webhook(sign(), BODY, signature_secret=SECRET) == vonage_claims()


def test_verify_accepts_a_lower_case_bearer_scheme() -> None:
    token = sign().split(" ")[1]
    assert verify_webhook(f"bearer {token}", BODY, signature_secret=SECRET)["jti"] == JTI


def test_verify_refuses_a_valid_token_replayed_with_another_body() -> None:
    with pytest.raises(WebhookSignatureError, match="payload_hash"):
        verify_webhook(sign(), BODY + b" ", signature_secret=SECRET)


def test_verify_refuses_the_wrong_secret() -> None:
    with pytest.raises(WebhookSignatureError, match="invalid token"):
        verify_webhook(sign(), BODY, signature_secret="another-secret-of-at-least-32-bytes")


def test_verify_refuses_a_token_signed_with_another_algorithm() -> None:
    with pytest.raises(WebhookSignatureError):
        verify_webhook(
            forge(vonage_claims(), key=SECRET * 2, algorithm="HS512"),
            BODY,
            signature_secret=SECRET * 2,
        )


def test_verify_refuses_an_unsigned_token() -> None:
    unsigned = "Bearer " + jwt.encode(vonage_claims(), "", algorithm="none")
    with pytest.raises(WebhookSignatureError):
        verify_webhook(unsigned, BODY, signature_secret=SECRET)


def test_verify_refuses_another_issuer_unless_told_to_expect_it() -> None:
    ours = sign(signer=Signer(issuer="OpenDispatch"))
    with pytest.raises(WebhookSignatureError, match="invalid token"):
        verify_webhook(ours, BODY, signature_secret=SECRET)
    claims = verify_webhook(ours, BODY, signature_secret=SECRET, issuer="OpenDispatch")
    assert claims["iss"] == "OpenDispatch"


@pytest.mark.parametrize("missing", ["payload_hash", "iss", "iat", "jti"])
def test_verify_refuses_a_token_missing_a_required_claim(missing: str) -> None:
    claims = vonage_claims()
    del claims[missing]
    with pytest.raises(WebhookSignatureError):
        verify_webhook(forge(claims), BODY, signature_secret=SECRET)


def test_verify_refuses_a_payload_hash_that_is_not_a_string() -> None:
    with pytest.raises(WebhookSignatureError, match="payload_hash"):
        verify_webhook(forge(vonage_claims(payload_hash=123)), BODY, signature_secret=SECRET)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic abc", sign().split(" ")[1]])
def test_verify_refuses_a_header_that_is_not_a_bearer_token(header: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_webhook(header, BODY, signature_secret=SECRET)


def test_signer_is_a_frozen_keyword_only_value() -> None:
    signer = Signer()
    assert signer.issuer == "Vonage"
    with pytest.raises(dataclasses.FrozenInstanceError):
        signer.issuer = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Signer("x")  # type: ignore[call-arg]
