"""Registering provider accounts: the checks every kind shares, and secrets sealed at rest."""

from __future__ import annotations

import json

import pytest

from opendispatch.errors import ConfigurationError
from opendispatch.providers.accounts import account_config, new_account
from opendispatch.providers.kinds import matches_hashed
from opendispatch.providers.secret_box import SecretBox, new_secret_key

TWILIO = {"account_sid": "AC" + "0" * 32, "auth_token": "token-1234567890"}
BOX = SecretBox(new_secret_key())


def twilio(**changes: object) -> dict[str, object]:
    return {
        "name": "twilio-main",
        "kind_name": "twilio",
        "base_url": None,
        "values": TWILIO,
        "secret_box": BOX,
    } | changes


def test_secrets_are_sealed_and_open_only_with_the_key():
    record = new_account(**twilio())  # type: ignore[arg-type]
    assert "auth_token" not in record.settings
    assert record.sealed_secrets is not None
    assert "token-1234567890" not in record.sealed_secrets
    assert account_config(record, BOX).settings["auth_token"] == "token-1234567890"
    with pytest.raises(ConfigurationError, match="cannot decrypt the secrets of provider"):
        account_config(record, SecretBox(new_secret_key()))
    with pytest.raises(ConfigurationError, match="OPENDISPATCH_SECRET_KEY is not set"):
        account_config(record, SecretBox(None))


def test_storing_a_secret_without_a_key_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="OPENDISPATCH_SECRET_KEY is not set"):
        new_account(**twilio(secret_box=SecretBox(None)))  # type: ignore[arg-type]


def test_a_rotated_key_still_opens_old_secrets_and_reseals_them_under_the_new_one():
    old, new = new_secret_key(), new_secret_key()
    record = new_account(**twilio(secret_box=SecretBox(old)))  # type: ignore[arg-type]
    both = SecretBox(f"{new},{old}")
    assert record.sealed_secrets is not None
    resealed = both.reseal(record.sealed_secrets, account="t")
    assert SecretBox(new).open(resealed, account="t") == {"auth_token": "token-1234567890"}


def test_a_passphrase_key_must_be_long_enough():
    assert SecretBox("x" * 32).has_key
    with pytest.raises(ConfigurationError, match="at least 32 characters"):
        SecretBox("too-short")


def test_unknown_keys_and_kinds_are_named():
    with pytest.raises(ConfigurationError, match="twilio has no setting colour"):
        new_account(**twilio(values={**TWILIO, "colour": "red"}))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown provider kind 'pigeon'"):
        new_account(**twilio(kind_name="pigeon"))  # type: ignore[arg-type]


def test_the_kind_checks_its_own_combinations():
    with pytest.raises(ConfigurationError, match="auth_token"):
        new_account(**twilio(values={"account_sid": TWILIO["account_sid"]}))  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", ["0", "-1", "fast", "nan", "inf"])
def test_a_rate_must_be_a_positive_number(rate: str):
    with pytest.raises(ConfigurationError, match="rate must be a number"):
        new_account(**twilio(values={**TWILIO, "rate": rate}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (None, "https://api.twilio.com"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("https://api.example.com:443/", "https://api.example.com"),
    ],
)
def test_the_base_url_is_a_scheme_host_and_port(given: str | None, stored: str):
    assert new_account(**twilio(base_url=given)).base_url == stored  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "given", ["ftp://x", "https://api.twilio.com/2010-04-01", "https://u:p@x", "not a url"]
)
def test_a_base_url_with_more_or_less_is_refused(given: str):
    with pytest.raises(ConfigurationError, match="--base-url"):
        new_account(**twilio(base_url=given))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "-x", "a b", "é", "x" * 65, "a/b"])
def test_names_fit_in_a_callback_url(name: str):
    with pytest.raises(ConfigurationError, match="provider name"):
        new_account(**twilio(name=name))  # type: ignore[arg-type]


def test_compare_only_settings_are_stored_hashed():
    values = {
        "phone_number_id": "106540352242922",
        "access_token": "EAAG-token",
        "app_secret": "app-secret",
        "verify_token": "my-verify-token",
    }
    record = new_account(
        name="wa", kind_name="whatsapp-cloud", base_url=None, values=values, secret_box=BOX
    )
    stored = record.settings["verify_token"]
    assert "my-verify-token" not in json.dumps(record.settings)
    assert matches_hashed("my-verify-token", stored)
    assert not matches_hashed("my-verify-toke", stored)
