"""A webhook receiver that answers with exactly the bytes a test scripts, on raw sockets.

Frameworks cannot produce most of what a webhook sender must survive (an answer framed by
closing the connection, a status line then a reset, headers trickled a byte at a time, a
100 Continue before the answer), so each test writes its answer as a script:

    async def answer(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.0 200 OK\\r\\n\\r\\nthanks")
        exchange.close()

    with RawReceiver(answer) as receiver:        # 127.0.0.1, a free port, its own thread
        ... post to f"{receiver.url}/status" ...
        receiver.requests                        # every request read, in order

The script runs once per request; if it leaves the connection open, the next request on it
(keep-alive) runs the script again. `host="::1"` listens on IPv6; `tls=` serves https.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["Exchange", "RawReceiver", "RawRequest"]


@dataclass(frozen=True, slots=True)
class RawRequest:
    request_line: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    connection: int  # which connection of the receiver carried it, counting from 1


@dataclass(slots=True)
class Exchange:
    """One request, and the means to answer it byte by byte."""

    request: RawRequest
    writer: asyncio.StreamWriter
    keep_open: bool = field(default=True)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_slowly(self, data: bytes, *, every_s: float) -> None:
        """One byte at a time, `every_s` apart: a receiver that trickles its answer."""
        for index in range(len(data)):
            await self.send(data[index : index + 1])
            await asyncio.sleep(every_s)

    def close(self) -> None:
        """Close after the answer: the answer's end is the connection's end."""
        self.keep_open = False
        self.writer.close()

    def reset(self) -> None:
        """Abort with a TCP reset (RST), not an orderly close."""
        self.keep_open = False
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def hang(self) -> None:
        """Keep the connection open and never answer (until the sender gives up)."""
        await asyncio.sleep(3600)


Script = Callable[[Exchange], Awaitable[None]]


class RawReceiver:
    def __init__(
        self, script: Script, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self._script = script
        self._host = host
        self._tls = tls
        self.requests: list[RawRequest] = []
        self.server_names: list[str | None] = []  # SNI of each TLS handshake
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        if tls is not None:
            tls.sni_callback = self._record_sni

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    def _record_sni(self, _: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        self.server_names.append(name)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        number = self.connections
        try:
            while True:
                request = await _read_request(reader, number)
                if request is None:
                    break
                self.requests.append(request)
                exchange = Exchange(request, writer)
                await self._script(exchange)
                if not exchange.keep_open or writer.is_closing():
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:  # the receiver is stopping
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def __enter__(self) -> RawReceiver:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def serve() -> None:
                self._server = await asyncio.start_server(
                    self._connection, self._host, 0, ssl=self._tls
                )
                self.port = self._server.sockets[0].getsockname()[1]
                started.set()
                await self._server.serve_forever()

            try:
                loop.run_until_complete(serve())
            except (asyncio.CancelledError, RuntimeError):
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="raw-receiver", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("raw receiver did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None:

            def stop() -> None:
                server.close()
                for task in list(self._tasks):
                    task.cancel()
                for task in asyncio.all_tasks(loop):
                    task.cancel()

            loop.call_soon_threadsafe(stop)
        if self._thread is not None:
            self._thread.join(10)


async def _read_request(reader: asyncio.StreamReader, connection: int) -> RawRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the sender closed the connection between requests
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawRequest(lines[0], headers, body, connection)
