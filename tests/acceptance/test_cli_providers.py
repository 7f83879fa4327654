"""`opendispatch providers ...`, `apps create --live`, `apps route` and `secret-key` as an
operator runs them: subprocesses on a real database file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import run_cli

KEY = {"OPENDISPATCH_SECRET_KEY": "vCq3Vh0Yy3H8rB7x0cJd9yDxg2QmH7d8b0Pz1uS4wQ0="}
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-do-not-print"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def add_twilio(database: str, name: str = "twilio-main") -> None:
    run_cli(
        "providers", "add", name, "--kind", "twilio", "--database", database,
        "--set", f"account_sid={SID}", "--set", f"auth_token={TOKEN}",
        env=KEY,
    )  # fmt: skip


def live_app(database: str) -> str:
    created = run_cli(
        "apps", "create", "--name", "shop", "--live", "--status-url", "https://example.com/s",
        "--database", database, "--json",
    )  # fmt: skip
    fields = json.loads(created)
    assert fields["mode"] == "live"
    return str(fields["application_id"])


def test_providers_add_seals_secrets_and_list_never_shows_them(tmp_path: Path):
    database_file = tmp_path / "p.db"
    database = f"sqlite:///{database_file}"
    add_twilio(database)
    listed = run_cli("providers", "list", "--database", database, "--json")
    [row] = json.loads(listed)
    assert row["name"] == "twilio-main"
    assert row["settings"] == {"account_sid": SID}
    assert row["secrets"] == "(sealed)"
    text = run_cli("providers", "list", "--database", database)
    raw = database_file.read_bytes() + (
        database_file.with_name("p.db-wal").read_bytes()
        if database_file.with_name("p.db-wal").exists()
        else b""
    )
    for shown in (listed, text, raw.decode("latin-1")):
        assert TOKEN not in shown


def test_providers_add_without_a_secret_key_is_refused_with_the_way_out(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "OPENDISPATCH_SECRET_KEY"}
    completed = subprocess.run(
        [sys.executable, "-m", "opendispatch", "providers", "add", "t", "--kind", "twilio",
         "--database", f"sqlite:///{tmp_path / 'p.db'}",
         "--set", f"account_sid={SID}", "--set", f"auth_token={TOKEN}"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode != 0
    assert "OPENDISPATCH_SECRET_KEY is not set" in completed.stderr
    assert "opendispatch secret-key" in completed.stderr


def test_providers_add_names_a_missing_or_unknown_setting(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'p.db'}"
    missing = cli(
        "providers", "add", "t", "--kind", "twilio", "--database", database,
        "--set", f"account_sid={SID}", env=KEY,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "auth_token" in missing.stderr
    unknown = cli(
        "providers", "add", "t", "--kind", "twilio", "--database", database,
        "--set", f"account_sid={SID}", "--set", f"auth_token={TOKEN}", "--set", "colour=red",
        env=KEY,
    )  # fmt: skip
    assert "twilio has no setting colour" in unknown.stderr
    assert json.loads(run_cli("providers", "list", "--database", database, "--json")) == []


def test_a_setting_can_come_from_a_file(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'p.db'}"
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN)
    run_cli(
        "providers", "add", "t", "--kind", "twilio", "--database", database,
        "--set", f"account_sid={SID}", "--set", f"auth_token_file={token_file}", env=KEY,
    )  # fmt: skip
    assert (
        json.loads(run_cli("providers", "list", "--database", database, "--json"))[0]["secrets"]
        == "(sealed)"
    )


def test_apps_route_orders_providers_and_refuses_what_cannot_work(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'p.db'}"
    add_twilio(database, "twilio-main")
    add_twilio(database, "twilio-backup")
    app = live_app(database)
    run_cli(
        "apps", "route", app, "--channel", "sms", "--providers", "twilio-main,twilio-backup",
        "--database", database,
    )  # fmt: skip
    shown = json.loads(run_cli("apps", "route", app, "--database", database, "--json"))
    assert shown == [{"channel": "sms", "providers": ["twilio-main", "twilio-backup"]}]

    viber = cli("apps", "route", app, "--channel", "viber_service_msg",
                "--providers", "twilio-main", "--database", database)  # fmt: skip
    assert "twilio account, which cannot carry viber_service_msg" in viber.stderr
    nobody = cli("apps", "route", app, "--channel", "sms", "--providers", "ghost",
                 "--database", database)  # fmt: skip
    assert "no provider account 'ghost'" in nobody.stderr
    busy = cli("providers", "remove", "twilio-main", "--database", database)
    assert "still routed by" in busy.stderr
    assert json.loads(run_cli("apps", "route", app, "--database", database, "--json")) == shown

    run_cli("apps", "route", app, "--channel", "sms", "--clear", "--database", database)
    run_cli("providers", "remove", "twilio-main", "--database", database)
    names = [r["name"] for r in json.loads(run_cli("providers", "list", "--json",
                                                    "--database", database))]  # fmt: skip
    assert names == ["twilio-backup"]


def test_a_sandbox_application_cannot_be_routed(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'p.db'}"
    add_twilio(database)
    created = json.loads(run_cli(
        "apps", "create", "--name", "dev", "--status-url", "https://example.com/s",
        "--database", database, "--json",
    ))  # fmt: skip
    assert created["mode"] == "sandbox"
    refused = cli("apps", "route", created["application_id"], "--channel", "sms",
                  "--providers", "twilio-main", "--database", database)  # fmt: skip
    assert "is a sandbox application" in refused.stderr


def test_secret_key_prints_a_key_the_server_accepts(tmp_path: Path):
    key = run_cli("secret-key").strip()
    database = f"sqlite:///{tmp_path / 'p.db'}"
    run_cli(
        "providers", "add", "t", "--kind", "twilio", "--database", database,
        "--set", f"account_sid={SID}", "--set", f"auth_token={TOKEN}",
        env={"OPENDISPATCH_SECRET_KEY": key},
    )  # fmt: skip


def test_the_server_will_not_start_with_a_key_that_cannot_open_the_secrets(tmp_path: Path):
    """A wrong key must not look like a provider outage at the first send."""
    from tests.support import ServerProcess

    database = f"sqlite:///{tmp_path / 'p.db'}"
    add_twilio(database)
    wrong = {"OPENDISPATCH_SECRET_KEY": run_cli("secret-key").strip()}
    server = ServerProcess(database, cwd=tmp_path, env=wrong)
    try:
        with pytest.raises(AssertionError, match="server exited early") as refused:
            server.start()
    finally:
        server.stop()
    assert "cannot decrypt the secrets of provider account 'twilio-main'" in str(refused.value)
