"""The README's Vonage SDK snippets, run with the real SDKs against a real server (opt-in).

The Python SDK (`vonage` 4) is a test dependency (for the Messages API v1's SDK tests), so its
snippet runs with the tests' own interpreter; `OPENDISPATCH_TEST_VONAGE_PYTHON` may name another
one. The Node snippet needs the 2.x beta, the last with a Dispatch client, which nothing else
uses: it runs only when pointed at an installation, and is skipped (saying how) otherwise:

    npm install --prefix /tmp/vonage-node @vonage/server-sdk@2.12.0-beta.3
    export OPENDISPATCH_TEST_VONAGE_NODE=/tmp/vonage-node/node_modules

Each runs the README's block as written, after the lines it assumes (`workflow`, the curl
example's array), with the README's address swapped for the test server's: plain http for
Node; for Python, which speaks only https, a TLS proxy in front of the server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.readme import blocks
from tests.support import AppCredentials, run_cli

pytestmark = pytest.mark.slow

NODE_MODULES = os.environ.get("OPENDISPATCH_TEST_VONAGE_NODE", "")
VONAGE_PYTHON = os.environ.get("OPENDISPATCH_TEST_VONAGE_PYTHON", "") or (
    sys.executable if importlib.util.find_spec("vonage") else ""
)
UUID = re.compile(r"dispatch_uuid'?\"?: ?'?\"?([0-9a-f-]{36})")


def _snippet(language: str, containing: str) -> str:
    """The one block of "Try it" in `language` that contains `containing`."""
    [text] = [
        b.text
        for b in blocks()
        if b.section == "Try it" and b.language == language and containing in b.text
    ]
    return text


def _workflow() -> list[dict[str, Any]]:
    """The array the README's curl example sends, which the SDK snippets call `workflow`."""
    [curl] = [b.text for b in blocks() if b.section == "Try it" and "-d '{" in b.text]
    body = curl.split("-d '", 1)[1].rsplit("}'", 1)[0] + "}"
    workflow: list[dict[str, Any]] = json.loads(body)["workflow"]
    return workflow


@pytest.fixture
def served_app(server_factory: Any, tmp_path: Path) -> tuple[Any, AppCredentials]:
    """A server, and an application whose `apps create --json` is saved as shop.json."""
    server = server_factory().start()
    created = run_cli(
        "apps", "create", "--name", "shop", "--status-url", "http://127.0.0.1:9/webhooks",
        "--allow-private-webhooks", "--database", server.database_url, "--json",
    )  # fmt: skip
    (tmp_path / "shop.json").write_text(created)
    return server, AppCredentials.from_json(json.loads(created))


def _accepted(output: str, server: Any, app: AppCredentials) -> None:
    """The SDK printed a dispatch_uuid, and the server has that workflow for this app."""
    found = UUID.search(output)
    assert found, output
    view = httpx.get(f"{server.url}/v0.1/dispatch/{found[1]}", headers=app.basic(), timeout=10)
    assert view.status_code == 200, view.text
    assert [m["channel"] for m in view.json()["messages"]][:1] == ["whatsapp"]


@pytest.mark.skipif(
    not NODE_MODULES or shutil.which("node") is None,
    reason="needs node and OPENDISPATCH_TEST_VONAGE_NODE (see this module's docstring)",
)
def test_the_node_sdk_snippet_creates_a_workflow(
    served_app: tuple[Any, AppCredentials], tmp_path: Path
):
    server, app = served_app
    snippet = re.sub(r"\b8080\b", str(server.port), _snippet("js", "@vonage/server-sdk"))
    script = tmp_path / "dispatch.js"
    script.write_text(f"const workflow = {json.dumps(_workflow())};\n{snippet}")
    completed = subprocess.run(
        ["node", str(script)],
        cwd=tmp_path,
        env={**os.environ, "NODE_PATH": NODE_MODULES},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    _accepted(completed.stdout, server, app)


class TlsProxy:
    """https://127.0.0.1:PORT in front of a plain-http server, with a certificate of its own CA."""

    def __init__(self, target_port: int, ca_file: Path) -> None:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(ca_file))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self._context)
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await asyncio.open_connection("127.0.0.1", self._target_port)
        await asyncio.gather(
            self._pipe(reader, upstream[1]), self._pipe(upstream[0], writer), return_exceptions=True
        )

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context), self._loop
        )
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
def tls_proxy(served_app: tuple[Any, AppCredentials], tmp_path: Path) -> Iterator[TlsProxy]:
    with TlsProxy(served_app[0].port, tmp_path / "ca.pem") as proxy:
        yield proxy


@pytest.mark.skipif(
    not VONAGE_PYTHON,
    reason="needs the vonage package (pip install -e '.[test]') or OPENDISPATCH_TEST_VONAGE_PYTHON",
)
def test_the_python_sdk_snippet_creates_a_workflow_over_https(
    served_app: tuple[Any, AppCredentials], tls_proxy: TlsProxy, tmp_path: Path
):
    server, app = served_app
    snippet = _snippet("python", "from vonage").replace(
        "dispatch.example.com", f"127.0.0.1:{tls_proxy.port}"
    )
    script = tmp_path / "dispatch.py"
    script.write_text(f"workflow = {_workflow()!r}\n{snippet}")
    completed = subprocess.run(
        [VONAGE_PYTHON, str(script)],
        cwd=tmp_path,
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    _accepted(completed.stdout, server, app)
