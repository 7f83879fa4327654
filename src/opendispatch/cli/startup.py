"""Starting the server in the order that fails soonest, and a failed start in one line.

1. **The port is bound first.** A second server started by mistake on a taken port must fail
   before it opens, creates or migrates a database (uvicorn alone binds only after the app's
   start-up has run, so a port in use used to be found after the migrations).
2. **The app starts** (store opened and migrated, workers started) on the event loop uvicorn
   then runs on, before uvicorn takes the socket; its lifespan start-up is then a no-op.
3. **uvicorn serves the bound socket** until SIGINT or SIGTERM.

The TLS files (`--tls-cert`, `--tls-key`) are read before all of this (`cli/tls.py`): a
refused setting, like the others, stops the start before the port is taken.

**A TLS handshake is bounded like a request's head.** The transport's limits
(`api/transport.py`) start with the protocol's `connection_made`, which over TLS comes only
once the handshake is done; until then asyncio's own bound applies, 60 s, which uvicorn gives
no way to change. A client that connects and says nothing would hold its socket for a minute
where plain HTTP closes it after `--header-timeout`, so the loop gives TLS servers that
timeout for the handshake (and the head has as long again once it is done), and for the
closing handshake of each connection a stop closes (asyncio's default is 30 s).

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
from typing import TYPE_CHECKING, Any, NoReturn

import click

from opendispatch.errors import ConfigurationError, OpenDispatchError
from opendispatch.logs import escape_controls, json_line

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
    *,
    tls_handshake_timeout_s: float,
) -> None:
    """Start `app`, call `on_started`, then serve `listener` until a signal stops it (over
    TLS when `config.ssl` is set, each handshake within `tls_handshake_timeout_s`)."""
    import uvicorn

    async def main() -> None:
        await app.startup()
        on_started()
        await uvicorn.Server(config).serve(sockets=[listener])

    with asyncio.Runner(loop_factory=_loop_factory(tls_handshake_timeout_s)) as runner:
        runner.run(main())


def _loop_factory(tls_handshake_timeout_s: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop, whose TLS servers bound the handshake (uvicorn's `create_server` call passes
    no `ssl_handshake_timeout`; see the module's docstring)."""
    import uvloop

    class Loop(uvloop.Loop):
        # uvloop's servers are `AbstractServer`s, not the `asyncio.Server` typeshed promises.
        async def create_server(  # type: ignore[override]
            self, *args: Any, **kwargs: Any
        ) -> asyncio.AbstractServer:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", tls_handshake_timeout_s)
                # Closing too: at a stop each idle keep-alive connection is closed with
                # TLS's closing handshake, which asyncio waits 30 s for by default; an SDK's
                # pooled connection made every SIGTERM take 30 s.
                kwargs.setdefault("ssl_shutdown_timeout", tls_handshake_timeout_s)
            server: asyncio.AbstractServer = await super().create_server(*args, **kwargs)
            return server

    return Loop


def cannot_start(exc: BaseException, *, debug: bool, log_format: str = "text") -> NoReturn:
    """Say why in one line (ours say what to do; anything else is named by its type), the
    traceback before it only when debugging, and exit with `EXIT_CANNOT_START`. With
    `--log-format json` the line is a JSON object like every other line of the log, so a
    collector that reads JSON lines does not drop the one line that says why."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, OpenDispatchError):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc} (--log-level debug shows where)"
    line = f"opendispatch: cannot start: {escape_controls(reason)}"
    if log_format == "json":
        line = json_line("ERROR", "opendispatch", line, event="cannot start")
    click.echo(line, err=True)
    sys.exit(EXIT_CANNOT_START)
