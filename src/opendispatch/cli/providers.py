"""`opendispatch providers`: the provider accounts messages are sent through, and
`opendispatch secret-key`, which makes the key their secrets are encrypted with."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from opendispatch.cli.common import database_option, run, with_store
from opendispatch.timefmt import iso_ms

__all__ = ["providers", "secret_key"]


@click.group()
def providers() -> None:
    """Register provider accounts (Vonage, Twilio, WhatsApp Cloud, Telnyx)."""


@providers.command("add")
@click.argument("name")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["vonage", "twilio", "whatsapp-cloud", "telnyx"]),
    help="Which provider's API the account speaks.",
)
@click.option(
    "--base-url",
    help="The provider API's scheme, host and port (default: the real one; tests point it "
    "at a local fake, http://127.0.0.1:PORT).",
)
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting (repeatable); KEY_file=PATH reads the value from a file. "
    "See `providers kinds` for each kind's keys.",
)
@click.option("--replace", is_flag=True, help="Replace an account of the same name.")
@database_option
def providers_add(
    name: str,
    kind: str,
    base_url: str | None,
    pairs: tuple[str, ...],
    replace: bool,
    database: str,
) -> None:
    """Register a provider account. Secrets are encrypted with OPENDISPATCH_SECRET_KEY
    before they are stored, and never shown again."""
    from opendispatch.providers.accounts import new_account
    from opendispatch.providers.secret_box import SecretBox
    from opendispatch.timefmt import now_ms

    values = _settings(pairs)
    try:
        record = new_account(
            name=name,
            kind_name=kind,
            base_url=base_url,
            values=values,
            secret_box=SecretBox.from_environment(os.environ),
        )
    except Exception as exc:  # ConfigurationError, with the keys named
        raise click.ClickException(str(exc)) from None

    async def save(store: Any) -> bool:
        saved: bool = await store.save_provider_account(record, replace=replace, now_ms=now_ms())
        return saved

    if not run(with_store(database, save)):
        raise click.ClickException(
            f"a provider account named {name!r} exists; give --replace to replace it"
        )
    click.echo(f"{'replaced' if replace else 'added'} {kind} account {name} ({record.base_url})")


@providers.command("list")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def providers_list(database: str, as_json: bool) -> None:
    """Provider accounts with their settings; secrets show only as set."""
    from opendispatch.providers.registry import KINDS

    async def load(store: Any) -> tuple[list[Any], list[Any]]:
        return await store.list_provider_accounts(), await store.list_routes()

    accounts, routes = run(with_store(database, load))
    rows = []
    for account in accounts:
        kind = KINDS.get(account.kind)
        hashed = {s.key for s in kind.settings if s.hashed} if kind else set()
        settings = {
            key: ("(set)" if key in hashed else value) for key, value in account.settings.items()
        }
        secret_keys = [s.key for s in kind.settings if s.secret] if kind else []
        rows.append(
            {
                "name": account.name,
                "kind": account.kind,
                "base_url": account.base_url,
                "settings": settings,
                # Which secret keys exist is not itself secret: which ones were given is.
                "secrets": "(sealed)" if account.sealed_secrets else None,
                "secret_keys": secret_keys,
                "routed_by": [
                    f"{r.application_id}/{r.channel}" for r in routes if account.name in r.providers
                ],
                "updated_at": iso_ms(account.updated_at_ms),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No provider accounts: opendispatch providers add NAME --kind ... --set ...")
        return
    for row in rows:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(row["settings"].items()))
        click.echo(f"{row['name']}  {row['kind']}  {row['base_url']}  {shown}")
        if row["routed_by"]:
            click.echo(f"    routes: {', '.join(row['routed_by'])}")


@providers.command("remove")
@click.argument("name")
@database_option
def providers_remove(name: str, database: str) -> None:
    """Remove a provider account (refused while a route uses it)."""

    async def remove(store: Any) -> tuple[bool, list[tuple[str, str]]]:
        if await store.get_provider_account(name) is None:
            return False, []
        return True, await store.remove_provider_account(name)

    existed, using = run(with_store(database, remove))
    if not existed:
        raise click.ClickException(f"no provider account {name!r}")
    if using:
        listed = ", ".join(f"{app} ({channel})" for app, channel in using)
        raise click.ClickException(
            f"{name} is still routed by {listed}; change those routes first "
            "(opendispatch apps route APPLICATION_ID --channel CHANNEL --providers ...)"
        )
    click.echo(f"removed {name}")


@providers.command("rotate-secrets")
@database_option
def providers_rotate_secrets(database: str) -> None:
    """Re-encrypt every account's secrets with the first key of OPENDISPATCH_SECRET_KEY.

    To rotate: put the new key first and keep the old one after it (comma-separated) on
    every process, run this, then drop the old key."""
    from opendispatch.providers.secret_box import SecretBox
    from opendispatch.timefmt import now_ms

    box = SecretBox.from_environment(os.environ)

    async def rotate(store: Any) -> int:
        count = 0
        for account in await store.list_provider_accounts():
            if account.sealed_secrets is None:
                continue
            resealed = box.reseal(account.sealed_secrets, account=account.name)
            await store.save_provider_account(
                type(account)(
                    name=account.name,
                    kind=account.kind,
                    base_url=account.base_url,
                    settings=account.settings,
                    sealed_secrets=resealed,
                    created_at_ms=account.created_at_ms,
                    updated_at_ms=account.updated_at_ms,
                ),
                replace=True,
                now_ms=now_ms(),
            )
            count += 1
        return count

    count = run(with_store(database, rotate))
    click.echo(f"re-encrypted the secrets of {count} account{'s' if count != 1 else ''}")


@providers.command("kinds")
def providers_kinds() -> None:
    """Each kind's settings, channels and default rate."""
    from opendispatch.providers.registry import COMMON_SETTINGS, KINDS

    for kind in KINDS.values():
        click.echo(
            f"{kind.name}: carries {', '.join(sorted(kind.channels))}; "
            f"default rate {kind.default_rate_per_s:g}/s; API {kind.default_base_url}"
        )
        for setting in (*kind.settings, *COMMON_SETTINGS):
            flags = [
                flag
                for flag, on in (
                    ("required", setting.required),
                    ("secret", setting.secret),
                    ("hashed", setting.hashed),
                )
                if on
            ]
            extra = f" ({', '.join(flags)})" if flags else ""
            click.echo(f"    {setting.key}{extra}: {setting.description}")
        for note in kind.notes:
            click.echo(f"    note: {note}")


@click.command("secret-key")
def secret_key() -> None:
    """Print a new key for OPENDISPATCH_SECRET_KEY (keep it safe: without it, stored
    provider secrets cannot be opened)."""
    from opendispatch.providers.secret_box import new_secret_key

    click.echo(new_secret_key())


def _settings(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--set")
        if key.endswith("_file"):
            key = key.removesuffix("_file")
            try:
                value = Path(value).read_text()
            except OSError as exc:
                raise click.BadParameter(
                    f"cannot read {value}: {exc.strerror}", param_hint="--set"
                ) from None
        if key in values:
            raise click.BadParameter(f"{key} is given twice", param_hint="--set")
        values[key] = value
    if not values:
        print("note: no --set given; most kinds need credentials", file=sys.stderr)
    return values
