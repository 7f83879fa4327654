"""Starting the server in the order that fails soonest, and a failed start in one line.

1. **The port is bound first.** A second server started by mistake on a taken port must fail
   before it opens, creates or migrates a database (uvicorn alone binds only after the app's
   start-up has run, so a port in use used to be found after the migrations).
2. **The app starts** (store opened and migrated, workers started) on the event loop uvicorn
   then runs on, before uvicorn takes the socket; its lifespan start-up is then a no-op.
3. **uvicorn serves the bound socket** until SIGINT or SIGTERM.

Whatever stops a start (settings, the port, the database, the secret key) is reported by
`cannot_start`: one line on stderr, `opendispatch: cannot start: <what failed>: <what to
do>`, and exit status 1 (`EXIT_CANNOT_START`); the traceback too only at `--log-level debug`.
A flag click itself refuses is a usage error, status 2.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import click

from opendispatch.errors import ConfigurationError, OpenDispatchError
from opendispatch.logs import escape_controls

if TYPE_CHECKING:
    import uvicorn

    from opendispatch.api.app import DispatchApp

__all__ = ["EXIT_CANNOT_START", "bind", "cannot_start", "serve_app"]

EXIT_CANNOT_START = 1


def bind(host: str, port: int) -> socket.socket:
    """The listening address, bound (not yet listening) the way uvicorn binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ConfigurationError(_bind_problem(host, port, exc)) from exc
    return listener


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"--host {host!r} is not an address or a name that resolves ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use (another server?): stop it, or choose another "
            "with --port"
        )
    if exc.errno == errno.EACCES:
        return (
            f"not allowed to listen on port {port} on {host} (ports below 1024 need "
            "privileges): choose another with --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: choose another with --host"
    return f"cannot listen on port {port} on {host} ({exc.strerror or exc})"


def serve_app(
    app: DispatchApp,
    config: uvicorn.Config,
    listener: socket.socket,
    on_started: Callable[[], None],
) -> None:
    """Start `app`, call `on_started`, then serve `listener` until a signal stops it."""
    import uvicorn
    import uvloop

    async def main() -> None:
        await app.startup()
        on_started()
        await uvicorn.Server(config).serve(sockets=[listener])

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def cannot_start(exc: BaseException, *, debug: bool) -> NoReturn:
    """Say why in one line (ours say what to do; anything else is named by its type), the
    traceback before it only when debugging, and exit with `EXIT_CANNOT_START`."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, OpenDispatchError):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc} (--log-level debug shows where)"
    click.echo(f"opendispatch: cannot start: {escape_controls(reason)}", err=True)
    sys.exit(EXIT_CANNOT_START)
