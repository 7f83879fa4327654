"""Settings: one frozen object built from command-line flags and `OPENDISPATCH_*` variables.

`cli.py` maps every flag to its environment variable (`--max-messages` ->
`OPENDISPATCH_MAX_MESSAGES`); everything else receives a `Settings` and never reads the
environment itself, so tests build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from opendispatch.errors import ConfigurationError

__all__ = ["DEFAULT_DATABASE", "Settings"]

DEFAULT_DATABASE = "sqlite:///opendispatch.db"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database: str = DEFAULT_DATABASE
    # The Dispatch spec allows up to 10 messages per workflow; operators may lower or raise it.
    max_messages: int = 10
    # Ten messages at their largest are far below this; anything bigger is a mistake or abuse.
    max_body_bytes: int = 256 * 1024
    jwt_leeway_s: int = 30
    jwt_max_age_s: int = 86_400
    credentials_cache_s: float = 5.0
    page_size_default: int = 20
    page_size_max: int = 100
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not 1 <= self.max_messages <= 1000:
            raise ConfigurationError("max_messages must be between 1 and 1000")
        if self.max_body_bytes < 1024:
            raise ConfigurationError("max_body_bytes must be at least 1024")
        if not 1 <= self.page_size_default <= self.page_size_max:
            raise ConfigurationError("page_size_default must be between 1 and page_size_max")
        if not 0 < self.port < 65536:
            raise ConfigurationError("port must be between 1 and 65535")
