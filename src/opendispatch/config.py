"""Settings: one frozen object built from command-line flags and `OPENDISPATCH_*` variables.

`cli.py` maps every flag to its environment variable (`--max-messages` ->
`OPENDISPATCH_MAX_MESSAGES`); everything else receives a `Settings` and never reads the
environment itself, so tests build one directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from urllib.parse import urlsplit

from opendispatch.errors import ConfigurationError
from opendispatch.providers.sandbox import DEFAULT_PRICES

__all__ = ["DEFAULT_DATABASE", "Settings"]

DEFAULT_DATABASE = "sqlite:///opendispatch.db"
# A bearer token's characters (RFC 6750's b64token), and long enough not to be guessed.
_METRICS_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{16,256}={0,2}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database: str = DEFAULT_DATABASE
    # The Dispatch spec allows up to 10 messages per workflow; operators may lower or raise it.
    max_messages: int = 10
    # Ten messages at their largest are far below this; anything bigger is a mistake or abuse.
    max_body_bytes: int = 256 * 1024
    # The transport, before any request is authenticated (see `api/transport.py`): a request's
    # head (request line and header fields), the time to send its head and its body, an idle
    # kept-alive connection, and open connections (serve lowers this to fit the open-file limit).
    max_header_bytes: int = 64 * 1024
    max_header_fields: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 5.0
    max_connections: int = 1000
    # HTTPS served directly: PEM files of the certificate chain and its private key, both or
    # neither (`cli/tls.py` reads them; the paths are not secret, the key's contents are).
    tls_cert: str | None = None
    tls_key: str | None = None
    jwt_leeway_s: int = 30
    jwt_max_age_s: int = 86_400
    # "refuse": a JWT's jti is good for one request (Vonage's SDKs sign one per request);
    # "allow": a token may be used again until it expires (clients that reuse one token).
    jwt_replay: str = "refuse"
    credentials_cache_s: float = 5.0
    page_size_default: int = 20
    page_size_max: int = 100
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line (see `logs`)
    # The engine: how long a last message without `failover` may stay without a final status
    # before its workflow ends in `error`.
    final_status_timeout_s: int = 86_400
    # The sandbox provider.
    sandbox_delivered_after_ms: int = 1000
    sandbox_read_after_ms: int = 1000
    sandbox_prices: Mapping[str, str] = field(default_factory=lambda: DEFAULT_PRICES)
    sandbox_injection: bool = True  # POST /v0.1/sandbox/messages/{uuid}/status (never live)
    rate_limit: float = 0.0  # requests per second per application, per process (0: none)
    # Webhooks.
    webhook_timeout_s: float = 5.0
    webhook_retry_period_s: int = 86_400
    webhook_max_retry_delay_s: int = 300
    webhook_issuer: str = "Vonage"
    webhook_ca_file: str | None = None
    # Off by default: webhooks never reach loopback, private or link-local addresses.
    allow_private_webhooks: bool = False
    webhook_concurrency: int = 256
    webhook_per_application: int = 64
    # Admission control: the delays it holds new workflows to, refusing a share of them (503)
    # while due sends or provider statuses wait longer, or the event loop is this far behind
    # (see `runtime.admission`; 0: signal off).
    max_queue_delay_ms: int = 250
    max_webhook_delay_ms: int = 1000
    max_loop_lag_ms: int = 100
    # Real providers. `public_url`: the address providers reach this server on (their
    # callbacks, and the signatures that cover a URL). `secret_key`: OPENDISPATCH_SECRET_KEY,
    # which opens the provider accounts' secrets (never printed).
    public_url: str | None = None
    provider_timeout_s: float = 10.0  # at most two thirds of lease_s (see `provider_timeout`)
    secret_key: str | None = field(default=None, repr=False)
    # Retention: ended workflows and settled webhooks older than this are deleted (0: never).
    retention_days: float = 30.0
    # Scale-out (PostgreSQL): how long a process keeps work it claimed if it dies, and its pool.
    lease_s: int = 30
    db_pool_min: int = 2
    db_pool_max: int = 10
    # GET /metrics (Prometheus): served unless off; with a token, only to `Bearer <token>`.
    metrics: bool = True
    metrics_token: str | None = field(default=None, repr=False)

    def _require(self, rule: str, holds: Callable[[float], bool], *names: str) -> None:
        """One check per setting, so that a refusal names the one that failed and its value."""
        for name in names:
            value = getattr(self, name)
            if not holds(value):
                raise ConfigurationError(f"{name} {rule}, not {value!r}")

    @property
    def provider_timeout(self) -> float:
        """A send in flight must be answered well before its claim could pass to another
        process (its lease), or the same step could reach a provider twice."""
        return min(self.provider_timeout_s, self.lease_s * 2 / 3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sandbox_prices", MappingProxyType(dict(self.sandbox_prices)))
        for channel, price in self.sandbox_prices.items():
            try:
                if Decimal(price) < 0:
                    raise InvalidOperation
            except InvalidOperation:
                raise ConfigurationError(
                    f"sandbox price for {channel} must be a non-negative decimal, not {price!r}"
                ) from None
        if not 0 <= self.rate_limit < float("inf"):
            raise ConfigurationError("rate_limit must be a non-negative number of requests/s")
        if self.final_status_timeout_s < 1:
            raise ConfigurationError("final_status_timeout_s must be at least 1")
        self._require(
            "must not be negative",
            lambda v: v >= 0,
            "sandbox_delivered_after_ms",
            "sandbox_read_after_ms",
            "webhook_retry_period_s",
        )
        self._require("must be positive", lambda v: v > 0, "webhook_timeout_s")
        self._require(
            "must be at least 1", lambda v: v >= 1, "webhook_concurrency", "webhook_per_application"
        )
        self._require(
            "must not be negative (0: off)",
            lambda v: v >= 0,
            "max_queue_delay_ms",
            "max_webhook_delay_ms",
            "max_loop_lag_ms",
        )
        if not 0 <= self.retention_days <= 36_500:
            raise ConfigurationError("retention_days must be between 0 (keep) and 36500")
        if self.lease_s < 1:
            raise ConfigurationError("lease_s must be at least 1")
        if self.provider_timeout_s <= 0:
            raise ConfigurationError("provider_timeout_s must be positive")
        if self.public_url is not None:
            object.__setattr__(self, "public_url", _public_url(self.public_url))
        if not 1 <= self.db_pool_min <= self.db_pool_max:
            raise ConfigurationError("need 1 <= db_pool_min <= db_pool_max")
        if not 1 <= self.max_messages <= 1000:
            raise ConfigurationError("max_messages must be between 1 and 1000")
        if self.max_body_bytes < 1024:
            raise ConfigurationError("max_body_bytes must be at least 1024")
        self._require("must be at least 1024", lambda v: v >= 1024, "max_header_bytes")
        self._require("must be at least 10", lambda v: v >= 10, "max_header_fields")
        self._require(
            "must be positive",
            lambda v: v > 0,
            "header_timeout_s",
            "body_timeout_s",
            "keep_alive_timeout_s",
        )
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("cert", "key") if self.tls_key is None else ("key", "cert")
            raise ConfigurationError(
                f"--tls-{given} is given without --tls-{missing} (OPENDISPATCH_TLS_"
                f"{missing.upper()}): HTTPS needs both the certificate and its private key"
            )
        if self.max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        if not 1 <= self.page_size_default <= self.page_size_max:
            raise ConfigurationError("page_size_default must be between 1 and page_size_max")
        if self.jwt_replay not in ("refuse", "allow"):
            raise ConfigurationError("jwt_replay must be refuse or allow")
        if not 0 < self.port < 65536:
            raise ConfigurationError("port must be between 1 and 65535")
        if self.metrics_token is not None and not _METRICS_TOKEN.fullmatch(self.metrics_token):
            # Not its value: it is a secret.
            raise ConfigurationError(
                "metrics_token must be 16 to 256 characters of A-Z a-z 0-9 - . _ ~ + / "
                "(a bearer token), optionally ending in ="
            )


def _public_url(url: str) -> str:
    """Scheme, host, port and an optional path prefix (behind a proxy), no trailing slash."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ConfigurationError(
            f"public_url must be an http(s) URL such as https://dispatch.example.com, not {url!r}"
        )
    return url.rstrip("/")
