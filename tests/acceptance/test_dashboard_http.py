"""Who may use the dashboard, against a real server process: signing in and out, sessions,
CSRF on every form, the operator's actions in the log, and every link behind a proxy that
serves the dashboard at a sub-path (`--public-url https://.../od`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dashboard import (
    DashboardClient,
    Served,
    inputs_of,
    links_of,
    rejected_sms,
    serve_dashboard,
)
from tests.databases import TestDatabase
from tests.support import ServerProcess, run_cli, step

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from serve_dashboard(tmp_path)


@pytest.fixture
def with_dead_webhooks(served: Served) -> list[str]:
    """A workflow whose two webhooks the receiver refused: both dead."""
    served.dispatch(rejected_sms())
    return [w["webhook_id"] for w in served.wait_for_dead(2)]


def _replays(served: Served) -> list[int]:
    return [w["replays"] for w in served.webhooks("dead")]


def test_without_a_session_pages_send_to_sign_in_and_a_post_changes_nothing(
    served: Served, with_dead_webhooks: list[str]
) -> None:
    client = served.client()
    for path, back in [
        ("/dashboard", None),
        ("/dashboard/workflows?status=error", "%2Fworkflows%3Fstatus%3Derror"),
        ("/dashboard/webhooks", "%2Fwebhooks"),
    ]:
        response = client.get(path)
        assert response.status_code == 303, path
        expected = "/dashboard/login" + (f"?next={back}" if back else "")
        assert response.headers["location"] == expected
    refused = client.post("/dashboard/webhooks/replay", {"csrf": "anything"})
    assert refused.status_code == 303
    assert refused.headers["location"] == "/dashboard/login"
    one = client.post(f"/dashboard/webhooks/{with_dead_webhooks[0]}/replay", {"csrf": "x"})
    assert one.status_code == 303
    assert _replays(served) == [0, 0]  # still dead, never replayed


def test_a_wrong_token_is_refused_and_opens_no_session(served: Served) -> None:
    client = served.client()
    refused = client.sign_in("alice", "not-the-token")
    assert refused.status_code == 401
    assert "do not match" in refused.text
    assert "od_session" not in client.cookies
    unknown = client.sign_in("mallory", served.token)
    assert unknown.status_code == 401
    assert client.get("/dashboard").status_code == 303
    # A sign-in form that did not come from the dashboard (no login token) is refused too.
    forged = httpx.post(
        f"{served.server.url}/dashboard/login",
        data={"operator": "alice", "token": served.token},
    )
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers


def test_signing_in_gives_an_http_only_lax_cookie_for_the_dashboard_only(
    served: Served,
) -> None:
    client = served.client()
    response = client.sign_in("alice", served.token)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    (session_cookie,) = [c for c in response.headers.get_list("set-cookie") if "od_session=" in c]
    attributes = {part.strip().split("=")[0].lower() for part in session_cookie.split(";")[1:]}
    assert {"path", "httponly", "samesite", "max-age"} <= attributes
    assert "Path=/dashboard;" in session_cookie
    assert "SameSite=Lax" in session_cookie
    assert "secure" not in attributes  # the public URL is not https here
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "alice" in page.text
    # The session id is kept only as a hash: the cookie's value is nowhere in the database.
    assert client.cookies["od_session"].encode() not in Path(
        served.database_url.removeprefix("sqlite:///")
    ).read_bytes() + _wal(served)


def _wal(served: Served) -> bytes:
    wal = Path(served.database_url.removeprefix("sqlite:///") + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_a_form_without_this_sessions_csrf_token_is_refused_and_changes_nothing(
    served: Served, with_dead_webhooks: list[str]
) -> None:
    client = served.client()
    client.sign_in("alice", served.token)
    other = served.client()
    other.sign_in("alice", served.token)
    for form in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": other.csrf()}):
        refused = client.post("/dashboard/webhooks/replay", form)
        assert refused.status_code == 403, form
        assert "nothing was changed" in refused.text
        one = client.post(f"/dashboard/webhooks/{with_dead_webhooks[0]}/replay", form)
        assert one.status_code == 403
        assert client.post("/dashboard/logout", form).status_code == 403
    assert _replays(served) == [0, 0]
    assert client.get("/dashboard").status_code == 200  # the refused logout left it signed in
    # With the token, the same form replays (the receiver still refuses: dead again).
    done = client.post("/dashboard/webhooks/replay", {"csrf": client.csrf()})
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard/webhooks?replayed=2"
    served.wait_for_dead(2)
    assert sorted(_replays(served)) == [1, 1]


def test_signing_out_ends_the_session_everywhere(served: Served) -> None:
    client = served.client()
    client.sign_in("alice", served.token)
    kept = dict(client.cookies)
    response = client.post("/dashboard/logout", {"csrf": client.csrf()})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    assert "od_session" not in client.cookies  # the browser is told to drop it
    # The same cookie, kept by someone, opens nothing any more: the session is gone.
    replayed = DashboardClient(served.server.url, cookies=kept)
    assert replayed.get("/dashboard").status_code == 303


def test_operator_actions_are_logged_with_the_name_and_never_the_token(
    served: Served, with_dead_webhooks: list[str]
) -> None:
    client = served.client()
    client.sign_in("alice", "wrong-token")
    client.sign_in("alice", served.token)
    session = client.cookies["od_session"]
    (dead,) = [w for w in served.webhooks("dead") if w["webhook_id"] == with_dead_webhooks[0]]
    from_timeline = client.post(
        f"/dashboard/webhooks/{dead['webhook_id']}/replay",
        {"csrf": client.csrf(), "return_to": f"/workflows/{dead['dispatch_uuid']}"},
    )
    assert from_timeline.headers["location"] == (
        f"/dashboard/workflows/{dead['dispatch_uuid']}?notice=replayed"
    )
    served.wait_for_dead(2)
    again = client.post(
        f"/dashboard/webhooks/{dead['webhook_id']}/replay",
        {"csrf": client.csrf(), "return_to": "https://evil.example/"},
    )
    assert again.headers["location"] == "/dashboard/webhooks?notice=replayed"
    served.wait_for_dead(2)
    client.post("/dashboard/webhooks/replay", {"csrf": client.csrf()})
    client.post("/dashboard/logout", {"csrf": client.csrf()})
    served.server.stop()
    log = served.server.log()
    assert "dashboard sign-in refused for operator name 'alice'" in log
    assert "operator alice signed in" in log
    assert f"operator alice replayed webhook {with_dead_webhooks[0]}" in log
    assert re.search(r"operator alice replayed \d+ dead webhooks \(application any\)", log)
    assert "operator alice signed out" in log
    for secret in (served.token, "wrong-token", session):
        assert secret not in log


def test_cancel_needs_the_csrf_token_and_says_when_the_workflow_had_ended(served: Served) -> None:
    silent = "447700900004"  # submitted, then nothing: runs until its hour is up
    running = served.dispatch(
        [step("whatsapp", silent, {"expiry_time": 3600, "condition_status": "read"}),
         step("sms", silent)]
    )  # fmt: skip
    client = served.client()
    client.sign_in("alice", served.token)
    cancel = f"/dashboard/workflows/{running}/cancel"
    for form in ({}, {"csrf": "0" * 64}):
        assert client.post(cancel, form).status_code == 403
    assert served.workflow(running)["status"] == "in_progress"
    done = client.post(cancel, {"csrf": client.csrf()})
    assert done.status_code == 303
    assert done.headers["location"] == f"/dashboard/workflows/{running}?notice=cancelled"
    assert served.workflow(running)["status"] == "cancelled"
    again = client.post(cancel, {"csrf": client.csrf()})
    assert again.headers["location"] == f"/dashboard/workflows/{running}?notice=ended"
    page = client.get(again.headers["location"])
    assert "The workflow had already ended: nothing was cancelled." in page.text
    unknown = client.post(
        "/dashboard/workflows/01a22dc2-e1a7-7a8b-bdc6-608bfc491bbf/cancel", {"csrf": client.csrf()}
    )
    assert unknown.status_code == 404
    served.server.stop()
    log = served.server.log()
    app = served.app.application_id
    assert f"operator alice cancelled workflow {running} of application {app}: cancelled" in log
    assert f"operator alice cancelled workflow {running} of application {app}: ended" in log


def test_operators_cli_lists_and_deletes_and_a_deleted_operator_is_signed_out(
    served: Served,
) -> None:
    client = served.client()
    client.sign_in("alice", served.token)
    listed = run_cli("operators", "list", "--database", served.database_url)
    assert re.search(r"^alice  \S+  1$", listed, re.MULTILINE)
    assert served.token not in listed
    run_cli("operators", "delete", "alice", "--database", served.database_url)
    assert client.get("/dashboard").status_code == 303
    assert client.sign_in("alice", served.token).status_code == 401


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[Served]:
    yield from serve_dashboard(tmp_path, "--public-url", "https://dispatch.example/od")


def test_behind_a_proxy_at_a_sub_path_every_link_form_and_cookie_carries_it(
    behind_proxy: Served,
) -> None:
    served = behind_proxy
    dispatch_uuid = served.dispatch(rejected_sms())
    served.wait_for_dead(2)
    client = served.client(prefix="/od")  # the proxy strips /od before the server sees it
    signed_in = client.sign_in("alice", served.token)
    assert signed_in.headers["location"] == "/od/dashboard"
    for cookie in client.set_cookies:
        assert "Path=/od/dashboard" in cookie
        assert "; Secure" in cookie  # the public URL is https
    assert client.get("/od/dashboard/workflows").headers.get("location") is None
    pages = [
        "/od/dashboard",
        "/od/dashboard/workflows",
        "/od/dashboard/workflows?status=error",
        f"/od/dashboard/workflows/{dispatch_uuid}",
        "/od/dashboard/webhooks",
        "/od/dashboard/webhooks?state=failing",
    ]
    seen: set[str] = set()
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, path
        links = links_of(page.text)
        assert links
        assert [link for link in links if not link.startswith("/od/dashboard")] == []
        seen.update(links)
    for asset in ("/od/dashboard/static/style.css", "/od/dashboard/static/dashboard.js"):
        assert asset in seen
        assert client.get(asset).status_code == 200
    assert f"/od/dashboard/workflows/{dispatch_uuid}" in seen
    # Redirects after a form carry the prefix too.
    replayed = client.post("/od/dashboard/webhooks/replay", {"csrf": client.csrf()})
    assert replayed.headers["location"] == "/od/dashboard/webhooks?replayed=2"
    out = client.post("/od/dashboard/logout", {"csrf": client.csrf()})
    assert out.headers["location"] == "/od/dashboard/login"
    signed_out = client.get("/od/dashboard/webhooks")
    assert signed_out.headers["location"] == "/od/dashboard/login?next=%2Fwebhooks"
    login = client.get("/od/dashboard/login")
    assert all(link.startswith("/od/dashboard") for link in links_of(login.text))
    assert inputs_of(login.text)["login_token"]


@pytest.mark.postgres
def test_on_postgresql_a_session_is_known_to_every_server_process(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    token = run_cli("operators", "create", "alice", "--database", postgres_database.url).strip()
    first = ServerProcess(postgres_database.url, cwd=tmp_path).start()
    second = ServerProcess(postgres_database.url, cwd=tmp_path).start()
    try:
        on_first = DashboardClient(first.url)
        assert on_first.sign_in("alice", token).status_code == 303
        # The same browser, sent to the other process by a load balancer: still signed in.
        on_second = DashboardClient(second.url, cookies=dict(on_first.cookies))
        page = on_second.get("/dashboard")
        assert page.status_code == 200
        assert "alice" in page.text
        # Its CSRF token is the session's, whichever process checks it; signing out on one
        # process ends the session on the other.
        assert on_second.post("/dashboard/logout", {"csrf": on_first.csrf()}).status_code == 303
        assert on_first.get("/dashboard").status_code == 303
    finally:
        first.stop()
        second.stop()
