"""`opendispatch apps list` as an operator runs it: the real CLI."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tests.support import AppCredentials, create_app_with_cli, run_cli

HEADERS = ["APPLICATION_ID", "API_KEY", "MODE", "NAME", "STATUS_URL", "FINAL_REPORT_URL"]


def create_app(database: str, name: str, url: str, *extra: str) -> AppCredentials:
    created = run_cli(
        "apps", "create", "--name", name, "--status-url", f"{url}/status",
        "--final-report-url", f"{url}/final", "--allow-private-webhooks",
        "--database", database, "--json", *extra,
    )  # fmt: skip
    return AppCredentials.from_json(json.loads(created))


# -- apps list ---------------------------------------------------------------------------------


def test_apps_list_prints_a_header_row_and_aligned_columns(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'list.db'}"
    short = create_app_with_cli(database, name="a")
    long = create_app(database, "a much longer name", "http://127.0.0.1:9")

    lines = run_cli("apps", "list", "--database", database).splitlines()
    assert lines[0].split() == HEADERS
    starts = [lines[0].index(header) for header in HEADERS]
    for line, app, name, final in (
        (lines[1], short, "a", "(status URL)"),
        (lines[2], long, "a much longer name", "http://127.0.0.1:9/final"),
    ):
        values = [app.application_id, app.api_key, "sandbox", name, None, final]
        for start, value in zip(starts, values, strict=True):
            if start:  # each column starts where its header does, after a gap
                assert line[start - 2 : start] == "  "
            if value is not None:
                assert line[start:].startswith(value), (line, value)

    listed = json.loads(run_cli("apps", "list", "--database", database, "--json"))
    assert [row["name"] for row in listed] == ["a", "a much longer name"]
    assert set(listed[0]) == {
        "application_id", "name", "api_key", "status_url", "final_report_url", "mode",
        "created_at",
    }  # fmt: skip
    assert datetime.fromisoformat(listed[0]["created_at"])
    for secret in (short.api_secret, short.signature_secret, long.api_secret):
        assert secret not in json.dumps(listed)
        assert secret not in "\n".join(lines)
