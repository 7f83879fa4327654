"""`opendispatch serve`: the server, configured by flags or `OPENDISPATCH_*` variables."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from opendispatch.api.rate_limit import parse_rate
from opendispatch.cli.common import allow_private_webhooks_option, database_option
from opendispatch.cli.startup import bind, cannot_start, serve_app
from opendispatch.config import Settings
from opendispatch.logs import LOG_FORMATS, configure_logging
from opendispatch.providers.secret_box import SECRET_KEY_VARIABLE

if TYPE_CHECKING:
    import ssl

    import uvicorn

    from opendispatch.api.app import DispatchApp

__all__ = ["serve"]

log = logging.getLogger("opendispatch")


def _env_option(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    variable = "OPENDISPATCH_" + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, envvar=variable, show_envvar=True, show_default=True, **kwargs)


@click.command()
@_env_option("--host", default="127.0.0.1", help="Address to listen on.")
@_env_option("--port", default=8080, type=int, help="Port to listen on.")
@_env_option(
    "--tls-cert",
    type=click.Path(),
    help="Serve HTTPS with this PEM certificate chain (the server's certificate first, then "
    "any intermediates); needs --tls-key. TLS 1.2 at least.",
)
@_env_option(
    "--tls-key",
    type=click.Path(),
    help="The PEM private key of --tls-cert's certificate, without a passphrase (keep the "
    "file readable only by the server's user).",
)
@database_option
@_env_option("--max-messages", default=10, type=int, help="Most messages in one workflow.")
@_env_option("--max-body-bytes", default=256 * 1024, type=int, help="Largest request body.")
@_env_option(
    "--max-header-bytes",
    default=64 * 1024,
    type=click.IntRange(1024),
    help="Largest request head (request line and header fields); larger is 431.",
)
@_env_option(
    "--max-header-fields", default=100, type=click.IntRange(10), help="Most header fields (431)."
)
@_env_option(
    "--header-timeout",
    default=10.0,
    type=click.FloatRange(min=0.1),
    help="Seconds for a client to send a request's head once it connects or starts it.",
)
@_env_option(
    "--body-timeout",
    default=30.0,
    type=click.FloatRange(min=0.1),
    help="Seconds for a client to send a request's body once its head has arrived.",
)
@_env_option(
    "--keep-alive-timeout",
    default=5.0,
    type=click.FloatRange(min=0.1),
    help="Seconds an idle kept-alive connection stays open.",
)
@_env_option(
    "--max-connections",
    type=click.IntRange(1),
    help="Most open client connections; more are closed at once. "
    "[default: 1000, fewer if the open-file limit is low]",
)
@_env_option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"]))
@_env_option(
    "--log-format",
    default="text",
    type=click.Choice(LOG_FORMATS),
    help="text: one line per event for people; json: one JSON object per line.",
)
@_env_option(
    "--final-status-timeout",
    default=86_400,
    type=int,
    help="Seconds a last message without failover may stay without a final status.",
)
@_env_option(
    "--sandbox-delivered-after-ms", default=1000, type=int, help="Sandbox: submitted -> delivered."
)
@_env_option("--sandbox-read-after-ms", default=1000, type=int, help="Sandbox: delivered -> read.")
@_env_option(
    "--sandbox-price",
    multiple=True,
    help="Sandbox price in EUR per channel, e.g. sms=0.0070 (repeatable).",
)
@_env_option(
    "--rate-limit",
    default="off",
    help="Requests per second each application may make, e.g. 30/s (answered 429 with "
    "Retry-After beyond it); counted per server process.",
)
@click.option(
    "--sandbox-injection/--no-sandbox-injection",
    envvar="OPENDISPATCH_SANDBOX_INJECTION",
    show_envvar=True,
    default=True,
    help="Let sandbox applications inject statuses by hand "
    "(POST /v0.1/sandbox/messages/{uuid}/status); never live ones.",
)
@_env_option("--webhook-timeout", default=5.0, type=float, help="Seconds per delivery attempt.")
@_env_option(
    "--webhook-retry-period", default=86_400, type=int, help="Seconds to retry before dead."
)
@_env_option("--webhook-issuer", default="Vonage", help="The `iss` claim of webhook JWTs.")
@_env_option(
    "--webhook-ca-file",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificates to trust for https receivers, besides the system's.",
)
@allow_private_webhooks_option
@_env_option(
    "--public-url",
    help="The address providers reach this server on, e.g. https://dispatch.example.com: "
    "their callbacks go to <public-url>/v0.1/providers/<name>/callbacks, and signatures that "
    "cover a URL are checked against it. The secrets of provider accounts are opened with "
    "OPENDISPATCH_SECRET_KEY (an environment variable only).",
)
@_env_option(
    "--provider-timeout",
    default=10.0,
    type=click.FloatRange(0.1, 3600),
    help="Seconds to wait for a provider's answer to a send (after that its outcome is "
    "unknown, and it is not sent again); at most two thirds of --lease-timeout.",
)
@_env_option(
    "--max-queue-delay-ms",
    default=250,
    type=click.IntRange(0),
    help="Refuse a share of new workflows (503, Retry-After), just enough to keep due sends "
    "and provider statuses from waiting longer than this (0: never).",
)
@_env_option(
    "--max-webhook-delay-ms",
    default=1000,
    type=click.IntRange(0),
    help="Refuse a share of new workflows while new webhooks to healthy receivers wait "
    "longer than this (0: never).",
)
@_env_option(
    "--max-loop-lag-ms",
    default=100,
    type=click.IntRange(0),
    help="Refuse a share of new workflows (503, Retry-After) while the event loop is this "
    "far behind (0: never).",
)
@_env_option(
    "--retention-days",
    default=30.0,
    type=click.FloatRange(0, 36_500),
    help="Delete ended workflows and delivered or dead webhooks older than this (0: keep all).",
)
@_env_option(
    "--lease-timeout",
    default=30,
    type=int,
    help="PostgreSQL: seconds before work claimed by a dead process is taken over.",
)
@_env_option(
    "--jwt-replay",
    default="refuse",
    type=click.Choice(["refuse", "allow"]),
    help="A JWT used a second time (same jti): refuse it (401), or allow it until it expires.",
)
@_env_option("--db-pool-min", default=2, type=int, help="PostgreSQL: fewest pooled connections.")
@_env_option("--db-pool-max", default=10, type=int, help="PostgreSQL: most pooled connections.")
@click.option(
    "--metrics/--no-metrics",
    envvar="OPENDISPATCH_METRICS",
    show_envvar=True,
    default=True,
    help="Serve GET /metrics (Prometheus' text format) on the server's port.",
)
@_env_option(
    "--metrics-token",
    help="Serve GET /metrics only to `Authorization: Bearer <token>` (16 or more characters; "
    "prefer the environment variable: a flag shows in the process list).",
)
def serve(
    host: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
    database: str,
    max_messages: int,
    max_body_bytes: int,
    max_header_bytes: int,
    max_header_fields: int,
    header_timeout: float,
    body_timeout: float,
    keep_alive_timeout: float,
    max_connections: int | None,
    log_level: str,
    log_format: str,
    final_status_timeout: int,
    sandbox_delivered_after_ms: int,
    sandbox_read_after_ms: int,
    sandbox_price: tuple[str, ...],
    sandbox_injection: bool,
    rate_limit: str,
    webhook_timeout: float,
    webhook_retry_period: int,
    webhook_issuer: str,
    webhook_ca_file: str | None,
    allow_private_webhooks: bool,
    public_url: str | None,
    provider_timeout: float,
    max_queue_delay_ms: int,
    max_webhook_delay_ms: int,
    max_loop_lag_ms: int,
    retention_days: float,
    lease_timeout: int,
    db_pool_min: int,
    db_pool_max: int,
    jwt_replay: str,
    metrics: bool,
    metrics_token: str | None,
) -> None:
    """Run the server until SIGINT or SIGTERM (in-flight requests finish first).

    A server that cannot start (the port in use, the database missing, unreachable or
    already served, its directory unwritable, a TLS file missing or not matching its key, a
    setting refused) says why in one line on stderr and exits with status 1; `--log-level
    debug` adds the traceback.
    """
    started = False
    scheme = "http" if tls_cert is None else "https"

    def announce(listener: socket.socket) -> None:
        nonlocal started
        started = True
        bound = listener.getsockname()[1]
        log.info(
            "OpenDispatch on %s://%s:%d, database %s", scheme, host, bound, _redacted(database)
        )

    open_files = _raise_open_file_limit()
    try:
        settings = Settings(
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            database=database,
            max_messages=max_messages,
            max_body_bytes=max_body_bytes,
            max_header_bytes=max_header_bytes,
            max_header_fields=max_header_fields,
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
            keep_alive_timeout_s=keep_alive_timeout,
            max_connections=max_connections or _default_max_connections(open_files),
            log_level=log_level,
            log_format=log_format,
            final_status_timeout_s=final_status_timeout,
            sandbox_delivered_after_ms=sandbox_delivered_after_ms,
            sandbox_read_after_ms=sandbox_read_after_ms,
            sandbox_prices=_prices(sandbox_price),
            sandbox_injection=sandbox_injection,
            rate_limit=_rate(rate_limit),
            webhook_timeout_s=webhook_timeout,
            webhook_retry_period_s=webhook_retry_period,
            webhook_issuer=webhook_issuer,
            webhook_ca_file=webhook_ca_file,
            allow_private_webhooks=allow_private_webhooks,
            public_url=public_url,
            provider_timeout_s=provider_timeout,
            secret_key=os.environ.get(SECRET_KEY_VARIABLE),
            retention_days=retention_days,
            max_queue_delay_ms=max_queue_delay_ms,
            max_webhook_delay_ms=max_webhook_delay_ms,
            max_loop_lag_ms=max_loop_lag_ms,
            lease_s=lease_timeout,
            db_pool_min=db_pool_min,
            db_pool_max=db_pool_max,
            jwt_replay=jwt_replay,
            metrics=metrics,
            metrics_token=metrics_token,
        )
        configure_logging(log_level, log_format)
        tls = _tls_context(settings)  # files read and checked before anything starts
        listener = bind(host, port)  # before the database is touched (see cli/startup.py)
        app = _app(settings)
        config = _uvicorn_config(app, settings, tls)
        serve_app(
            app,
            config,
            listener,
            lambda: announce(listener),
            tls_handshake_timeout_s=settings.header_timeout_s,
        )
    except click.ClickException:
        raise  # a refused flag: click's usage error, status 2
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if started:
            raise
        cannot_start(exc, debug=log_level == "debug", log_format=log_format)


def _app(settings: Settings) -> DispatchApp:
    from opendispatch.api.app import DispatchApp

    return DispatchApp(settings, freeze_heap_after_startup=True)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None  # both or neither: Settings refuses one alone
    from opendispatch.cli.tls import server_tls_context

    return server_tls_context(settings.tls_cert, settings.tls_key)


def _uvicorn_config(
    app: DispatchApp, settings: Settings, tls: ssl.SSLContext | None
) -> uvicorn.Config:
    import uvicorn

    from opendispatch.api.transport import TransportLimits, guarded_http_protocol

    limits = TransportLimits(
        max_header_bytes=settings.max_header_bytes,
        max_header_fields=settings.max_header_fields,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_http_protocol(limits),  # httptools, with limits (see api/transport.py)
        ws="none",
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]
        lifespan="on",  # the app has started already (cli/startup.py); this stops it
        access_log=False,  # errors are logged with their request id; a line per 202 is noise
        log_config=None,
        log_level=settings.log_level,
        server_header=False,
    )
    if tls is not None:
        # uvicorn builds its own context from file names once it serves (after the app has
        # started), and takes a ready one only from 0.47 on (`ssl_context_factory`): loaded
        # now, the config keeps the context given to it, which `Server` hands to
        # `create_server` for the listener and the protocol then sees as https.
        config.load()
        config.ssl = tls
    return config


def _raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (each connection is a descriptor);
    returns the limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def _default_max_connections(open_file_limit: int) -> int:
    """1000, or fewer where the open-file limit is low: the database, webhook and provider
    connections (up to --webhook-concurrency, 256) and the SQLite files need descriptors too."""
    return max(1, min(1000, open_file_limit - 400, open_file_limit // 2))


def _redacted(database: str) -> str:
    """The database URL without its password, for the log."""
    parts = urlsplit(database)
    if parts.password is None:
        return database
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def _rate(given: str) -> float:
    try:
        return parse_rate(given)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate-limit") from None


def _prices(given: tuple[str, ...]) -> dict[str, str]:
    from opendispatch.providers.sandbox import DEFAULT_PRICES

    prices = dict(DEFAULT_PRICES)
    for item in given:
        for pair in item.split(","):
            channel, equals, price = pair.partition("=")
            if not equals or channel.strip() not in DEFAULT_PRICES:
                raise click.BadParameter(
                    f"{pair!r}: expected CHANNEL=PRICE with a channel among "
                    + ", ".join(DEFAULT_PRICES),
                    param_hint="--sandbox-price",
                )
            prices[channel.strip()] = price.strip()
    return prices
