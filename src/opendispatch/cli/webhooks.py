"""`opendispatch webhooks`: list webhooks (dead letters first of all) and deliver them again."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from opendispatch.cli.common import database_option, run, with_store
from opendispatch.cli.progress import Progress, progress_option

__all__ = ["webhooks"]


@click.group()
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
    records = run(with_store(database, lambda store: store.list_webhooks_page(which, limit=limit)))
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
@progress_option
def webhooks_replay(
    webhook_ids: tuple[str, ...],
    replay_all_matching: bool,
    state: str,
    application_id: str | None,
    dispatch_uuid: str | None,
    database: str,
    show_progress: bool,
) -> None:
    """Deliver webhooks again: the same body and webhook-id, newly signed, with a new retry
    period. Name them (WEBHOOK_ID ...) or replay all matching with --all. Many are replayed
    in batches of 500, with progress on stderr (on a terminal, or with --progress)."""
    from opendispatch.api.webhook_routes import replay_all
    from opendispatch.store.records import WebhookFilter
    from opendispatch.timefmt import now_ms

    if bool(webhook_ids) == replay_all_matching:
        raise click.UsageError("name webhooks to replay, or give --all (with filters), not both")

    async def replay(store: Any) -> tuple[int, list[str]]:
        refused = []
        count = 0
        which = WebhookFilter(
            application_id=application_id, state=state, dispatch_uuid=dispatch_uuid
        )
        total = len(webhook_ids)
        if replay_all_matching and (show_progress or sys.stderr.isatty()):
            total = await store.count_replayable_webhooks(which)
        progress = Progress("replayed", total=total, forced=show_progress)
        if replay_all_matching:
            count = await replay_all(store, which, now_ms=now_ms(), progress=progress.update)
        for done, webhook_id in enumerate(webhook_ids, 1):
            found = await store.find_webhook(webhook_id)
            if found is None:
                refused.append(f"{webhook_id}: no such webhook")
            elif await store.replay_webhook(found.id, now_ms=now_ms()):
                count += 1
            else:
                refused.append(f"{webhook_id}: it is {found.state}, already on its way")
            progress.update(done)
        progress.close()
        if count:
            await store.notify(["webhooks"])  # running servers deliver them at once
        return count, refused

    count, refused = run(with_store(database, replay))
    click.echo(f"replayed {count} webhook{'s' if count != 1 else ''}")
    for line in refused:
        click.echo(f"not replayed: {line}", err=True)
    if refused:
        sys.exit(1)
