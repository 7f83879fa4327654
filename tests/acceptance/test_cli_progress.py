"""Long commands show progress: replaying many webhooks and retention catch-up, on SQLite and
PostgreSQL, as subprocesses on real databases (`db upgrade`'s lines: test_cli.py)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.databases import TestDatabase
from tests.support import create_app_with_cli, run_cli

DAY_MS = 86_400_000


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`opendispatch ARGS...` with stderr a file, not a terminal (as in a log or a pipe)."""
    completed = subprocess.run(
        [sys.executable, "-m", "opendispatch", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def execute(database: TestDatabase, sql: str) -> None:
    asyncio.run(database.rows(sql))


def count(database: TestDatabase, sql: str) -> int:
    return int(asyncio.run(database.scalar(sql)))


def seed_webhooks(
    database: TestDatabase, application_id: str, n: int, *, state: str, settled_at_ms: int
) -> None:
    """`n` webhooks of the application, straight into the table (as many servers would
    leave them after a long outage of its receiver)."""
    execute(
        database,
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
        INSERT INTO webhooks (event_id, dispatch_uuid, application_id, kind, message_uuid,
                              status, url, payload, state, attempts, next_attempt_at_ms,
                              created_at_ms, settled_at_ms)
        SELECT 'seeded-' || i || '-{state}-{settled_at_ms}', 'seeded-' || i,
               '{application_id}', 'final_report', NULL, 'completed',
               'http://127.0.0.1:9/status', '{{}}', '{state}', 3, 0, 0, {settled_at_ms}
        FROM n""",
    )


def seed_ended_workflows(
    database: TestDatabase, application_id: str, n: int, *, updated_at_ms: int
) -> None:
    execute(
        database,
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
        INSERT INTO workflows (dispatch_uuid, application_id, template, status, request_json,
                               created_at_ms, updated_at_ms)
        SELECT 'ended-' || i || '-{updated_at_ms}', '{application_id}', 'failover',
               'completed', '{{}}', {updated_at_ms}, {updated_at_ms}
        FROM n""",
    )


PROGRESS = re.compile(r"^(?P<what>[a-z ]+): (?P<done>[\d,]+) of (?P<total>[\d,]+) \(\d+%\)")


def progress_lines(stderr: str) -> list[tuple[str, int, int]]:
    found = []
    for line in stderr.splitlines():
        match = PROGRESS.match(line)
        assert match, f"not a progress line: {line!r}"
        found.append(
            (
                match["what"],
                int(match["done"].replace(",", "")),
                int(match["total"].replace(",", "")),
            )
        )
    return found


def test_replaying_many_webhooks_shows_progress_with_progress_or_on_a_terminal(
    database: TestDatabase,
):
    app = create_app_with_cli(database.url)
    seed_webhooks(database, app.application_id, 1_200, state="dead", settled_at_ms=1)

    shown = cli("webhooks", "replay", "--all", "--progress", "--database", database.url)
    assert shown.stdout == "replayed 1200 webhooks\n"
    assert progress_lines(shown.stderr) == [
        ("replayed", 500, 1_200),
        ("replayed", 1_000, 1_200),
        ("replayed", 1_200, 1_200),
    ]
    assert count(database, "SELECT count(*) FROM webhooks WHERE state = 'pending'") == 1_200

    # Not a terminal, no --progress: only the summary (a script's log stays clean).
    execute(database, "UPDATE webhooks SET state = 'dead'")
    quiet = cli("webhooks", "replay", "--all", "--database", database.url)
    assert (quiet.stdout, quiet.stderr) == ("replayed 1200 webhooks\n", "")


def test_purge_expired_runs_retention_to_its_end_with_progress(database: TestDatabase):
    """The catch-up a server would make a batch at a time, at once: what settled or ended
    before the retention goes, what is newer stays."""
    app = create_app_with_cli(database.url)
    now_ms = int(asyncio.run(database.scalar("SELECT max(created_at_ms) FROM applications")))
    old, recent = now_ms - 40 * DAY_MS, now_ms - 1 * DAY_MS
    seed_webhooks(database, app.application_id, 1_100, state="delivered", settled_at_ms=old)
    seed_webhooks(database, app.application_id, 100, state="dead", settled_at_ms=old)
    seed_webhooks(database, app.application_id, 7, state="delivered", settled_at_ms=recent)
    seed_ended_workflows(database, app.application_id, 700, updated_at_ms=old)
    seed_ended_workflows(database, app.application_id, 3, updated_at_ms=recent)

    purged = cli("db", "purge-expired", "--retention-days", "30", "--batch-size", "500",
                 "--progress", "--database", database.url)  # fmt: skip
    assert re.fullmatch(
        r"deleted 1,200 webhooks and 700 workflows settled or ended before \S+Z\n", purged.stdout
    ), purged.stdout
    assert progress_lines(purged.stderr) == [
        ("deleted webhooks", 500, 1_200),
        ("deleted webhooks", 1_000, 1_200),
        ("deleted webhooks", 1_200, 1_200),
    ]
    assert count(database, "SELECT count(*) FROM webhooks") == 7
    assert count(database, "SELECT count(*) FROM workflows") == 3

    again = cli("db", "purge-expired", "--database", database.url)
    assert again.stdout.startswith("deleted 0 webhooks and 0 workflows settled or ended before")
    assert again.stderr == ""


def test_purge_expired_refuses_a_retention_that_keeps_everything(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'keep.db'}"
    run_cli("db", "upgrade", "--database", database)
    refused = subprocess.run(
        [sys.executable, "-m", "opendispatch", "db", "purge-expired", "--retention-days", "0",
         "--database", database],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--retention-days 0 keeps everything: nothing expires" in refused.stderr
