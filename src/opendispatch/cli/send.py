"""`opendispatch send`: a workflow from the command line, for people.

    opendispatch send --application ID --to whatsapp:447700900001 --then sms:447700900001 \\
        --text "Your code is 64873" --expiry 600 --condition read

builds the `POST /v0.1/dispatch` body a client would send and stores it as the API does
(`runtime.submission`): the command has the database, not the application's secret. A
running server is woken at once and sends the first message.

Where the flags say too little, the choices are these. `--expiry` and `--condition`, given
once, are the failover of every step but the last; given once per failover, or once per step
(the last one's is then its completion condition), they apply in order. `--from` is needed
for a live application (real providers send from a real sender); a sandbox application's
messages default to the sandbox's sender, 447700900000 (an id, `opendispatch`, where the
channel addresses senders by id). `--template` is a WhatsApp template: it is the content of the
WhatsApp steps, and `--text` that of the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import click

from opendispatch.api.request_models import Channel
from opendispatch.cli.common import database_option, run, store_for

__all__ = ["build_request", "send"]

SANDBOX_SENDER = "447700900000"
SANDBOX_SENDER_ID = "opendispatch"
_ALIASES = {"viber": Channel.VIBER_SERVICE_MSG.value}
# Which field of `to` and of `from` carries each channel's address (the API's rule).
_BY_ID_TO = frozenset({Channel.MESSENGER.value})
_BY_ID_FROM = frozenset({Channel.MESSENGER.value, Channel.VIBER_SERVICE_MSG.value})


def _channel_address(value: str) -> tuple[str, str] | None:
    """`whatsapp:447700900001` -> ("whatsapp", "447700900001"); None without a known channel."""
    channel, colon, address = value.partition(":")
    channel = _ALIASES.get(channel.lower(), channel.lower())
    if not colon or channel not in {c.value for c in Channel}:
        return None
    return channel, address


def _recipient(_: click.Context, parameter: click.Parameter, value: Any) -> Any:
    values = value if isinstance(value, tuple) else (value,)
    for item in values:
        if item is not None and _channel_address(item) is None:
            channels = ", ".join(c.value for c in Channel)
            raise click.BadParameter(
                f"{item!r} is not CHANNEL:ADDRESS (channels: {channels}; viber for "
                "viber_service_msg)",
                param=parameter,
            )
    return value


def _per_step(values: Sequence[Any], steps: int, flag: str) -> list[Any]:
    """A failover setting for each step (None: none), from how often the flag was given."""
    if not values:
        return [None] * steps
    if len(values) == steps:
        return list(values)
    if len(values) == 1:
        return [values[0]] * (steps - 1) + [None]
    if len(values) == steps - 1:
        return [*values, None]
    raise click.UsageError(
        f"{flag} is given {len(values)} times for {steps} steps: give it once (every step "
        f"but the last), once per failover ({steps - 1}) or once per step ({steps})"
    )


def build_request(
    *,
    steps: Sequence[tuple[str, str]],
    senders: Sequence[str],
    text: str | None,
    template: str | None,
    parameters: Sequence[str],
    locale: str | None,
    expiries: Sequence[int],
    conditions: Sequence[str],
    sender_required: bool,
) -> dict[str, Any]:
    """The `POST /v0.1/dispatch` body these flags describe. Whatever the API would refuse is
    left for its validation to name, in its words; only what the flags cannot say is a
    usage error here."""
    if text is None and template is None:
        raise click.UsageError("give the message: --text TEXT, or --template NAME (WhatsApp)")
    default_sender: str | None = None
    by_channel: dict[str, str] = {}
    for given in senders:
        parsed = _channel_address(given)
        if parsed is None:
            default_sender = given
        else:
            by_channel[parsed[0]] = parsed[1]
    expiry = _per_step(expiries, len(steps), "--expiry")
    condition = _per_step(conditions, len(steps), "--condition")
    workflow = []
    for index, (channel, address) in enumerate(steps):
        sender: str | None = by_channel.get(channel, default_sender)
        if sender is None:
            if sender_required:
                raise click.UsageError(
                    f"give the sender of the {channel} step: --from {channel}:ADDRESS (or "
                    "--from ADDRESS for every step). A live application's messages go "
                    "through real providers, which send from a real sender."
                )
            sender = SANDBOX_SENDER_ID if channel in _BY_ID_FROM else SANDBOX_SENDER
        message: dict[str, Any] = {
            "to": {"type": channel, ("id" if channel in _BY_ID_TO else "number"): address},
            "from": {"type": channel, ("id" if channel in _BY_ID_FROM else "number"): sender},
            "message": {"content": _content(channel, text, template, parameters)},
        }
        if locale is not None and channel == Channel.WHATSAPP.value:
            message["message"]["whatsapp"] = {"locale": locale}
        failover: dict[str, Any] = {}
        if expiry[index] is not None:
            failover["expiry_time"] = expiry[index]
        if condition[index] is not None:
            failover["condition_status"] = condition[index]
        if failover:
            message["failover"] = failover
        workflow.append(message)
    return {"template": "failover", "workflow": workflow}


def _content(
    channel: str, text: str | None, template: str | None, parameters: Sequence[str]
) -> dict[str, Any]:
    if template is not None and (channel == Channel.WHATSAPP.value or text is None):
        body: dict[str, Any] = {"name": template}
        if parameters:
            body["parameters"] = [{"default": value} for value in parameters]
        return {"type": "template", "template": body}
    return {"type": "text", "text": text}


@click.command()
@click.option("--application", "application_id", required=True, help="The application's id.")
@click.option(
    "--to",
    "first",
    required=True,
    callback=_recipient,
    metavar="CHANNEL:ADDRESS",
    help="The first message's channel and recipient: whatsapp:447700900001, "
    "messenger:1234567890 (an id), viber:447700900001 ...",
)
@click.option(
    "--then",
    "then",
    multiple=True,
    callback=_recipient,
    metavar="CHANNEL:ADDRESS",
    help="The next message, if the one before fails over (repeat for more steps).",
)
@click.option(
    "--from",
    "senders",
    multiple=True,
    metavar="[CHANNEL:]ADDRESS",
    help="The sender, for every step or for one channel (repeatable). Needed for a live "
    f"application; a sandbox one's defaults to {SANDBOX_SENDER}.",
)
@click.option("--text", help="The message's text.")
@click.option("--template", help="A WhatsApp template's name: the content of the WhatsApp steps.")
@click.option(
    "--param", "parameters", multiple=True, help="The template's next parameter (repeatable)."
)
@click.option("--locale", help="The WhatsApp template's locale, such as en-GB.")
@click.option(
    "--expiry",
    "expiries",
    multiple=True,
    type=int,
    metavar="SECONDS",
    help="How long a step may take to meet its condition before the next is sent (15-86400).",
)
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    type=click.Choice(["delivered", "read"]),
    help="What a step must reach within --expiry for the workflow to stop there.",
)
@click.option(
    "--max-messages",
    envvar="OPENDISPATCH_MAX_MESSAGES",
    default=10,
    show_default=True,
    show_envvar=True,
    help="Most messages in one workflow (as `serve`'s).",
)
@click.option(
    "--final-status-timeout",
    envvar="OPENDISPATCH_FINAL_STATUS_TIMEOUT",
    default=86_400,
    show_default=True,
    show_envvar=True,
    help="Seconds a last message without a failover may wait for its final status (as `serve`'s).",
)
@database_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print the API's 202 body: dispatch_uuid, warnings."
)
def send(
    application_id: str,
    first: str,
    then: tuple[str, ...],
    senders: tuple[str, ...],
    text: str | None,
    template: str | None,
    parameters: tuple[str, ...],
    locale: str | None,
    expiries: tuple[int, ...],
    conditions: tuple[str, ...],
    max_messages: int,
    final_status_timeout: int,
    database: str,
    as_json: bool,
) -> None:
    """Send a workflow: the first message with --to, the next ones with --then, each sent if
    the one before fails over. Prints its dispatch_uuid.

    It is stored as `POST /v0.1/dispatch` stores it (the same validation: an invalid field
    is named as the API names it, and nothing is stored), and a server running on the
    database sends it at once."""
    from opendispatch.config import Settings
    from opendispatch.errors import ConfigurationError, InvalidRequest, NotFound
    from opendispatch.providers.secret_box import SECRET_KEY_VARIABLE
    from opendispatch.runtime.assembly import build_runtime
    from opendispatch.runtime.clock import SystemClock
    from opendispatch.runtime.submission import Submitted, submit

    steps = [_channel_address(value) for value in (first, *then)]
    try:
        settings = Settings(
            database=database,
            max_messages=max_messages,
            final_status_timeout_s=final_status_timeout,
            secret_key=os.environ.get(SECRET_KEY_VARIABLE),
        )
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    store = store_for(database)
    clock = SystemClock()
    # Assembled as the server assembles it: the same shell, the same provider routes.
    runtime = build_runtime(settings, store=store, clock=clock)

    async def submitted() -> Submitted:
        await store.open()
        try:
            application = await store.get_application(application_id)
            if application is None:
                raise NotFound(f"no application {application_id}")
            body = build_request(
                steps=[step for step in steps if step is not None],
                senders=senders,
                text=text,
                template=template,
                parameters=parameters,
                locale=locale,
                expiries=expiries,
                conditions=conditions,
                sender_required=application.live,
            )
            if application.live:
                await runtime.routes.start()  # its accounts, as a starting server loads them
            return await submit(
                store,
                routes=runtime.routes,
                shell=runtime.shell,
                application_id=application_id,
                body=json.dumps(body).encode(),
                max_messages=max_messages,
                now_ms=clock.now_ms(),
            )
        finally:
            await runtime.close()
            await store.close()

    try:
        done = run(submitted())
    except click.ClickException as exc:
        cause = exc.__cause__
        if isinstance(cause, InvalidRequest):
            _refused(cause)
        if isinstance(cause, NotFound):
            raise click.ClickException(cause.detail) from None
        raise
    warnings = [{"name": w.name, "reason": w.reason} for w in done.warnings]
    for warning in warnings:  # as the API's 202 lists them
        click.echo(f"warning: {warning['name']}: {warning['reason']}", err=True)
    if as_json:
        body: dict[str, Any] = {"dispatch_uuid": done.dispatch_uuid}
        if warnings:
            body["warnings"] = warnings
        click.echo(json.dumps(body))
    else:
        click.echo(done.dispatch_uuid)


def _refused(error: Any) -> None:
    """As the API's 400 says it: its detail, then each invalid field and why."""
    click.echo(f"Error: {error.detail}", err=True)
    for parameter in error.invalid_parameters:
        click.echo(f"  {parameter.name}: {parameter.reason}", err=True)
    raise SystemExit(1)
