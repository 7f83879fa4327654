"""Settings refuse what cannot work, and say exactly which setting and why."""

from __future__ import annotations

from typing import Any

import pytest

from opendispatch.config import Settings
from opendispatch.errors import ConfigurationError


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"webhook_timeout_s": 0}, "webhook_timeout_s must be positive, not 0"),
        ({"webhook_retry_period_s": -1}, "webhook_retry_period_s must not be negative, not -1"),
        ({"sandbox_read_after_ms": -5}, "sandbox_read_after_ms must not be negative, not -5"),
        ({"webhook_per_application": 0}, "webhook_per_application must be at least 1, not 0"),
        ({"max_loop_lag_ms": -1}, "max_loop_lag_ms must not be negative (0: off), not -1"),
        ({"max_header_fields": 5}, "max_header_fields must be at least 10, not 5"),
        ({"max_header_bytes": 100}, "max_header_bytes must be at least 1024, not 100"),
        ({"keep_alive_timeout_s": 0}, "keep_alive_timeout_s must be positive, not 0"),
    ],
)
def test_a_refused_setting_is_named_alone_with_its_value(given: dict[str, Any], message: str):
    with pytest.raises(ConfigurationError) as refused:
        Settings(**given)
    assert str(refused.value) == message


def test_the_defaults_pass():
    Settings()


@pytest.mark.parametrize("token", ["short", "sixteen chars ok", "x" * 257, "tokén-0123456789"])
def test_a_metrics_token_that_is_not_a_long_bearer_token_is_refused_without_its_value(token: str):
    with pytest.raises(ConfigurationError) as refused:
        Settings(metrics_token=token)
    assert str(refused.value).startswith("metrics_token must be 16 to 256 characters")
    assert token not in str(refused.value)


def test_a_metrics_token_is_never_in_the_settings_repr():
    assert "0123456789abcdef" not in repr(Settings(metrics_token="0123456789abcdef=="))
