"""`opendispatch apps`: applications, the credentials clients use."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

from opendispatch.api.request_models import Channel
from opendispatch.cli.common import (
    allow_private_webhooks_option,
    database_option,
    http_url,
    run,
    store_for,
    table,
    with_store,
)

if TYPE_CHECKING:  # imported where used: every command starts faster
    from opendispatch.store.records import ApplicationChange
    from opendispatch.webhooks.destinations import AddressPolicy

__all__ = ["apps"]

T = TypeVar("T")


@click.group()
def apps() -> None:
    """Create, list, change and delete applications (the credentials clients use); route
    live ones."""


@apps.command("create")
@click.option("--name", required=True, help="A name for people.")
@click.option("--status-url", required=True, callback=http_url, help="Message status webhooks.")
@click.option(
    "--final-report-url", callback=http_url, help="Final report webhooks (default: status URL)."
)
@click.option(
    "--public-key-file",
    type=click.File("r"),
    help="Register this RSA key (PEM, public or private) instead of generating a pair.",
)
@click.option(
    "--live",
    is_flag=True,
    help="A live application: its messages go through the provider routes set with "
    "`apps route` (never the sandbox). Without it, everything goes to the sandbox.",
)
@allow_private_webhooks_option
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def apps_create(
    name: str,
    status_url: str,
    final_report_url: str | None,
    public_key_file: Any,
    live: bool,
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
        store = store_for(database)
        await store.open()
        try:
            return await provision_application(
                store,
                name=name,
                status_url=status_url,
                final_report_url=final_report_url,
                public_key_text=public_key_text,
                address_policy=policy,
                live=live,
            )
        finally:
            await store.close()

    provisioned = run(create())
    for warning in provisioned.warnings:
        click.echo(f"warning: {warning}", err=True)
    fields = provisioned.as_json()
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    click.echo("Application created. The secrets below are shown only once; store them now.\n")
    for key in ("application_id", "name", "mode", "api_key", "api_secret", "signature_secret"):
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
    """List applications (never their secrets); deleted ones are not listed."""
    from opendispatch.timefmt import iso_ms

    applications = run(with_store(database, lambda store: store.list_applications()))
    rows = [
        {
            "application_id": app.application_id,
            "name": app.name,
            "api_key": app.api_key,
            "status_url": app.status_url,
            "final_report_url": app.final_report_url,
            "mode": "live" if app.live else "sandbox",
            "created_at": iso_ms(app.created_at_ms),
        }
        for app in applications
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No applications yet: opendispatch apps create --name ... --status-url ...")
        return
    columns = ("application_id", "api_key", "mode", "name", "status_url", "final_report_url")
    # Only a final report URL may be missing: its webhooks go to the status URL.
    cells = [[row[column] or "(status URL)" for column in columns] for row in rows]
    for line in table([column.upper() for column in columns], cells):
        click.echo(line)


@apps.command("update")
@click.argument("application_id")
@click.option("--name", help="A new name.")
@click.option("--status-url", callback=http_url, help="A new URL for message status webhooks.")
@click.option("--final-report-url", callback=http_url, help="A new URL for final reports.")
@allow_private_webhooks_option
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print the application as JSON.")
def apps_update(
    application_id: str,
    name: str | None,
    status_url: str | None,
    final_report_url: str | None,
    allow_private_webhooks: bool,
    database: str,
    as_json: bool,
) -> None:
    """Change an application's name or webhook URLs; running servers use the new URLs for
    every webhook from now on.

    Webhooks not delivered yet (waiting, or retrying against the old URL) go to the new
    URL too, at once; a delivery attempt already under way finishes against the old one.
    URLs are checked as `apps create` checks them."""
    from opendispatch.auth.provisioning import change_application
    from opendispatch.store.records import ApplicationChange
    from opendispatch.timefmt import now_ms
    from opendispatch.webhooks.destinations import AddressPolicy

    if name is None and status_url is None and final_report_url is None:
        raise click.UsageError("give at least one of --name, --status-url, --final-report-url")
    if name is not None and not name.strip():
        raise click.BadParameter("must not be empty", param_hint="--name")
    change = ApplicationChange(name=name, status_url=status_url, final_report_url=final_report_url)
    policy = AddressPolicy(allow_private=allow_private_webhooks)

    async def update(store: Any) -> Any:
        updated, warnings = await change_application(
            store, application_id, change, address_policy=policy, now_ms=now_ms()
        )
        if updated is not None:
            await store.notify([f"applications:{application_id}", "webhooks"])
        return updated, warnings

    updated, warnings = run(_checked_urls_first(database, update, change, policy))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if updated is None:
        raise click.ClickException(f"no application {application_id}")
    app = updated.application
    fields = {
        "application_id": app.application_id,
        "name": app.name,
        "api_key": app.api_key,
        "status_url": app.status_url,
        "final_report_url": app.final_report_url,
        "mode": "live" if app.live else "sandbox",
        "webhooks_moved": updated.webhooks_moved,
    }
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    click.echo(f"Application {app.application_id} updated.")
    for key in ("name", "status_url"):
        click.echo(f"{key + ':':18} {fields[key]}")
    click.echo(f"{'final_report_url:':18} {app.final_report_url or '(the status URL)'}")
    if updated.webhooks_moved:
        click.echo(f"{updated.webhooks_moved} webhooks not delivered yet now go to the new URL.")


async def _checked_urls_first(
    database: str,
    use: Callable[[Any], Coroutine[Any, Any, T]],
    change: ApplicationChange,
    policy: AddressPolicy,
) -> T:
    """URLs are refused before the database is touched (as `apps create` does)."""
    from opendispatch.auth.provisioning import check_webhook_urls

    await check_webhook_urls(
        {"--status-url": change.status_url, "--final-report-url": change.final_report_url}, policy
    )
    return await with_store(database, use)


@apps.command("rotate-secret")
@click.argument("application_id")
@click.option(
    "--grace",
    type=click.IntRange(0, 30 * 86_400),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="How long the old secret keeps working beside the new one (0: it stops now).",
)
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def apps_rotate_secret(application_id: str, grace: int, database: str, as_json: bool) -> None:
    """Give an application a new API secret (printed once; only its hash is kept).

    The old secret keeps working for --grace seconds, so clients can move to the new one
    without a refused request; then it is refused (401). Running servers accept the new one
    at once. The signature secret and the RSA key (JWT auth) do not change."""
    from opendispatch.auth.provisioning import rotate_api_secret
    from opendispatch.timefmt import now_ms

    async def rotate(store: Any) -> Any:
        rotated = await rotate_api_secret(store, application_id, grace_s=grace, now_ms=now_ms())
        if rotated is not None:
            await store.notify([f"applications:{application_id}"])
        return rotated

    rotated = run(with_store(database, rotate))
    if rotated is None:
        raise click.ClickException(f"no application {application_id}")
    fields = rotated.as_json()
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    click.echo("New API secret. It is shown only once; store it now.\n")
    for key in ("application_id", "api_key", "api_secret"):
        click.echo(f"{key + ':':18} {fields[key]}")
    until = fields["previous_secret_valid_until"]
    click.echo(
        "\nThe old secret no longer works."
        if until is None
        else f"\nThe old secret keeps working until {until} ({grace} s), then it is refused."
    )


@apps.command("delete")
@click.argument("application_id")
@click.option(
    "--purge",
    is_flag=True,
    help="Delete its workflows, messages and webhooks too (without it they are kept, for "
    "audit, until --retention-days expires them). Also purges an application deleted "
    "before without it.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def apps_delete(application_id: str, purge: bool, yes: bool, database: str, as_json: bool) -> None:
    """Delete an application: its credentials are refused at once, its running workflows end
    (in `error`, without a final report), the sends they had not made yet are never made,
    its webhooks not delivered yet are dropped, and a live application's provider routes
    are removed."""
    from opendispatch.providers.sandbox import SandboxLog
    from opendispatch.timefmt import now_ms

    found = run(with_store(database, lambda store: store.get_application(application_id)))
    if found is None and not purge:
        raise click.ClickException(f"no application {application_id}")
    if not yes:
        what = f"application {application_id}" + (f" ({found.name})" if found else "")
        data = "delete its data" if purge else "keep its data (for audit)"
        click.confirm(
            f"Delete {what}? Its credentials stop working, its running workflows end and its "
            f"webhooks not delivered yet are dropped; {data}.",
            abort=True,
            err=True,
        )

    async def delete(store: Any) -> Any:
        if purge:
            await SandboxLog(store.connector).forget_application(application_id)
        deleted = await store.delete_application(application_id, purge=purge, now_ms=now_ms())
        if deleted is not None:
            await store.notify([f"applications:{application_id}"])
        return deleted

    deleted = run(with_store(database, delete))
    if deleted is None:
        raise click.ClickException(f"no application {application_id}")
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(deleted), indent=2))
        return
    click.echo(
        f"Deleted application {application_id}: its credentials no longer work. Ended: "
        f"{deleted.workflows_ended} running workflows; cancelled: {deleted.sends_cancelled} "
        f"messages not sent yet; dropped: {deleted.webhooks_dropped} webhooks not delivered yet."
    )
    click.echo(
        "Its data was deleted."
        if purge
        else "Its data is kept until retention deletes it (`apps delete --purge` deletes it now)."
    )


@apps.command("route")
@click.argument("application_id")
@click.option(
    "--channel",
    type=click.Choice([channel.value for channel in Channel]),
    help="The channel to route (without it: show the application's routes).",
)
@click.option(
    "--providers",
    "provider_names",
    help="Provider accounts, comma-separated, in the order they are tried "
    "(e.g. twilio-main,vonage-backup).",
)
@click.option("--clear", is_flag=True, help="Remove the channel's route.")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def apps_route(
    application_id: str,
    channel: str | None,
    provider_names: str | None,
    clear: bool,
    database: str,
    as_json: bool,
) -> None:
    """Route a live application's channel to provider accounts, or show its routes.

    The first provider carries the message; the next is tried when it is unavailable or
    refuses for a reason of its own (credentials, quota, throttling), before the workflow
    fails over to its next message. Servers see a change within 5 seconds."""
    from opendispatch.providers.registry import KINDS

    if channel is None and (provider_names is not None or clear):
        raise click.UsageError("--providers and --clear need --channel")
    if channel is not None and (provider_names is None) == (not clear):
        raise click.UsageError("give --providers NAME[,NAME...] or --clear with --channel")

    async def route(store: Any) -> list[Any]:
        live = await store.application_is_live(application_id)
        if live is None:
            raise click.ClickException(f"no application {application_id}")
        if channel is not None:
            if not live:
                raise click.ClickException(
                    f"application {application_id} is a sandbox application: everything it "
                    "sends goes to the sandbox. Create a live one with `apps create --live`."
                )
            names = [] if clear else _names(provider_names or "")
            for name in names:
                account = await store.get_provider_account(name)
                if account is None:
                    raise click.ClickException(
                        f"no provider account {name!r} (see `opendispatch providers list`)"
                    )
                kind = KINDS.get(account.kind)
                if kind is None or channel not in kind.channels:
                    carried = ", ".join(sorted(kind.channels)) if kind else "nothing"
                    raise click.ClickException(
                        f"{name} is a {account.kind} account, which cannot carry {channel} "
                        f"(it carries {carried})"
                    )
            await store.set_route(application_id, channel, names)
        routes: list[Any] = await store.list_routes(application_id)
        return routes

    routes = run(with_store(database, route))
    rows = [{"channel": r.channel, "providers": list(r.providers)} for r in routes]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"{application_id} has no routes.")
        return
    for row in rows:
        click.echo(f"{row['channel']:18} {' -> '.join(row['providers'])}")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise click.UsageError("--providers needs at least one provider account name")
    if len(set(names)) != len(names):
        raise click.UsageError("--providers names a provider account twice")
    return names
