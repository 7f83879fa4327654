"""`opendispatch status DISPATCH_UUID`: what happened to one workflow, as a timeline.

The data is the API's (`GET /v0.1/dispatch/{uuid}`, built by `api.views.workflow_view`),
read from the database for any application, so an operator answers "what happened to this
customer's code?" without the application's credentials. `--json` prints that body (with
the application's id beside it); the text adds what the body leaves to the reader: each
step's deadline (its message's send time plus its `expiry_time`, or the final-status timeout
for a last message without `failover`, as the engine counts) and why it ended.
"""

from __future__ import annotations

import json
from typing import Any

import click

from opendispatch.cli.common import database_option, run, with_store

__all__ = ["status", "timeline_lines"]


@click.command()
@click.argument("dispatch_uuid")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's view of it, as JSON.")
def status(dispatch_uuid: str, database: str, as_json: bool) -> None:
    """Show a workflow's timeline: its status, each step (channel, provider, every status
    with its time, its failover condition and deadline, usage) and every webhook with its
    attempts, state and last error."""
    from opendispatch.api.views import workflow_view
    from opendispatch.ids import is_uuid

    async def read(store: Any) -> tuple[str, dict[str, Any], int | None] | None:
        loaded = await store.load_workflow(dispatch_uuid) if is_uuid(dispatch_uuid) else None
        if loaded is None:
            return None
        webhooks = await store.list_webhooks(dispatch_uuid)
        sends = await store.send_records(dispatch_uuid)
        view = json.loads(workflow_view(loaded, webhooks, sends))
        return loaded.record.application_id, view, _final_status_timeout_s(loaded.state_json)

    found = run(with_store(database, read))
    if found is None:
        raise click.ClickException(f"no workflow {dispatch_uuid} (of any application)")
    application_id, view, final_timeout_s = found
    if as_json:
        click.echo(json.dumps({"application_id": application_id, **view}, indent=2))
        return
    for line in timeline_lines(
        view, application_id=application_id, final_timeout_s=final_timeout_s
    ):
        click.echo(line)


def _final_status_timeout_s(state_json: str | None) -> int | None:
    from opendispatch.runtime.shell import decode_state

    return None if state_json is None else decode_state(state_json).final_status_timeout_s


def timeline_lines(
    view: dict[str, Any], *, application_id: str, final_timeout_s: int | None
) -> list[str]:
    """The workflow as people read it, from the API's view of it."""
    from opendispatch.timefmt import iso_ms, parse_iso_ms
    from opendispatch.webhooks.destinations import redact_url

    usage = view["usage"]
    lines = [
        f"workflow     {view['dispatch_uuid']}  {view['status']}",
        f"application  {application_id}",
        f"created      {view['created_at']}",
        f"updated      {view['updated_at']}",
        f"usage        {usage['price']} {usage['currency']}",
    ]
    if view.get("next_deadline"):
        lines.append(f"next         {view['next_deadline']} (its current step's deadline)")
    submitted: list[dict[str, Any]] = view["workflow"]
    messages = {message["step"]: message for message in view["messages"]}
    # Imported here, not at the top: every command's start-up would pay for them.
    from opendispatch.engine.failover import TRANSITIONS, Move, Signal, place_of
    from opendispatch.runtime.shell import steps_from_request

    # What the engine's moves mean for the person reading a timeline (the rules are its own).
    moves = {Move.NEXT: "fails over", Move.FAIL: "the workflow ends in error"}
    plans = steps_from_request(submitted)
    for index, step in enumerate(submitted):
        to = step.get("to", {})
        address = to.get("number") or to.get("id") or ""
        message = messages.get(index)
        lines.append("")
        if message is None:
            lines.append(f"step {index}  {to.get('type')} to {address}: not sent")
            continue
        provider = message.get("provider") or "(no provider yet)"
        lines.append(
            f"step {index}  {message['channel']} to {address} via {provider}  "
            f"message {message['message_uuid']}"
        )
        sent_ms = parse_iso_ms(message["sent_at"])
        lines.append(f"  {'sent':<13} {message['sent_at']}")
        failover = step.get("failover")
        if failover:
            condition = failover["condition_status"]
            expiry = failover["expiry_time"]
            deadline = iso_ms(sent_ms + expiry * 1000)
            what = moves[TRANSITIONS[(Signal.EXPIRED, place_of(plans, index))]]
            lines.append(
                f"  {'condition':<13} {condition} within {expiry} s, else {what} "
                f"(deadline {deadline})"
            )
        else:
            deadline_text = (
                ""
                if final_timeout_s is None
                else f"; final-status deadline {iso_ms(sent_ms + final_timeout_s * 1000)}"
            )
            rejected = moves[TRANSITIONS[(Signal.FAILED, place_of(plans, index))]]
            lines.append(f"  {'condition':<13} delivered completes the workflow{deadline_text}")
            if rejected == moves[Move.NEXT]:  # an untimed step (the Messages API v1's)
                lines.append(f"  {'':<13} rejected or undeliverable: {rejected}")
        for entry in message["history"]:
            lines.append(f"  {entry['status']:<13} {entry['timestamp']}")
        if message.get("error"):
            error = message["error"]
            lines.append(f"  {'error':<13} {error['code']} {error['reason']}")
        if message.get("usage"):
            lines.append(
                f"  {'usage':<13} {message['usage']['price']} {message['usage']['currency']}"
            )
        send = message.get("send")
        if send and (send["state"] != "sent" or send["attempts"] > 1 or send["last_error"]):
            detail = f"{send['state']}, {send['attempts']} attempts"
            if send["last_error"]:
                detail += f", last error: {send['last_error']}"
            lines.append(f"  {'send':<13} {detail}")
        lines.append(f"  {'outcome':<13} {_outcome(view, message, index, messages)}")
    lines.append("")
    webhooks = view["webhooks"]
    lines.append(f"webhooks ({len(webhooks)})" if webhooks else "webhooks: none")
    step_of = {message["message_uuid"]: message["step"] for message in view["messages"]}
    for webhook in webhooks:
        about = (
            f"step {step_of[webhook['message_uuid']]} {webhook['status']}"
            if webhook.get("message_uuid") in step_of
            else f"final report {webhook['status']}"
        )
        attempts = f"{webhook['attempts']} attempt{'s' if webhook['attempts'] != 1 else ''}"
        parts = [f"  {about:<24} {webhook['state']:<9} {attempts}"]
        if webhook.get("last_status_code"):
            parts.append(f"last answer {webhook['last_status_code']}")
        if webhook.get("last_error"):
            parts.append(f"last error: {webhook['last_error']}")
        if webhook.get("next_attempt_at"):
            parts.append(f"next try {webhook['next_attempt_at']}")
        if webhook.get("replays"):
            parts.append(f"replayed {webhook['replays']}x")
        parts.append(f"-> {redact_url(webhook['url'])}  (webhook-id {webhook['webhook_id']})")
        lines.append("  ".join(parts))
    return lines


def _outcome(
    view: dict[str, Any], message: dict[str, Any], index: int, messages: dict[int, Any]
) -> str:
    """Why the workflow left this step, or that it is still there."""
    status = message.get("status")
    if index + 1 in messages:
        if status in ("rejected", "undeliverable"):
            return f"{status}: failed over to step {index + 1}"
        return f"condition not met by the deadline: failed over to step {index + 1}"
    if view["status"] == "in_progress":
        return "waiting" if status is None else f"{status}, waiting"
    return f"the workflow ended: {view['status']}"
