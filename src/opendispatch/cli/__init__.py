"""`opendispatch serve | send | status | tail | apps create|list|update|rotate-secret|delete
| apps route | providers add|list|remove|kinds|rotate-secrets | secret-key | webhooks
list|replay | operators create|list|delete | db upgrade|init|purge-expired`.

Every option has an `OPENDISPATCH_*` environment equivalent, named in `--help`. One module per
group of commands; this one only assembles them.
"""

from __future__ import annotations

import click

from opendispatch.cli.apps import apps
from opendispatch.cli.db import db
from opendispatch.cli.operators import operators
from opendispatch.cli.providers import providers, secret_key
from opendispatch.cli.send import send
from opendispatch.cli.serve import serve
from opendispatch.cli.status import status
from opendispatch.cli.tail import tail
from opendispatch.cli.webhooks import webhooks

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opendispatch")
def main() -> None:
    """OpenDispatch: a self-hosted server for the Vonage Dispatch API."""


main.add_command(serve)
main.add_command(send)
main.add_command(status)
main.add_command(tail)
main.add_command(apps)
main.add_command(providers)
main.add_command(secret_key)
main.add_command(webhooks)
main.add_command(operators)
main.add_command(db)
