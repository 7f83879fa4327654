"""Which HTTP client delivers webhooks fastest: httpx.AsyncClient or aiohttp.ClientSession.

The receiver runs in its own process (raw asyncio protocol + httptools + uvloop, answering a
fixed `200` with keep-alive) so that it costs as little as possible and the figures are about the
clients. Each client posts a 400-byte JSON body with the headers a signed webhook carries, from
C concurrent tasks sharing one pooled client, under uvloop as the server runs. Prints posts/s and
p50/p99 latency for each client and concurrency.

    .venv/bin/python bench/webhook_client.py                # 64 and 256 concurrent, 20,000 posts
    .venv/bin/python bench/webhook_client.py --posts 5000 --concurrency 64
    .venv/bin/python bench/webhook_client.py --client opendispatch   # the WebhookClient wrapper
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: text/plain\r\n\r\n"
_PREFIX = b'{"message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","status":"delivered","pad":"'
BODY = _PREFIX + b"x" * (400 - len(_PREFIX) - 2) + b'"}'
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "opendispatch-webhooks",
    "Authorization": "Bearer " + "e" * 300,
}


# --- receiver process -------------------------------------------------------------------------


def serve() -> None:
    """Answer every request with 200 as cheaply as possible; print the port, then run forever."""
    import httptools
    import uvloop

    class Receiver(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_complete(self) -> None:
            self.transport.write(RESPONSE)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Receiver, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    uvloop.run(main())


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/webhooks/message-status"


# --- clients ----------------------------------------------------------------------------------

Post = Callable[[], Awaitable[int]]


async def make_httpx(url: str, concurrency: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(limits=limits, timeout=5.0)

    async def post() -> int:
        response = await client.post(url, content=BODY, headers=HEADERS)
        return response.status_code

    return post, client.aclose


async def make_aiohttp(url: str, concurrency: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=5.0), auto_decompress=False
    )

    async def post() -> int:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()
            return response.status

    return post, session.close


async def make_opendispatch(
    url: str, concurrency: int
) -> tuple[Post, Callable[[], Awaitable[None]]]:
    from opendispatch.webhooks.client import WebhookClient
    from opendispatch.webhooks.destinations import AddressPolicy

    client = WebhookClient(
        max_connections=concurrency,
        max_connections_per_host=concurrency,
        address_policy=AddressPolicy(allow_private=True),
    )

    async def post() -> int:
        outcome = await client.post(url, BODY, HEADERS)
        return outcome.status_code or 0

    return post, client.close


CLIENTS = {"httpx": make_httpx, "aiohttp": make_aiohttp, "opendispatch": make_opendispatch}


async def drive(name: str, url: str, posts: int, concurrency: int) -> str:
    post, close = await CLIENTS[name](url, concurrency)
    # Warm up: open the pool's connections so the measurement is about steady state.
    await asyncio.gather(*(post() for _ in range(concurrency)))
    latencies: list[float] = []
    failures = 0
    remaining = posts

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status = await post()
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await close()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return (
        f"{name:<13} c={concurrency:<4} {len(latencies) / seconds:>8,.0f} posts/s  "
        f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  failures {failures}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--client", nargs="+", default=["httpx", "aiohttp"], choices=CLIENTS)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    receiver, url = start_receiver()
    try:
        for concurrency in args.concurrency:
            for name in args.client:
                coroutine = drive(name, url, args.posts, concurrency)
                if args.loop == "uvloop":
                    import uvloop

                    print(uvloop.run(coroutine), flush=True)
                else:
                    print(asyncio.run(coroutine), flush=True)
    finally:
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
