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
