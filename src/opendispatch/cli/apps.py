"""`opendispatch apps`: applications, the credentials clients use."""

from __future__ import annotations

import json
from typing import Any

import click

from opendispatch.cli.common import (
    allow_private_webhooks_option,
    database_option,
    http_url,
    run,
    store_for,
)

__all__ = ["apps"]


@click.group()
def apps() -> None:
    """Create and list applications (the credentials clients use)."""


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
        store = store_for(database)
        await store.open()
        try:
            return await store.list_applications()
        finally:
            await store.close()

    applications = run(load())
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
