"""Benchmark: one page of `GET /v0.1/dispatch`'s filters, through the store, on a large list.

    .venv/bin/python bench/list_filters.py                      # SQLite, 300,000 workflows
    .venv/bin/python bench/list_filters.py --workflows 1000000
    .venv/bin/python bench/list_filters.py --database postgresql://postgres@127.0.0.1/test

One application's workflows, 10 ms apart, 0.05 % of them `error`, every one WhatsApp then
SMS; the older half stored as before migration 0010 (no `channels`: the list reads theirs
from the submitted JSON). Prints the best of five runs of each page of 20 (21 rows asked, as
the API does): pages a filter answers from an index stay well under a millisecond, and a
channel no workflow has costs a walk of the range, per workflow walked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import drop_postgres_schema, fresh_postgres_schema
from opendispatch.engine.model import WorkflowStatus
from opendispatch.ids import uuid7
from opendispatch.store.factory import create_store
from opendispatch.store.records import (
    Application,
    ApplicationCredentials,
    WorkflowFilter,
)

START_MS = 1_700_000_000_000
STEP_MS = 10
APP = "bench-app"
REQUEST = json.dumps(
    {
        "template": "failover",
        "workflow": [
            {
                "to": {"type": "whatsapp", "number": "447700900005"},
                "from": {"type": "whatsapp", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "Your code is 64873 " * 10}},
                "failover": {"expiry_time": 600, "condition_status": "read"},
            },
            {
                "to": {"type": "sms", "number": "447700900005"},
                "from": {"type": "sms", "number": "447700900000"},
                "message": {"content": {"type": "text", "text": "Your code is 64873"}},
            },
        ],
    }
)
COLUMNS = (
    "dispatch_uuid, application_id, template, status, request_json, created_at_ms, "
    "updated_at_ms, channels"
)


def rows(count: int, error_every: int) -> list[tuple[Any, ...]]:
    return [
        (
            uuid7(START_MS + i * STEP_MS),
            APP,
            "failover",
            "error" if i % error_every == 0 else "completed",
            REQUEST,
            START_MS + i * STEP_MS,
            START_MS + i * STEP_MS,
            None if i < count // 2 else ",whatsapp,sms,",  # the older half: before 0010
        )
        for i in range(count)
    ]


async def fill(url: str, count: int, error_every: int) -> None:
    made = rows(count, error_every)
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.executemany(
                f"INSERT INTO workflows ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", made
            )
        return
    import asyncpg

    base, _, schema = url.rpartition("search_path=")
    connection = await asyncpg.connect(base.rstrip("?&"), server_settings={"search_path": schema})
    try:
        await connection.copy_records_to_table(
            "workflows", records=made, columns=[c.strip() for c in COLUMNS.split(",")]
        )
        await connection.execute("ANALYZE workflows")
    finally:
        await connection.close()


async def run(url: str, count: int, error_every: int) -> None:
    store = create_store(url)
    await store.open()
    await store.create_application(
        ApplicationCredentials(
            application=Application(
                application_id=APP,
                name="bench",
                api_key="bench-key",
                status_url="http://127.0.0.1:9/",
                final_report_url=None,
                created_at_ms=0,
            ),
            api_secret_hash="hmac-sha256$00$00",
            signature_secret="s",
            public_key_pem="PEM",
        )
    )
    began = time.perf_counter()
    await fill(url, count, error_every)
    print(f"{count} workflows stored in {time.perf_counter() - began:.1f} s ({url.split(':')[0]})")
    middle_ms = START_MS + count // 2 * STEP_MS
    hour_ms = START_MS + count // 4 * STEP_MS
    cases = {
        "no filter": WorkflowFilter(),
        "status=error (0.05 %)": WorkflowFilter(statuses=frozenset({WorkflowStatus.ERROR})),
        "status=in_progress (none)": WorkflowFilter(
            statuses=frozenset({WorkflowStatus.IN_PROGRESS})
        ),
        "status=in_progress,error": WorkflowFilter(
            statuses=frozenset({WorkflowStatus.IN_PROGRESS, WorkflowStatus.ERROR})
        ),
        "channel=sms (every one)": WorkflowFilter(channel="sms"),
        "one hour, mid-list": WorkflowFilter(
            created_after_ms=hour_ms, created_before_ms=hour_ms + 3_600_000
        ),
        f"channel=messenger (none), {count - count // 2} new": WorkflowFilter(
            channel="messenger", created_after_ms=middle_ms
        ),
        f"channel=messenger (none), {count // 2} pre-0010": WorkflowFilter(
            channel="messenger", created_before_ms=middle_ms
        ),
    }
    try:
        for name, where in cases.items():
            best = float("inf")
            for _ in range(5):
                began = time.perf_counter()
                page = await store.list_workflows(APP, limit=21, where=where)
                best = min(best, time.perf_counter() - began)
            print(f"  {name:42s} {len(page):3d} rows  {best * 1000:9.2f} ms")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="postgresql://... (default: a new SQLite file)")
    parser.add_argument("--workflows", type=int, default=300_000)
    parser.add_argument("--error-every", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.database and args.database.startswith("postgres"):
            url = fresh_postgres_schema(args.database)
            try:
                asyncio.run(run(url, args.workflows, args.error_every))
            finally:
                drop_postgres_schema(url)
        else:
            url = args.database or f"sqlite:///{folder}/bench.db"
            asyncio.run(run(url, args.workflows, args.error_every))


if __name__ == "__main__":
    main()
