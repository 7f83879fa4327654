"""What the server writes beside its database never shows up in `git status`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_the_database_and_its_companion_files_are_ignored():
    files = ["opendispatch.db", "opendispatch.db-wal", "opendispatch.db-shm",
             "opendispatch.db.lock", "opendispatch.db.wake", "opendispatch.db-wal.orphaned",
             "server.log"]  # fmt: skip
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *files],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    assert ignored == files
