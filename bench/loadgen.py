"""A small HTTP/1.1 load generator: keep-alive connections, closed loop or fixed rate.

Written on raw asyncio protocols so that, on a 2-core machine shared with the server, it costs
a few microseconds per request (about as little CPU as wrk), and so the benchmarks need nothing
outside this repository. Two modes:

- closed loop (`run_closed`): N connections, each sends its next request when the previous
  answer arrives. Gives peak throughput; its latencies are mostly queueing.
- fixed rate (`run_fixed_rate`): requests are *scheduled* at a constant rate across the
  connections and latency is measured from the scheduled time, so a stalled server is
  charged for the requests it delayed (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Result", "build_request", "run_closed", "run_fixed_rate"]


def build_request(
    method: str, path: str, *, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    label: str
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000

    def line(self) -> str:
        return (
            f"{self.label:<34} {self.rate:>9,.0f}/s  p50 {self.percentile_ms(0.50):6.2f} ms  "
            f"p99 {self.percentile_ms(0.99):6.2f} ms  max {self.percentile_ms(1.0):7.2f} ms  "
            f"statuses {dict(self.statuses)}"
        )


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request outstanding."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.WriteTransport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end_of_head = self.buffer.find(b"\r\n\r\n")
        if end_of_head < 0:
            return
        head = bytes(self.buffer[:end_of_head])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        end = end_of_head + 4 + length
        if len(self.buffer) < end:
            return
        body = bytes(self.buffer[end_of_head + 4 : end])
        del self.buffer[:end]
        waiter.set_result((int(head[9:12]), body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def _connect(host: str, port: int | Sequence[int], count: int) -> list[_Connection]:
    """`count` connections, spread round robin over `port` (several servers: a balancer)."""
    loop = asyncio.get_running_loop()
    ports = [port] if isinstance(port, int) else list(port)
    connections = []
    for index in range(count):
        _, protocol = await loop.create_connection(_Connection, host, ports[index % len(ports)])
        connections.append(protocol)
    return connections


RequestFactory = Callable[[int], bytes]


async def run_closed(
    label: str,
    host: str,
    port: int | Sequence[int],
    request: RequestFactory,
    *,
    connections: int,
    seconds: float,
    keep_bodies: bool = False,
    total: int | None = None,
) -> Result:
    """Closed loop for `seconds`, or until `total` requests were sent, whichever comes first."""
    pool = await _connect(host, port, connections)
    result = Result(label, seconds)
    deadline = time.perf_counter() + seconds
    counter = 0

    async def drive(connection: _Connection) -> None:
        nonlocal counter
        while time.perf_counter() < deadline and (total is None or counter < total):
            counter += 1
            data = request(counter)
            started = time.perf_counter()
            status, body = await connection.request(data)
            result.latencies_s.append(time.perf_counter() - started)
            result.statuses[status] += 1
            if keep_bodies:
                result.bodies.append(body)

    started = time.perf_counter()
    await asyncio.gather(*(drive(connection) for connection in pool))
    result.seconds = time.perf_counter() - started
    for connection in pool:
        assert connection.transport is not None
        connection.transport.close()
    return result


async def run_fixed_rate(
    label: str,
    host: str,
    port: int | Sequence[int],
    request: RequestFactory,
    *,
    rate: float,
    connections: int,
    seconds: float,
) -> Result:
    """Offer `rate` requests/s; latency counts from each request's scheduled start.

    As in wrk2: request i is due at start + i/rate; whichever connection is free takes the
    next due request, so when the server stalls the requests it delays are charged their
    whole wait, not only their service time.
    """
    pool = await _connect(host, port, connections)
    result = Result(label, seconds)
    total = int(rate * seconds)
    interval = 1.0 / rate
    started = time.perf_counter()
    next_index = 0

    async def drive(connection: _Connection) -> None:
        nonlocal next_index
        while next_index < total:
            index = next_index
            next_index += 1
            scheduled = started + index * interval
            delay = scheduled - time.perf_counter()
            if delay > 0.0005:  # below timer resolution: send now, it is (nearly) due
                await asyncio.sleep(delay)
            status, _ = await connection.request(request(index))
            result.latencies_s.append(time.perf_counter() - scheduled)
            result.statuses[status] += 1

    await asyncio.gather(*(drive(connection) for connection in pool))
    result.seconds = time.perf_counter() - started
    for connection in pool:
        assert connection.transport is not None
        connection.transport.close()
    return result
