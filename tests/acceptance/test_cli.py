"""`opendispatch apps ...` and `db upgrade` as a user runs them: subprocesses on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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


def test_db_upgrade_is_idempotent(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'up.db'}"
    assert "up to date" in run_cli("db", "upgrade", "--database", database)
    assert "up to date" in run_cli("db", "upgrade", "--database", database)
