"""`opendispatch serve --tls-cert --tls-key`: HTTPS served by the server itself, as a real
process, to clients that verify it against a test CA (`tests/tls_ca.py`) as an SDK does.

What is checked is what a client sees: the API over https, a client that does not trust the
certificate refusing it, plain HTTP on the port getting nothing, TLS below 1.2 refused, the
transport's limits (`api/transport.py`) holding over TLS as over plain HTTP, handshake
included, and the dashboard's session cookie `Secure`. A server that cannot load its files:
tests/acceptance/test_start_failures.py.
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.dashboard import inputs_of
from tests.support import (
    AppCredentials,
    ServerProcess,
    create_app_with_cli,
    run_cli,
    two_step_workflow,
)
from tests.tls_ca import TestCA, make_test_ca

pytestmark = pytest.mark.slow

# A bound on every blocking read: a server that never closes fails the test, not hangs it.
# It is well under asyncio's own 60 s handshake timeout, which the server must not rely on.
_SAFETY_TIMEOUT_S = 30.0


@dataclass
class Https:
    server: ServerProcess
    ca: TestCA
    app: AppCredentials
    operator_token: str

    @property
    def port(self) -> int:
        return self.server.port

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.server.url}{path}", verify=self.ca.client_context())


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Https]:
    """One https server for the module, with a one-second header timeout, logging all it
    logs (nothing of the key, even so)."""
    tmp_path = tmp_path_factory.mktemp("https")
    ca = make_test_ca(tmp_path / "tls")
    database = f"sqlite:///{tmp_path / 'https.db'}"
    app = create_app_with_cli(database)
    token = run_cli("operators", "create", "alice", "--database", database).strip()
    server = ServerProcess(database, cwd=tmp_path, tls=ca).start(
        "--header-timeout", "1", "--log-level", "debug"
    )
    yield Https(server, ca, app, token)
    # SIGTERM: a clean stop, TLS connections and all (uvicorn re-raises it once stopped).
    assert server.stop() in (0, -15)
    assert "OpenDispatch stopped" in server.log()


def test_a_stop_does_not_wait_for_an_idle_keep_alive_client(tmp_path: Path) -> None:
    # An SDK keeps its pooled connection open and idle: the server must not wait asyncio's
    # 30 s for that client's half of TLS's closing handshake before it exits.
    ca = make_test_ca(tmp_path / "tls")
    server = ServerProcess(f"sqlite:///{tmp_path / 'stop.db'}", cwd=tmp_path, tls=ca).start(
        "--header-timeout", "1"
    )
    with httpx.Client(verify=ca.client_context()) as client:
        assert client.get(f"{server.url}/health").status_code == 200  # now pooled, idle
        started = time.monotonic()
        assert server.stop() in (0, -15)
        stopped_after_s = time.monotonic() - started
    assert stopped_after_s < 10, server.log()  # 30 s before; ServerProcess kills at 15 s
    assert "OpenDispatch stopped" in server.log()


def test_the_api_is_served_over_https_to_a_client_trusting_the_ca(https: Https):
    health = https.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert health.extensions["http_version"] == b"HTTP/1.1"
    # As Vonage's SDKs call it: a JWT per request, the body as JSON.
    with httpx.Client(base_url=https.server.url, verify=https.ca.client_context()) as client:
        accepted = client.post(
            "/v0.1/dispatch", json=two_step_workflow(), headers=https.app.bearer()
        )
        assert accepted.status_code == 202, accepted.text
        dispatch_uuid = accepted.json()["dispatch_uuid"]
        read = client.get(f"/v0.1/dispatch/{dispatch_uuid}", headers=https.app.basic())
        assert read.status_code == 200
        assert read.json()["dispatch_uuid"] == dispatch_uuid
    # The certificate names localhost too, as a client configured with a host name sees it.
    by_name = httpx.get(f"https://localhost:{https.port}/health", verify=https.ca.client_context())
    assert by_name.status_code == 200
    log = https.server.log()
    assert f"OpenDispatch on https://127.0.0.1:{https.port}," in log
    key_lines = https.ca.key.read_text().splitlines()[1:-1]  # between BEGIN and END
    assert not any(line in log for line in key_lines)


def test_a_client_that_does_not_trust_the_ca_refuses_the_certificate(https: Https):
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{https.server.url}/health")  # the system's CAs only
    assert https.get("/health").status_code == 200


def test_plain_http_to_the_https_port_gets_no_answer_and_no_noise(https: Https):
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{https.port}/health", timeout=_SAFETY_TIMEOUT_S)
    assert https.get("/health").status_code == 200
    log = https.server.log()
    assert "Traceback" not in log
    assert " ERROR " not in log  # a port scanner's hello is not the operator's problem


@pytest.mark.skipif(not ssl.HAS_TLSv1_1, reason="this OpenSSL cannot speak TLS 1.1 at all")
def test_tls_below_1_2_is_refused(https: Https):
    def client(highest: ssl.TLSVersion) -> ssl.SSLContext:
        context = https.ca.client_context()
        # Debian's OpenSSL refuses TLS 1.1 on the client side too unless told otherwise: this
        # client offers it, so the refusal is the server's.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = highest
        return context

    def handshake(context: ssl.SSLContext) -> str | None:
        with (
            socket.create_connection(("127.0.0.1", https.port), _SAFETY_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return tls.version()

    with warnings.catch_warnings():  # Python deprecates naming TLS 1.1 at all
        warnings.simplefilter("ignore", DeprecationWarning)
        old = client(ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError):
        handshake(old)
    assert handshake(client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"


def test_the_transport_limits_hold_over_tls_from_the_handshake_on(https: Https):
    # No handshake at all: closed after --header-timeout (1 s), not asyncio's 60 s.
    with socket.create_connection(("127.0.0.1", https.port), _SAFETY_TIMEOUT_S) as silent:
        assert silent.recv(1) == b""
    # A handshake, then no request: closed by the same header timeout, and logged.
    context = https.ca.client_context()
    with (
        socket.create_connection(("127.0.0.1", https.port), _SAFETY_TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as quiet,
    ):
        assert quiet.recv(1) == b""
    # A head with too many fields: refused by the guarded protocol, in Vonage's shape.
    fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(150))
    with (
        socket.create_connection(("127.0.0.1", https.port), _SAFETY_TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as crowded,
    ):
        crowded.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        answer = b""
        while chunk := crowded.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"nexmo.com/messages/Errors" in answer
    assert https.get("/health").status_code == 200
    log = https.server.log()
    assert "request head not complete within 1 s" in log
    assert "more than 100 header fields" in log


def test_the_dashboard_session_cookie_is_secure_over_https(https: Https):
    # A cookie jar, as a browser keeps one: it sends a Secure cookie back over https only.
    with httpx.Client(base_url=https.server.url, verify=https.ca.client_context()) as browser:
        form = browser.get("/dashboard/login")
        signed_in = browser.post(
            "/dashboard/login",
            data={
                "login_token": inputs_of(form.text)["login_token"],
                "operator": "alice",
                "token": https.operator_token,
            },
        )
        assert signed_in.status_code == 303
        set_cookies = form.headers.get_list("set-cookie") + signed_in.headers.get_list("set-cookie")
        assert set_cookies
        for cookie in set_cookies:
            assert "; Secure" in cookie, cookie
        overview = browser.get("/dashboard")
        assert overview.status_code == 200
        assert "alice" in overview.text
