"""`opendispatch serve` that cannot start: one line on stderr saying what failed and what to
do, exit status 1, the traceback only at `--log-level debug`; the port is taken before the
database is touched, and the TLS files are read before the port is."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import free_port, run_cli
from tests.tls_ca import make_test_ca

pytestmark = pytest.mark.slow

PREFIX = "opendispatch: cannot start: "


def serve(*args: str, cwd: Path, env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    """`env`: the whole environment (None: this one)."""
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", "serve", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ) if env is None else env,
        timeout=60,
        check=False,
    )


def assert_refused(*args: str, cwd: Path, says: str, env: dict[str, str] | None = None) -> str:
    """Start it twice, plainly then at debug level: the same one line and status 1 both times,
    the traceback only the second time. Returns the line."""
    if "--port" not in args:
        args = (*args, "--port", str(free_port()))
    plain = serve(*args, cwd=cwd, env=env)
    assert plain.returncode == 1, plain.stderr
    [line] = plain.stderr.splitlines()  # nothing else: no traceback, no uvicorn chatter
    assert line.startswith(PREFIX), line
    assert says in line

    debug = serve(*args, "--log-level", "debug", cwd=cwd, env=env)
    assert debug.returncode == 1, debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == line
    return line


def test_a_missing_directory_is_named_and_not_created(tmp_path: Path):
    missing = tmp_path / "no-such-directory"
    line = assert_refused(
        "--database", f"sqlite:///{missing / 'od.db'}", cwd=tmp_path, says=str(missing)
    )
    assert "does not exist: create it, or choose another --database" in line
    assert not missing.exists()


def test_a_database_under_a_regular_file_is_refused(tmp_path: Path):
    regular = tmp_path / "notes.txt"
    regular.write_text("not a directory")
    line = assert_refused(
        "--database", f"sqlite:///{regular / 'od.db'}", cwd=tmp_path, says=str(regular)
    )
    assert "is not a directory" in line


@pytest.fixture
def unwritable_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory this user cannot create files in. Root ignores permission bits, so for
    root it is /sys, where the kernel refuses new files to everyone."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        yield locked
        locked.chmod(0o700)
        return
    if not Path("/sys").is_dir() or Path("/sys/od.db").exists():
        pytest.skip("running as root, and no /sys to be refused by")
    yield Path("/sys")


def test_an_unwritable_directory_is_named(tmp_path: Path, unwritable_directory: Path):
    line = assert_refused(
        "--database",
        f"sqlite:///{unwritable_directory / 'od.db'}",
        cwd=tmp_path,
        says=f"cannot write in {unwritable_directory}, the directory of the SQLite database",
    )
    assert "make it writable for this user, or choose another --database" in line
    assert not (unwritable_directory / "od.db").exists()


def test_a_database_another_server_serves_is_refused(server_factory: Any, tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'served.db'}"
    server_factory(database).start()
    line = assert_refused(
        "--database", database, cwd=tmp_path, says="another OpenDispatch server is already serving"
    )
    assert "stop it first" in line


def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path: Path):
    line = assert_refused(
        "--database",
        "postgresql://postgres:hunter2@127.0.0.1:1/test",
        cwd=tmp_path,
        says="cannot connect to PostgreSQL at 127.0.0.1:1, database test",
    )
    assert "is it running, and is --database right?" in line
    assert "hunter2" not in line


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_port_in_use_is_refused_before_the_database_is_created(tmp_path: Path, taken_port: int):
    path = tmp_path / "new.db"
    line = assert_refused(
        "--port", str(taken_port), "--database", f"sqlite:///{path}", cwd=tmp_path,
        says=f"port {taken_port} on 127.0.0.1 is in use (another server?)",
    )  # fmt: skip
    assert "choose another with --port" in line
    # Checked first: no database created, migrated or locked.
    assert sorted(tmp_path.iterdir()) == []


def test_provider_secrets_without_the_key_are_refused(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'p.db'}"
    run_cli(
        "providers", "add", "twilio-main", "--kind", "twilio", "--database", database,
        "--set", "account_sid=AC" + "0123456789abcdef" * 2, "--set", "auth_token=secret",
        env={"OPENDISPATCH_SECRET_KEY": run_cli("secret-key").strip()},
    )  # fmt: skip
    without_key = {k: v for k, v in os.environ.items() if k != "OPENDISPATCH_SECRET_KEY"}
    line = assert_refused(
        "--database", database, cwd=tmp_path, env=without_key,
        says="provider account 'twilio-main' has secrets and OPENDISPATCH_SECRET_KEY is not set",
    )  # fmt: skip
    assert "set it to the key they were stored with" in line


# -- HTTPS: --tls-cert and --tls-key are read before the port is taken -------------------------


def _encrypted(key: Path) -> Path:
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    locked = key.with_name("locked-key.pem")
    locked.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return locked


def test_a_missing_tls_file_is_named_before_the_port_or_the_database(tmp_path: Path):
    ca = make_test_ca(tmp_path / "tls")
    missing = tmp_path / "tls" / "no-such-cert.pem"
    line = assert_refused(
        "--tls-cert", str(missing), "--tls-key", str(ca.key),
        "--database", f"sqlite:///{tmp_path / 'new.db'}", cwd=tmp_path,
        says=f"cannot read --tls-cert {missing} (No such file or directory)",
    )  # fmt: skip
    assert str(ca.key) not in line  # the key's file was fine: only the problem is named
    assert sorted(tmp_path.iterdir()) == [tmp_path / "tls"]  # no database made


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path):
    ours, theirs = make_test_ca(tmp_path / "ours"), make_test_ca(tmp_path / "theirs")
    line = assert_refused(
        "--tls-cert", str(ours.cert), "--tls-key", str(theirs.key), cwd=tmp_path,
        says=f"the private key in --tls-key {theirs.key} does not match the certificate in "
        f"--tls-cert {ours.cert}",
    )  # fmt: skip
    assert "PRIVATE KEY" not in line


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("cert", "--tls-cert is given without --tls-key (OPENDISPATCH_TLS_KEY)"),
        ("key", "--tls-key is given without --tls-cert (OPENDISPATCH_TLS_CERT)"),
    ],
)
def test_one_of_the_tls_pair_alone_is_refused(tmp_path: Path, given: str, says: str):
    ca = make_test_ca(tmp_path / "tls")
    # From the environment, as the container and compose give settings.
    path = ca.cert if given == "cert" else ca.key
    env = {**os.environ, f"OPENDISPATCH_TLS_{given.upper()}": str(path)}
    line = assert_refused(cwd=tmp_path, env=env, says=says)
    assert "HTTPS needs both the certificate and its private key" in line


def test_a_tls_key_behind_a_passphrase_is_refused_not_prompted_for(tmp_path: Path):
    ca = make_test_ca(tmp_path / "tls")
    locked = _encrypted(ca.key)
    line = assert_refused(
        "--tls-cert", str(ca.cert), "--tls-key", str(locked), cwd=tmp_path,
        says=f"--tls-key {locked} is protected by a passphrase",
    )  # fmt: skip
    assert "give it unencrypted" in line


def test_files_given_the_wrong_way_round_are_named(tmp_path: Path):
    ca = make_test_ca(tmp_path / "tls")
    assert_refused(
        "--tls-cert", str(ca.key), "--tls-key", str(ca.cert), cwd=tmp_path,
        says=f"--tls-cert {ca.key} holds no PEM certificate",
    )  # fmt: skip


def test_with_json_logs_the_reason_is_one_json_line(tmp_path: Path, taken_port: int):
    # A log collector reading JSON lines must not drop the one line that says why.
    refused = serve(
        "--port", str(taken_port), "--log-format", "json",
        "--database", f"sqlite:///{tmp_path / 'od.db'}",
        cwd=tmp_path, env=None,
    )  # fmt: skip

    assert refused.returncode == 1, refused.stderr
    [line] = refused.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["event"] == "cannot start"
    assert entry["message"].startswith(PREFIX)
    assert str(taken_port) in entry["message"]
    assert entry["time"].endswith("Z")
