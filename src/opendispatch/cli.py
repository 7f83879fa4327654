"""`opendispatch serve | apps create | apps list | webhooks list | webhooks replay | db upgrade`.

Every option has an `OPENDISPATCH_*` environment equivalent, named in `--help`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from opendispatch.config import DEFAULT_DATABASE, Settings
from opendispatch.errors import ConfigurationError, OpenDispatchError

__all__ = ["main"]

T = TypeVar("T")

database_option = click.option(
    "--database",
    envvar="OPENDISPATCH_DATABASE",
    default=DEFAULT_DATABASE,
    show_default=True,
    show_envvar=True,
    help="sqlite:///path.db (the embedded default) or postgresql://user@host/db (scale-out).",
)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except OpenDispatchError as exc:
        raise click.ClickException(str(exc)) from exc


def _http_url(_: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    from opendispatch.webhooks.destinations import redact_url, url_problem

    if value is None:
        return None
    problem = url_problem(value)
    if problem is not None:
        raise click.BadParameter(f"{redact_url(value)!r} {problem}", param=parameter)
    return value


allow_private_webhooks_option = click.option(
    "--allow-private-webhooks",
    envvar="OPENDISPATCH_ALLOW_PRIVATE_WEBHOOKS",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Let webhooks go to loopback, private and link-local addresses (development, "
    "receivers inside a private network). Off: such destinations are refused.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opendispatch")
def main() -> None:
    """OpenDispatch: a self-hosted server for the Vonage Dispatch API."""


# -- serve -----------------------------------------------------------------------------------


def _env_option(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    variable = "OPENDISPATCH_" + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, envvar=variable, show_envvar=True, show_default=True, **kwargs)


@main.command()
@_env_option("--host", default="127.0.0.1", help="Address to listen on.")
@_env_option("--port", default=8080, type=int, help="Port to listen on.")
@database_option
@_env_option("--max-messages", default=10, type=int, help="Most messages in one workflow.")
@_env_option("--max-body-bytes", default=256 * 1024, type=int, help="Largest request body.")
@_env_option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"]))
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
    "--max-queue-delay-ms",
    default=250,
    type=click.IntRange(0),
    help="Refuse new workflows (503, Retry-After) while due sends wait longer than this "
    "(0: never).",
)
@_env_option(
    "--max-webhook-delay-ms",
    default=1000,
    type=click.IntRange(0),
    help="Refuse new workflows while new webhooks to healthy receivers wait longer than "
    "this (0: never).",
)
@_env_option(
    "--max-loop-lag-ms",
    default=100,
    type=click.IntRange(0),
    help="Refuse new workflows (503, Retry-After) while the event loop is this far behind "
    "(0: never).",
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
@_env_option("--db-pool-min", default=2, type=int, help="PostgreSQL: fewest pooled connections.")
@_env_option("--db-pool-max", default=10, type=int, help="PostgreSQL: most pooled connections.")
def serve(
    host: str,
    port: int,
    database: str,
    max_messages: int,
    max_body_bytes: int,
    log_level: str,
    final_status_timeout: int,
    sandbox_delivered_after_ms: int,
    sandbox_read_after_ms: int,
    sandbox_price: tuple[str, ...],
    webhook_timeout: float,
    webhook_retry_period: int,
    webhook_issuer: str,
    webhook_ca_file: str | None,
    allow_private_webhooks: bool,
    max_queue_delay_ms: int,
    max_webhook_delay_ms: int,
    max_loop_lag_ms: int,
    retention_days: float,
    lease_timeout: int,
    db_pool_min: int,
    db_pool_max: int,
) -> None:
    """Run the server until SIGINT or SIGTERM (in-flight requests finish first)."""
    import uvicorn

    from opendispatch.api.app import DispatchApp

    try:
        settings = Settings(
            host=host,
            port=port,
            database=database,
            max_messages=max_messages,
            max_body_bytes=max_body_bytes,
            log_level=log_level,
            final_status_timeout_s=final_status_timeout,
            sandbox_delivered_after_ms=sandbox_delivered_after_ms,
            sandbox_read_after_ms=sandbox_read_after_ms,
            sandbox_prices=_prices(sandbox_price),
            webhook_timeout_s=webhook_timeout,
            webhook_retry_period_s=webhook_retry_period,
            webhook_issuer=webhook_issuer,
            webhook_ca_file=webhook_ca_file,
            allow_private_webhooks=allow_private_webhooks,
            retention_days=retention_days,
            max_queue_delay_ms=max_queue_delay_ms,
            max_webhook_delay_ms=max_webhook_delay_ms,
            max_loop_lag_ms=max_loop_lag_ms,
            lease_s=lease_timeout,
            db_pool_min=db_pool_min,
            db_pool_max=db_pool_max,
        )
        app = DispatchApp(settings, freeze_heap_after_startup=True)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    _configure_logging(log_level)
    logging.getLogger("opendispatch").info(
        "OpenDispatch on http://%s:%d, database %s", host, port, _redacted(database)
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # errors are logged with their request id; a line per 202 is noise
        log_config=None,
        log_level=log_level,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(3)


def _redacted(database: str) -> str:
    """The database URL without its password, for the log."""
    parts = urlsplit(database)
    if parts.password is None:
        return database
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


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


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# -- apps ------------------------------------------------------------------------------------


@main.group()
def apps() -> None:
    """Create and list applications (the credentials clients use)."""


@apps.command("create")
@click.option("--name", required=True, help="A name for people.")
@click.option("--status-url", required=True, callback=_http_url, help="Message status webhooks.")
@click.option(
    "--final-report-url", callback=_http_url, help="Final report webhooks (default: status URL)."
)
@click.option(
    "--public-key-file",
    type=click.File("r"),
    help="Register this RSA key (PEM, public or private) instead of generating a pair.",
)
@allow_private_webhooks_option
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def apps_create(
    name: str,
    status_url: str,
    final_report_url: str | None,
    public_key_file: Any,
    allow_private_webhooks: bool,
    database: str,
    as_json: bool,
) -> None:
    """Create an application and its account, and print its credentials (shown only once).

    Webhook URLs that point to loopback, private or link-local addresses are refused unless
    --allow-private-webhooks is given (the server checks again at every delivery)."""
    from opendispatch.auth.provisioning import check_webhook_urls, provision_application
    from opendispatch.webhooks.destinations import AddressPolicy

    public_key_text = public_key_file.read() if public_key_file is not None else None
    policy = AddressPolicy(allow_private=allow_private_webhooks)
    urls = {"--status-url": status_url, "--final-report-url": final_report_url}

    async def create() -> Any:
        await check_webhook_urls(urls, policy)  # refused before the database is touched
        store = _store(database)
        await store.open()
        try:
            return await provision_application(
                store,
                name=name,
                status_url=status_url,
                final_report_url=final_report_url,
                public_key_text=public_key_text,
                address_policy=policy,
            )
        finally:
            await store.close()

    provisioned = _run(create())
    for warning in provisioned.warnings:
        click.echo(f"warning: {warning}", err=True)
    fields = provisioned.as_json()
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    click.echo("Application created. The secrets below are shown only once; store them now.\n")
    for key in ("application_id", "name", "api_key", "api_secret", "signature_secret"):
        click.echo(f"{key + ':':18} {fields[key]}")
    click.echo(f"{'status_url:':18} {fields['status_url']}")
    click.echo(f"{'final_report_url:':18} {fields['final_report_url'] or '(the status URL)'}")
    if fields["private_key"]:
        click.echo("\nprivate_key (sign JWTs with it; the server keeps only the public key):")
        click.echo(fields["private_key"])


@apps.command("list")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def apps_list(database: str, as_json: bool) -> None:
    """List applications (never their secrets)."""

    async def load() -> Any:
        store = _store(database)
        await store.open()
        try:
            return await store.list_applications()
        finally:
            await store.close()

    applications = _run(load())
    rows = [
        {
            "application_id": app.application_id,
            "name": app.name,
            "api_key": app.api_key,
            "status_url": app.status_url,
            "final_report_url": app.final_report_url,
        }
        for app in applications
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No applications yet: opendispatch apps create --name ... --status-url ...")
        return
    for row in rows:
        click.echo(f"{row['application_id']}  {row['api_key']}  {row['name']}  {row['status_url']}")


# -- webhooks --------------------------------------------------------------------------------


@main.group()
def webhooks() -> None:
    """List webhooks (dead letters first of all) and deliver them again."""


@webhooks.command("list")
@click.option("--application", "application_id", help="Only this application's webhooks.")
@click.option(
    "--state", type=click.Choice(["pending", "held", "delivered", "dead"]), help="Only these."
)
@click.option("--dispatch-uuid", help="Only this workflow's webhooks.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def webhooks_list(
    application_id: str | None,
    state: str | None,
    dispatch_uuid: str | None,
    limit: int,
    database: str,
    as_json: bool,
) -> None:
    """Webhooks, newest first, with their attempts and last error."""
    from opendispatch.store.records import WebhookFilter
    from opendispatch.timefmt import iso_ms
    from opendispatch.webhooks.destinations import redact_url

    which = WebhookFilter(application_id=application_id, state=state, dispatch_uuid=dispatch_uuid)
    records = _run(
        _with_store(database, lambda store: store.list_webhooks_page(which, limit=limit))
    )
    rows = [
        {
            "webhook_id": r.event_id,
            "application_id": r.application_id,
            "dispatch_uuid": r.dispatch_uuid,
            "kind": r.kind,
            "status": r.status,
            "state": r.state,
            "attempts": r.attempts,
            "replays": r.replays,
            "last_status_code": r.last_status_code,
            "last_error": r.last_error,
            "url": redact_url(r.url),
            "created_at": iso_ms(r.created_at_ms),
        }
        for r in records
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No webhooks match.")
        return
    click.echo("WEBHOOK_ID  STATE  ATTEMPTS  LAST  KIND/STATUS  URL  LAST_ERROR")
    for row in rows:
        last = row["last_status_code"] or "-"
        click.echo(
            f"{row['webhook_id']}  {row['state']}  {row['attempts']}  {last}  "
            f"{row['kind']}/{row['status']}  {row['url']}  {row['last_error'] or ''}"
        )


@webhooks.command("replay")
@click.argument("webhook_ids", nargs=-1)
@click.option("--all", "replay_all_matching", is_flag=True, help="Every webhook matching.")
@click.option(
    "--state", type=click.Choice(["dead", "delivered"]), default="dead", show_default=True
)
@click.option("--application", "application_id", help="Only this application's webhooks.")
@click.option("--dispatch-uuid", help="Only this workflow's webhooks.")
@database_option
def webhooks_replay(
    webhook_ids: tuple[str, ...],
    replay_all_matching: bool,
    state: str,
    application_id: str | None,
    dispatch_uuid: str | None,
    database: str,
) -> None:
    """Deliver webhooks again: the same body and webhook-id, newly signed, with a new retry
    period. Name them (WEBHOOK_ID ...) or replay all matching with --all."""
    from opendispatch.api.webhook_routes import replay_all
    from opendispatch.store.records import WebhookFilter
    from opendispatch.timefmt import now_ms

    if bool(webhook_ids) == replay_all_matching:
        raise click.UsageError("name webhooks to replay, or give --all (with filters), not both")

    async def replay(store: Any) -> tuple[int, list[str]]:
        refused = []
        count = 0
        if replay_all_matching:
            which = WebhookFilter(
                application_id=application_id, state=state, dispatch_uuid=dispatch_uuid
            )
            count = await replay_all(store, which, now_ms=now_ms())
        for webhook_id in webhook_ids:
            found = await store.find_webhook(webhook_id)
            if found is None:
                refused.append(f"{webhook_id}: no such webhook")
            elif await store.replay_webhook(found.id, now_ms=now_ms()):
                count += 1
            else:
                refused.append(f"{webhook_id}: it is {found.state}, already on its way")
        if count:
            await store.notify(["webhooks"])  # servers on PostgreSQL deliver them at once
        return count, refused

    count, refused = _run(_with_store(database, replay))
    click.echo(f"replayed {count} webhook{'s' if count != 1 else ''}")
    for line in refused:
        click.echo(f"not replayed: {line}", err=True)
    if refused:
        sys.exit(1)


async def _with_store(database: str, use: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    store = _store(database)
    await store.open()
    try:
        return await use(store)
    finally:
        await store.close()


# -- db --------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@database_option
def db_upgrade(database: str) -> None:
    """Bring the schema up to date (the server also does this when it starts)."""

    async def upgrade() -> None:
        store = _store(database)
        await store.open()
        await store.close()

    _run(upgrade())
    click.echo(f"{database}: schema up to date")


def _store(database: str) -> Any:
    from opendispatch.store.factory import create_store

    try:
        return create_store(database)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
