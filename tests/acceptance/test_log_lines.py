"""What a client sends cannot forge or garble the server's log: one event, one line."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from opendispatch.logs import escape_controls


def raw_get(port: int, target: str) -> bytes:
    """A GET with the target exactly as given (httpx would normalise it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        connection.sendall(request.encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_a_path_with_encoded_newlines_and_escapes_stays_on_one_escaped_line(
    server_factory: Any, tmp_path: Path
):
    server = server_factory().start()
    forged = "%0d%0a2026-11-30%2012:00:00,000%20ERROR%20opendispatch:%20FORGED%1b[31m%00"
    for target in (f"/v0.1/dispatch/x{forged}", f"/v0.1/nothing{forged}"):
        assert raw_get(server.port, target).split(b"\r\n", 1)[0] in (
            b"HTTP/1.1 401 Unauthorized",
            b"HTTP/1.1 404 Not Found",
        )
    server.stop()
    log = server.log()
    refusals = [line for line in log.splitlines() if "FORGED" in line]
    assert len(refusals) == 2, log  # each request on its own line, nothing on a line of its own
    for line in refusals:
        assert line.startswith("20")
        assert " INFO opendispatch.api: GET /v0.1/" in line
        assert "\\r\\n2026-11-30 12:00:00,000 ERROR opendispatch: FORGED\\x1b[31m\\x00" in line
    for raw in ("\x1b", "\x00", "\r"):
        assert raw not in log


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain text, é and 日本", "plain text, é and 日本"),
        ("a\r\nb\tc", "a\\r\\nb\\tc"),
        ("\x00\x1b\x7f", "\\x00\\x1b\\x7f"),
        ("\x85 \x9b", "\\x85 \\x9b"),  # C1: NEL and CSI
        ("\u2028\u2029", "\\u2028\\u2029"),
    ],
)
def test_control_characters_are_escaped_and_nothing_else(raw: str, escaped: str):
    assert escape_controls(raw) == escaped
