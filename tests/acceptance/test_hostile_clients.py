"""Clients that attack the transport, before any authentication: a real server process and
raw sockets, since what is tested is what the server does with bytes no HTTP client sends.

Huge or countless header fields, heads and bodies that never end, idle sockets by the
thousand, chunked bodies past the limit, garbage: each is refused with little memory and
time spent, logged (once per kind per interval), and the server keeps answering others.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import TestDatabase
from tests.support import AppCredentials, ServerProcess, create_app_with_cli, two_step_workflow

pytestmark = pytest.mark.slow

# A bound on every blocking read: a server that never answers fails the test, not hangs it.
_SAFETY_TIMEOUT_S = 30.0


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=_SAFETY_TIMEOUT_S)
    sock.settimeout(_SAFETY_TIMEOUT_S)
    return sock


def _send_all_you_can(sock: socket.socket, *parts: bytes) -> None:
    """Send until done or until the server has closed on us (it may refuse mid-way)."""
    try:
        for part in parts:
            sock.sendall(part)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _health_on(
    sock: socket.socket, head: bytes = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
) -> int:
    """GET /health on a kept-alive connection: the status, after reading the whole answer."""
    sock.sendall(head)
    received = b""
    while b'{"status":' not in received or not received.endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return int(received.split(b" ", 2)[1])


def _problem(raw: bytes) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one raw HTTP response, checking Vonage's error shape."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower()
    problem = json.loads(body)
    assert set(problem) == {"type", "title", "detail", "instance", "invalid_parameters"}
    assert problem["type"].startswith("https://www.nexmo.com/messages/Errors#")
    return status, problem


def _rss_kib(server: ServerProcess) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1])


def _healthy(server: ServerProcess) -> bool:
    return httpx.get(f"{server.url}/health", timeout=_SAFETY_TIMEOUT_S).status_code == 200


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, AppCredentials]]:
    """One server for the tests that can share it: short timeouts, 20 header fields at most."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    database = f"sqlite:///{tmp_path / 'hostile.db'}"
    credentials = create_app_with_cli(database)
    server = ServerProcess(database, cwd=tmp_path).start(
        "--max-header-fields", "20",
        "--header-timeout", "1",
        "--body-timeout", "1",
        "--keep-alive-timeout", "1",
    )  # fmt: skip
    yield server, credentials
    server.stop()


def test_huge_headers_are_431_without_the_server_holding_them(served: Any):
    server, _ = served
    rss_before = _rss_kib(server)
    answers = []
    for _ in range(4):  # the attack: 4 connections, each sending a 60 MB header
        with _connect(server) as sock:
            start = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
            _send_all_you_can(sock, start, *[b"a" * (1 << 20)] * 60, b"\r\n\r\n")
            answers.append(_read_until_closed(sock))
    for answer in answers:
        status, problem = _problem(answer)
        assert status == 431
        assert problem["title"] == "Request Header Fields Too Large"
    # Each head was dropped past 64 KiB: nowhere near the 240 MB sent.
    assert _rss_kib(server) - rss_before < 32 * 1024
    assert _healthy(server)
    assert "request head larger than 65536 bytes" in server.log()


def test_too_many_header_fields_are_431(served: Any):
    server, _ = served

    def head(count: int) -> bytes:  # Host and `count` more fields
        fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(count))
        return b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"

    with _connect(server) as sock:
        _send_all_you_can(sock, head(20))
        status, problem = _problem(_read_until_closed(sock))
    assert status == 431
    assert "more than 20 header fields" in problem["detail"]
    with _connect(server) as sock:  # 20 fields in all is fine
        assert _health_on(sock, head(19)) == 200


def test_heads_that_never_end_and_silent_connections_are_closed(served: Any):
    server, _ = served
    with _connect(server) as slowloris, _connect(server) as silent:
        _send_all_you_can(slowloris, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        assert _read_until_closed(slowloris) == b""
        assert _read_until_closed(silent) == b""
    assert _healthy(server)
    assert "request head not complete within 1 s" in server.log()


def test_a_body_that_never_ends_is_closed_and_nothing_is_stored(served: Any):
    server, credentials = served
    body = json.dumps(two_step_workflow()).encode()
    authorization = credentials.basic()["Authorization"].encode()
    with _connect(server) as sock:
        head = (
            b"POST /v0.1/dispatch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + authorization + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 1)  # one byte will never come
        )
        _send_all_you_can(sock, head + body)
        assert _read_until_closed(sock) == b""
    listed = httpx.get(f"{server.url}/v0.1/dispatch", headers=credentials.basic())
    assert listed.json()["_embedded"]["workflows"] == []
    assert "request body not complete within 1 s" in server.log()


def test_an_idle_kept_alive_connection_is_closed(served: Any):
    server, _ = served
    with _connect(server) as sock:
        assert _health_on(sock) == 200
        assert _read_until_closed(sock) == b""  # closed once idle for a second


def test_connections_beyond_the_cap_are_closed_and_the_server_stays_healthy(
    server_factory: Any,
):
    server = server_factory().start("--max-connections", "5", "--keep-alive-timeout", "60")
    held = [_connect(server) for _ in range(5)]
    try:
        for sock in held:  # each served, then kept alive: five open connections
            assert _health_on(sock) == 200
        for _ in range(3):
            with _connect(server) as extra:
                _send_all_you_can(extra, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _read_until_closed(extra) == b""
        for sock in held:  # those already in still get answers
            assert _health_on(sock) == 200
    finally:
        for sock in held:
            sock.close()
    server.wait_ready()  # answers again once the held connections are gone
    log = server.log()
    # Logged once for the three refusals, not once each.
    assert log.count("5 connections open already") == 1


def test_a_malformed_request_is_400_in_vonages_shape(served: Any):
    server, _ = served
    with _connect(server) as sock:
        _send_all_you_can(sock, b"NOT HTTP AT ALL\r\n\r\n")
        status, problem = _problem(_read_until_closed(sock))
    assert status == 400
    assert problem["title"] == "Bad Request"
    assert _healthy(server)


@pytest.mark.anyio
async def test_a_chunked_body_past_the_limit_is_413_and_nothing_is_stored(
    server_factory: Any, database: TestDatabase
):
    credentials = create_app_with_cli(database.url)
    server = server_factory(database.url).start("--max-body-bytes", "2048")
    # A valid workflow, padded with whitespace to 100 KB, in one chunk sent in one write.
    body = json.dumps(two_step_workflow()).encode() + b" " * 100_000
    authorization = credentials.basic()["Authorization"].encode()
    with _connect(server) as sock:
        _send_all_you_can(
            sock,
            b"POST /v0.1/dispatch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + authorization + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
        )
        status, problem = _problem(_read_until_closed(sock))
    assert status == 413
    assert "larger than 2048 bytes" in problem["detail"]
    async with httpx.AsyncClient(base_url=server.url, headers=credentials.basic()) as client:
        listed = await client.get("/v0.1/dispatch")
    assert listed.json()["_embedded"]["workflows"] == []
    assert await database.scalar("SELECT count(*) FROM workflows") == 0
