"""`opendispatch apps ...` and `db upgrade` as a user runs them: subprocesses on real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opendispatch.store.migrations import load_migrations
from tests.databases import TestDatabase
from tests.support import create_app_with_cli, run_cli


def test_apps_create_prints_credentials_once_and_stores_only_hashes(tmp_path: Path):
    database = tmp_path / "cli.db"
    created = create_app_with_cli(f"sqlite:///{database}", name="shop")
    assert created.private_key.startswith("-----BEGIN PRIVATE KEY-----")
    raw = database.read_bytes() + (
        database.with_name("cli.db-wal").read_bytes()
        if database.with_name("cli.db-wal").exists()
        else b""
    )
    assert created.api_secret.encode() not in raw
    assert b"PRIVATE KEY" not in raw
    assert created.api_key.encode() in raw

    listed = json.loads(run_cli("apps", "list", "--database", f"sqlite:///{database}", "--json"))
    assert [row["application_id"] for row in listed] == [created.application_id]
    text = run_cli("apps", "list", "--database", f"sqlite:///{database}")
    for secret in (created.api_secret, created.signature_secret):
        assert secret not in text
        assert secret not in json.dumps(listed)


def test_apps_create_json_has_the_documented_fields(tmp_path: Path):
    output = run_cli(
        "apps",
        "create",
        "--name",
        "n",
        "--status-url",
        "https://example.com/status",
        "--final-report-url",
        "https://example.com/final",
        "--database",
        f"sqlite:///{tmp_path / 'a.db'}",
        "--json",
    )
    fields = json.loads(output)
    for name in ("application_id", "api_key", "api_secret", "private_key", "signature_secret"):
        assert isinstance(fields[name], str)
        assert fields[name]
    assert fields["final_report_url"] == "https://example.com/final"


def test_apps_create_registers_an_existing_public_key(tmp_path: Path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public)
    fields = json.loads(
        run_cli(
            "apps",
            "create",
            "--name",
            "own-key",
            "--status-url",
            "https://example.com/s",
            "--public-key-file",
            str(key_file),
            "--database",
            f"sqlite:///{tmp_path / 'k.db'}",
            "--json",
        )
    )
    assert fields["private_key"] is None


def test_apps_create_refuses_a_bad_url_and_creates_nothing(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'bad.db'}"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "opendispatch",
            "apps",
            "create",
            "--name",
            "x",
            "--status-url",
            "ftp://example.com",
            "--database",
            database,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert "status-url" in completed.stderr
    assert json.loads(run_cli("apps", "list", "--database", database, "--json")) == []


def test_database_comes_from_the_environment(tmp_path: Path):
    env = {"OPENDISPATCH_DATABASE": f"sqlite:///{tmp_path / 'env.db'}"}
    run_cli("apps", "create", "--name", "env", "--status-url", "http://x.test/", env=env)
    assert (tmp_path / "env.db").exists()
    assert len(json.loads(run_cli("apps", "list", "--json", env=env))) == 1


DURATION = re.compile(r" in (\d+\.\d{3}|[\d,]+\.\d) s")


@pytest.mark.anyio
async def test_db_upgrade_says_each_migration_as_it_starts_and_its_duration_as_it_ends(
    database: TestDatabase,
):
    migrations = load_migrations(database.kind)
    newest = migrations[-1]
    upgrade = _cli("db", "upgrade", "--database", database.url)
    # As each starts (stderr, so it shows while a long one runs) ...
    assert upgrade.stderr.splitlines() == [f"applying {m.label} ..." for m in migrations]
    # ... and as each ends, with how long it took; the last with the version reached.
    first = upgrade.stdout.splitlines()
    assert all(DURATION.search(line) for line in first), first
    first = [DURATION.sub("", line) for line in first]
    assert first[0] == "applied 0001_initial"
    assert first[1:-1] == [f"applied {m.label}" for m in migrations[1:-1]]
    assert first[-1] == f"applied {newest.label}, now at {newest.version}"
    assert await database.scalar("SELECT max(version) FROM schema_migrations") == newest.version

    again = run_cli("db", "upgrade", "--database", database.url)
    assert again == f"nothing to apply: database at version {newest.version}\n"
    # `db init` on an existing database only upgrades, and says so the same way.
    init = run_cli("db", "init", "--database", database.url).splitlines()
    assert init[-1] == f"nothing to apply: database at version {newest.version}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`opendispatch ARGS...`, its stdout and stderr apart; fails the test on error."""
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", *args], capture_output=True, text=True, check=True
    )


def _create(database: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", "apps", "create", "--name", "x",
         "--database", database, *args],
        capture_output=True, text=True, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/hooks", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
        ("http://[fd00::5]/hooks", "fd00::5 is a private address"),
        (
            "http://localhost:8000/hooks",
            "localhost resolves to where webhooks may not go: 127.0.0.1 is a loopback address",
        ),
    ],
)
def test_apps_create_refuses_a_private_destination_and_stores_nothing(
    tmp_path: Path, url: str, reason: str
):
    database = f"sqlite:///{tmp_path / 'ssrf.db'}"
    completed = _create(database, "--status-url", url)
    assert completed.returncode == 1
    assert reason in completed.stderr
    assert "--allow-private-webhooks" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert json.loads(run_cli("apps", "list", "--database", database, "--json")) == []


def test_allow_private_webhooks_by_flag_or_environment(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'private.db'}"
    by_flag = _create(
        database, "--status-url", "http://127.0.0.1:8000/a", "--allow-private-webhooks"
    )
    by_env = _create(
        database,
        "--status-url",
        "http://10.0.0.7/b",
        env={"OPENDISPATCH_ALLOW_PRIVATE_WEBHOOKS": "true"},
    )
    assert (by_flag.returncode, by_env.returncode) == (0, 0), by_flag.stderr + by_env.stderr
    listed = json.loads(run_cli("apps", "list", "--database", database, "--json"))
    assert [row["status_url"] for row in listed] == ["http://127.0.0.1:8000/a", "http://10.0.0.7/b"]


@pytest.mark.parametrize(
    ("option", "url", "reason"),
    [
        ("--status-url", "https://user:pw@hooks.example.com/", "must not carry credentials"),
        ("--status-url", "https://hooks.example.com:0/", "has a port outside 1-65535"),
        ("--final-report-url", "https://hooks.example.com:70000/", "has a port outside 1-65535"),
        ("--status-url", "https://hooks.example.com/a\tb", "contains a space or a control"),
    ],
)
def test_apps_create_refuses_a_malformed_url_even_with_private_allowed(
    tmp_path: Path, option: str, url: str, reason: str
):
    database = f"sqlite:///{tmp_path / 'bad.db'}"
    args = ["--status-url", "https://hooks.example.com/ok"] if option != "--status-url" else []
    completed = _create(database, *args, option, url, "--allow-private-webhooks")
    assert completed.returncode == 2
    assert reason in completed.stderr
    assert "pw" not in completed.stderr.replace("--", "")
    assert json.loads(run_cli("apps", "list", "--database", database, "--json")) == []


def test_apps_create_warns_about_a_name_it_cannot_resolve_and_accepts_it(tmp_path: Path):
    completed = _create(f"sqlite:///{tmp_path / 'w.db'}", "--status-url", "https://hooks.invalid/")
    assert completed.returncode == 0
    assert "warning: status_url: hooks.invalid could not be resolved from here" in completed.stderr
