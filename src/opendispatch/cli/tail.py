"""`opendispatch tail`: new events, one line each, as they happen, until Ctrl-C.

    2026-11-30T18:13:57.950Z accepted  01a22da9-...  application 5f0c...  whatsapp -> sms
    2026-11-30T18:13:57.969Z status    01a22da9-...  step 0 whatsapp submitted  via sandbox
    2026-11-30T18:14:12.957Z failover  01a22da9-...  step 0 whatsapp -> step 1 sms  (deadline)
    2026-11-30T18:14:13.962Z ended     01a22da9-...  completed  usage 0.0210 EUR
    2026-11-30T18:14:14.100Z webhook   01a22da9-...  final report completed: attempt 1 failed ...

Read from the database (`store.activity`), so it follows every server on it, on SQLite as
on PostgreSQL, without a server's help: a few indexed reads per `--interval`. Each line
carries the time the event happened; lines come in the order they are found, which for
events a poll apart is the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from opendispatch.cli.common import database_option, store_for
from opendispatch.cli.following import SettlingCursor, read_new
from opendispatch.errors import OpenDispatchError

__all__ = ["tail"]

_SETTLE_MS = 2_000  # how late a row may commit after a later one (see `cli.following`)


@click.command()
@click.option("--application", "application_id", help="Only this application's events.")
@click.option(
    "--interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    metavar="SECONDS",
    help="How often to look for new events.",
)
@database_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def tail(application_id: str | None, interval: float, database: str, as_json: bool) -> None:
    """Follow new events live: workflows accepted, statuses, failovers, final reports and
    failed webhook deliveries, one line each, until interrupted (Ctrl-C)."""
    store = store_for(database)
    try:
        asyncio.run(_follow(store, application_id, interval, as_json))
    except (KeyboardInterrupt, BrokenPipeError):
        pass  # how it is meant to end (Ctrl-C, or `| head` has read enough): quietly
    except OpenDispatchError as exc:  # the store's errors, said in one line
        raise click.ClickException(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class _Event:
    at_ms: int  # when it happened
    kind: str  # accepted | status | failover | ended | webhook
    dispatch_uuid: str
    text: str
    fields: dict[str, Any]


async def _follow(store: Any, application_id: str | None, interval: float, as_json: bool) -> None:
    from opendispatch.ids import uuid7_time_prefix
    from opendispatch.store.activity import ActivityReader
    from opendispatch.timefmt import now_ms

    await store.open()
    try:
        reader = ActivityReader(store.connector)
        started = now_ms()
        workflows: SettlingCursor[str] = SettlingCursor(uuid7_time_prefix(started))
        webhooks: SettlingCursor[int] = SettlingCursor(await reader.webhooks_end())
        failures: SettlingCursor[int] = SettlingCursor(started)
        ends: SettlingCursor[int] = SettlingCursor(started, settle_ms=_SETTLE_MS)
        ends_since = started
        click.echo("following new events (Ctrl-C to stop)", err=True)
        while True:
            polled_ms = now_ms()
            # Ends are read first, so one committed between the two reads shows with its
            # last status in the next poll, and listed last, so it follows a status of the
            # same millisecond.
            ended = await _ends(reader, application_id, ends, since_ms=ends_since)
            found = await _poll(store, reader, application_id, workflows, webhooks, failures)
            found += ended
            # An end before the previous poll (less the time commits may come late) was
            # read then: a row read again for it now changed later (a late status).
            ends_since = max(started, polled_ms - _SETTLE_MS)
            for event in sorted(found, key=lambda event: event.at_ms):  # stable: ties as found
                _print(event, as_json)
            await asyncio.sleep(interval)
    finally:
        with contextlib.suppress(Exception):
            await store.close()


async def _poll(
    store: Any,
    reader: Any,
    application_id: str | None,
    workflows: SettlingCursor[str],
    webhooks: SettlingCursor[int],
    failures: SettlingCursor[int],
) -> list[_Event]:
    from opendispatch.timefmt import now_ms

    now = now_ms()
    lines: list[_Event] = []
    accepted = await _read_new(
        workflows,
        reader.workflows,
        application_id,
        position_of=lambda row: row.dispatch_uuid,
        key_of=lambda row: row.dispatch_uuid,
        now_ms=now,
    )
    for row in accepted:
        steps = " -> ".join(row.channels) or "?"
        lines.append(
            _Event(
                row.created_at_ms,
                "accepted",
                row.dispatch_uuid,
                f"application {row.application_id}  {steps}",
                {"application_id": row.application_id, "channels": list(row.channels)},
            )
        )
    events = await _read_new(
        webhooks,
        reader.webhooks,
        application_id,
        position_of=lambda row: row.id,
        key_of=lambda row: row.id,
        now_ms=now,
    )
    for event in events:
        lines += await _webhook_events(store, event)
    failed = await _read_new(
        failures,
        reader.failed_webhooks,
        application_id,
        position_of=lambda row: row.failed_at_ms,
        key_of=lambda row: (row.id, row.failed_at_ms, row.state),
        now_ms=now,
    )
    for row in failed:
        lines.append(_failure(row))
    return lines


async def _ends(
    reader: Any, application_id: str | None, cursor: SettlingCursor[int], *, since_ms: int
) -> list[_Event]:
    """The ends of workflows that have no final report to show them (the Messages API v1's),
    read from their rows: those that ended at `since_ms` or later. An ended workflow's row
    changes again when a late status arrives (shown as a status); its end is not shown twice."""
    from opendispatch.runtime.shell import decode_state
    from opendispatch.timefmt import now_ms
    from opendispatch.webhooks.payloads import CURRENCY, total_price

    now = now_ms()
    rows = await _read_new(
        cursor,
        reader.ended_without_report,
        application_id,
        position_of=lambda row: row.updated_at_ms,
        key_of=lambda row: row.dispatch_uuid,
        now_ms=now,
    )
    lines = []
    for row in rows:
        state = decode_state(row.state_json)
        ended = state.ended_at_ms
        if ended is None or ended < since_ms:
            continue
        usage = {"price": total_price(m.price for m in state.messages), "currency": CURRENCY}
        text = f"{row.status}  usage {usage['price']} {usage['currency']}"
        fields = {"status": row.status, "usage": usage}
        lines.append(_Event(ended, "ended", row.dispatch_uuid, text, fields))
    return lines


async def _read_new(
    cursor: SettlingCursor[Any],
    read: Callable[..., Awaitable[Sequence[Any]]],
    application_id: str | None,
    *,
    position_of: Callable[[Any], Any],
    key_of: Callable[[Any], Hashable],
    now_ms: int,
) -> list[Any]:
    """`read_new` over one of the activity reader's methods, for one application or all."""
    return await read_new(
        cursor,
        lambda position, limit: read(position, application_id=application_id, limit=limit),
        position_of=position_of,
        key_of=key_of,
        now_ms=now_ms,
    )


async def _webhook_events(store: Any, event: Any) -> list[_Event]:
    """A status (after the failover it shows, if it is a later step's first) or an end."""
    from opendispatch.timefmt import parse_iso_ms

    body = json.loads(event.payload)
    at_ms = parse_iso_ms(body["timestamp"])
    if event.kind == "final_report":
        usage = body.get("usage") or {}
        text = f"{event.status}  usage {usage.get('price')} {usage.get('currency')}"
        ended = {"status": event.status, "usage": usage}
        return [_Event(at_ms, "ended", event.dispatch_uuid, text, ended)]
    lines = []
    if event.step and event.status in ("submitted", "rejected"):
        failover = await _failover(store, event)
        if failover is not None:
            lines.append(failover)
    text = f"step {event.step} {event.channel} {event.status}"
    fields: dict[str, Any] = {
        "step": event.step,
        "channel": event.channel,
        "status": event.status,
        "message_uuid": event.message_uuid,
    }
    if event.provider:
        text += f"  via {event.provider}"
        fields["provider"] = event.provider
    error = body.get("error")
    if error:
        # The Dispatch API's `{code, reason}`, or the Messages API v1's problem object, whose
        # `title` is the code and `detail` the reason: shown alike.
        code = error.get("code", error.get("title"))
        reason = error.get("reason", error.get("detail"))
        text += f"  error {code}: {reason}"
        fields["error"] = {"code": code, "reason": reason}
    lines.append(_Event(at_ms, "status", event.dispatch_uuid, text, fields))
    return lines


async def _failover(store: Any, event: Any) -> _Event | None:
    """The failover that sent this later step's message, if this is its first status: its
    time is when the message was sent; why, the step before says (its rejection, its
    undeliverable, or else its deadline)."""
    from opendispatch.engine.model import MessageStatus
    from opendispatch.runtime.shell import decode_state

    loaded = await store.load_workflow(event.dispatch_uuid)
    if loaded is None or loaded.state_json is None:
        return None
    state = decode_state(loaded.state_json)
    message = state.message(event.message_uuid)
    if message is None or not message.history or message.history[0].status != event.status:
        return None  # a later status (a rejection after `submitted`), not its first
    before = next((m for m in state.messages if m.step == message.step - 1), None)
    reason = "deadline"
    if before is not None and before.status in (
        MessageStatus.REJECTED,
        MessageStatus.UNDELIVERABLE,
    ):
        reason = before.status.value
    frm, to = message.step - 1, message.step
    text = (
        f"step {frm} {state.steps[frm].channel} -> step {to} {state.steps[to].channel}  ({reason})"
    )
    fields = {"from_step": frm, "to_step": to, "reason": reason}
    return _Event(message.sent_at_ms, "failover", event.dispatch_uuid, text, fields)


def _failure(row: Any) -> _Event:
    from opendispatch.timefmt import iso_ms

    about = (
        f"step {row.step} {row.status}"
        if row.kind == "message_status"
        else f"final report {row.status}"
    )
    answer = (
        f"answered {row.last_status_code}" if row.last_status_code else (row.last_error or "failed")
    )
    if row.last_status_code and row.last_error and row.last_error != f"HTTP {row.last_status_code}":
        answer += f" ({row.last_error})"
    if row.state == "dead":
        outcome = f"dead after {row.attempts} attempt{'s' if row.attempts != 1 else ''}: {answer}"
    else:
        outcome = (
            f"attempt {row.attempts} failed: {answer}; next try {iso_ms(row.next_attempt_at_ms)}"
        )
    fields = {
        "kind": row.kind,
        "status": row.status,
        "state": row.state,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
    }
    return _Event(row.failed_at_ms, "webhook", row.dispatch_uuid, f"{about}: {outcome}", fields)


def _print(event: _Event, as_json: bool) -> None:
    from opendispatch.timefmt import iso_ms

    at = iso_ms(event.at_ms)
    if as_json:
        head = {"time": at, "event": event.kind, "dispatch_uuid": event.dispatch_uuid}
        click.echo(json.dumps({**head, **event.fields}))
    else:
        click.echo(f"{at} {event.kind:<9} {event.dispatch_uuid}  {event.text}")
