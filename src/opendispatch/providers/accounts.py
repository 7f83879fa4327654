"""Turning `providers add NAME --kind K --set KEY=VALUE ...` into a stored account, and a
stored account back into what an adapter is built from.

The checks here are the ones every kind shares (known keys, a usable base URL, a positive
rate); each kind checks its own combinations (`ProviderKind.check_settings`). Secret values
are sealed with the `SecretBox` before they reach the store, and settings only ever compared
are stored as hashes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import urlsplit

from opendispatch.errors import ConfigurationError
from opendispatch.providers.kinds import AccountConfig, ProviderKind, hash_setting
from opendispatch.providers.registry import COMMON_SETTINGS, KINDS
from opendispatch.providers.secret_box import SecretBox
from opendispatch.store.records import ProviderAccountRecord

__all__ = ["NAME_PATTERN_TEXT", "account_config", "kind_of", "new_account", "valid_name"]

NAME_PATTERN_TEXT = "1-64 letters, digits, '-' or '_', starting with a letter or digit"


def valid_name(name: str) -> bool:
    """Names appear in callback URLs: keep them to what needs no escaping."""
    return (
        0 < len(name) <= 64
        and name.isascii()
        and name[0].isalnum()
        and all(char.isalnum() or char in "-_" for char in name)
    )


def new_account(
    *,
    name: str,
    kind_name: str,
    base_url: str | None,
    values: Mapping[str, str],
    secret_box: SecretBox,
) -> ProviderAccountRecord:
    """A checked account ready to store (times filled in by the store); raises
    `ConfigurationError` naming what is wrong."""
    if not valid_name(name):
        raise ConfigurationError(f"provider name {name!r} must be {NAME_PATTERN_TEXT}")
    kind = KINDS.get(kind_name)
    if kind is None:
        raise ConfigurationError(
            f"unknown provider kind {kind_name!r}; known: {', '.join(sorted(KINDS))}"
        )
    known = {setting.key: setting for setting in (*kind.settings, *COMMON_SETTINGS)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigurationError(
            f"{kind.name} has no setting {', '.join(unknown)}; "
            f"its settings: {', '.join(sorted(known))}"
        )
    _check_rate(values.get("rate"))
    try:
        kind.check_settings({key: value for key, value in values.items() if key != "rate"})
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for key, value in values.items():
        setting = known[key]
        if setting.hashed:
            plain[key] = hash_setting(value)
        elif setting.secret:
            secret[key] = value
        else:
            plain[key] = value
    return ProviderAccountRecord(
        name=name,
        kind=kind.name,
        base_url=_base_url(base_url or kind.default_base_url),
        settings=plain,
        sealed_secrets=secret_box.seal(secret) if secret else None,
        created_at_ms=0,
        updated_at_ms=0,
    )


def account_config(record: ProviderAccountRecord, secret_box: SecretBox) -> AccountConfig:
    """The account with its secrets opened (raises `ConfigurationError` if they cannot be)."""
    settings = dict(record.settings)
    if record.sealed_secrets is not None:
        settings |= secret_box.open(record.sealed_secrets, account=record.name)
    return AccountConfig(
        name=record.name, kind=record.kind, base_url=record.base_url, settings=settings
    )


def kind_of(record: ProviderAccountRecord) -> ProviderKind:
    kind = KINDS.get(record.kind)
    if kind is None:
        raise ConfigurationError(
            f"provider account {record.name!r} has kind {record.kind!r}, unknown to this version"
        )
    return kind


def _check_rate(rate: str | None) -> None:
    if rate is None:
        return
    try:
        value = float(rate)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 100_000):
        raise ConfigurationError(f"rate must be a number of messages per second, not {rate!r}")


def _base_url(url: str) -> str:
    """Scheme, host and port only (tests point it at a fake: http://127.0.0.1:PORT)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ConfigurationError(
            f"--base-url must be a scheme, host and port such as https://api.twilio.com, "
            f"not {url!r}"
        )
    default_port = {"http": 80, "https": 443}[parts.scheme]
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None and port != default_port:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}"
