"""The dashboard's workflow list with a million workflows stored (issue 13: within 200 ms).

    .venv/bin/python bench/dashboard.py --workflows 1000000 --requests 40
    .venv/bin/python bench/dashboard.py --reuse /tmp/od-dash/bench.db   # seeded before

Seeds an SQLite file with --workflows workflows in the store's own stored format: for each
kind (channels and outcome), one workflow is run through the real `Shell` (accept, then the
provider statuses that end it) and turned into its row by `TransitionRows`, the write path's
own row builder; each seeded row is that row with new ids (dispatch and message uuids, UUIDv7s
of its creation time), its own application, recipient and times. They are inserted with the
write strategy's own `insert_workflow` statement, in big transactions, so the triggers of
migration 0011 fill `workflow_terms` as they would under load. Only workflows are seeded
(the list reads nothing else).

The mix, spread over the last 7 days: five applications of 50, 25, 15, 9 and 1 %; WhatsApp
then SMS 70 %, SMS alone 20 %, Viber then SMS 9 %, Messenger then SMS 1 %; 97 % completed,
2 % error, 1 % in progress; a quarter of a million recipients. Then a real `opendispatch
serve` on that file, an operator signed in, and each list page (first page, deep pages, every
filter and some combinations that match little) asked --requests times in turn; the client's
latency of each (HTTP included) is printed as p50 / p99 / max.
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_poll import sign_in
from harness import cpu_seconds, free_port, wait_until_up
from opendispatch.engine.model import MessageStatus, StatusReported
from opendispatch.ids import uuid7
from opendispatch.runtime.shell import Shell, decode_state
from opendispatch.store.named_queries import load_queries
from opendispatch.store.records import LoadedWorkflow, NewWorkflow, WorkflowRecord
from opendispatch.store.transition_rows import TransitionRows

TEMPLATE_NUMBER = "447700999999"
TEMPLATE_UUID = "00000000-0000-7000-8000-000000000000"
APPLICATION_SHARES = (0.50, 0.25, 0.15, 0.09, 0.01)
CHANNEL_MIX = (("whatsapp", 0.70), ("sms", 0.20), ("viber_service_msg", 0.09), ("messenger", 0.01))
OUTCOME_MIX = (("completed", 0.97), ("error", 0.02), ("in_progress", 0.01))
RECIPIENTS = 250_000
WEEK_MS = 7 * 86_400_000


def _step(channel: str, recipient: str, failover: bool) -> dict[str, Any]:
    to_key, from_key = ("id", "id") if channel == "messenger" else ("number", "number")
    if channel == "viber_service_msg":
        from_key = "id"
    message: dict[str, Any] = {
        "to": {"type": channel, to_key: recipient},
        "from": {"type": channel, from_key: "447700900000"},
        "message": {"content": {"type": "text", "text": "Your code is 64873"}},
    }
    if failover:
        message["failover"] = {"expiry_time": 600, "condition_status": "read"}
    return message


def _request(first: str) -> str:
    import json

    steps = [_step("sms", TEMPLATE_NUMBER, False)]
    if first != "sms":
        steps.insert(0, _step(first, TEMPLATE_NUMBER, True))
    return json.dumps({"template": "failover", "workflow": steps}, separators=(",", ":"))


def template_row(first: str, outcome: str) -> dict[str, Any]:
    """One workflow of this kind run through the engine, as the write path stores it."""
    shell = Shell(final_status_timeout_s=86_400)
    workflow = NewWorkflow(
        dispatch_uuid=TEMPLATE_UUID,
        application_id="template",
        template="failover",
        request_json=_request(first),
        created_at_ms=1_000_000,
        channels=(first, "sms") if first != "sms" else ("sms",),
    )
    transition = shell.accept(
        workflow, status_url="https://example.com/s", final_report_url=None, now_ms=1_000_000
    )
    events: list[tuple[int, MessageStatus]] = []
    message_uuids = decode_state(transition.state_json).message_uuids
    if outcome == "completed":
        events = [(0, MessageStatus.DELIVERED), (0, MessageStatus.READ)]
        if first == "sms":
            events = [(0, MessageStatus.DELIVERED)]
    elif outcome == "error":
        events = [(step, MessageStatus.REJECTED) for step in range(len(message_uuids))]
    now = 1_000_000
    for step_index, status in events:
        now += 500
        record = WorkflowRecord(
            dispatch_uuid=TEMPLATE_UUID, application_id="template", template="failover",
            status=transition.status, request_json=workflow.request_json,
            created_at_ms=1_000_000, updated_at_ms=now,
        )  # fmt: skip
        loaded = LoadedWorkflow(
            record=record, state_json=transition.state_json, api_key="k",
            status_url="https://example.com/s", final_report_url=None,
        )  # fmt: skip
        event = StatusReported(message_uuid=message_uuids[step_index], status=status, at_ms=now)
        next_transition = shell.transition_for(event, now_ms=now)(loaded)
        assert next_transition is not None
        transition = next_transition
    assert str(transition.status) == outcome, (first, outcome, transition.status)
    rows = TransitionRows()
    rows.add_new(workflow, transition)
    (row,) = rows.new_workflows
    row["message_uuids"] = message_uuids
    return row


def _pick(mix: tuple[tuple[str, float], ...], roll: float) -> str:
    for name, share in mix:
        if roll < share:
            return name
        roll -= share
    return mix[-1][0]


def seed(path: Path, count: int) -> None:
    """The database at `path`, migrated, with five applications and `count` workflows."""
    subprocess.run(
        [sys.executable, "-m", "opendispatch", "db", "upgrade", "--database", f"sqlite:///{path}"],
        check=True, capture_output=True,
    )  # fmt: skip
    applications = []
    for index in range(len(APPLICATION_SHARES)):
        created = subprocess.run(
            [sys.executable, "-m", "opendispatch", "apps", "create", "--name", f"tenant-{index}",
             "--status-url", "https://example.com/status", "--database", f"sqlite:///{path}",
             "--json"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        applications.append(re.search(r'"application_id": "([^"]+)"', created.stdout)[1])  # type: ignore[index]
    templates = {
        (first, outcome): template_row(first, outcome)
        for first, _ in CHANNEL_MIX
        for outcome, _ in OUTCOME_MIX
    }
    insert = load_queries("opendispatch.store.sqlite", "transitions.sql")["insert_workflow"]
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = OFF")  # seeding only: the server runs with FULL
    random_ = random.Random(13)
    now = int(time.time() * 1000)
    start = now - WEEK_MS
    step_ms = WEEK_MS / count
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for index in range(count):
        created = int(start + index * step_ms)
        first = _pick(CHANNEL_MIX, random_.random())
        outcome = _pick(OUTCOME_MIX, random_.random())
        template = templates[(first, outcome)]
        roll = random_.random()
        application = applications[-1]
        for candidate, share in zip(applications, APPLICATION_SHARES, strict=True):
            if roll < share:
                application = candidate
                break
            roll -= share
        recipient = f"4477{random_.randrange(RECIPIENTS):08d}"
        dispatch_uuid = uuid7(created)
        state_json = template["state_json"].replace(TEMPLATE_UUID, dispatch_uuid)
        for message_uuid in template["message_uuids"]:
            state_json = state_json.replace(message_uuid, uuid7(created))
        batch.append(
            template
            | {
                "dispatch_uuid": dispatch_uuid,
                "application_id": application,
                "request_json": template["request_json"].replace(TEMPLATE_NUMBER, recipient),
                "created_at_ms": created,
                "updated_at_ms": created + 1_500,
                "state_json": state_json,
                "due_at_ms": None if outcome != "in_progress" else created + 600_000,
            }
        )
        if len(batch) == 50_000:
            connection.executemany(insert, batch)
            connection.commit()
            batch = []
            done = index + 1
            rate = done / (time.perf_counter() - started)
            print(f"  seeded {done:>9,} workflows ({rate:,.0f}/s)", end="\r", flush=True)
    if batch:
        connection.executemany(insert, batch)
        connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    elapsed = time.perf_counter() - started
    print(f"  seeded {count:,} workflows in {elapsed:.0f} s ({count / elapsed:,.0f}/s)      ")


def facts(path: Path) -> dict[str, Any]:
    """What the queries below need to know about an already seeded database."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        applications = [
            row[0]
            for row in connection.execute(
                "SELECT application_id FROM workflows"
                " GROUP BY application_id ORDER BY count(*) DESC"
            )
        ]
        (count,) = connection.execute("SELECT count(*) FROM workflows").fetchone()
        (middle,) = connection.execute(
            "SELECT dispatch_uuid FROM workflows ORDER BY dispatch_uuid LIMIT 1 OFFSET ?",
            (count // 2,),
        ).fetchone()
        (recipient,) = connection.execute(
            "SELECT substr(term, 4) FROM workflow_terms"
            " WHERE dispatch_uuid = ? AND term LIKE 'to:%'",
            (middle,),
        ).fetchone()
        (newest,) = connection.execute("SELECT max(created_at_ms) FROM workflows").fetchone()
    return {"applications": applications, "recipient": recipient, "count": count, "newest": newest}


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    median = statistics.median(ordered)
    return f"p50 {median:7.1f} ms  p99 {at(0.99):7.1f} ms  max {ordered[-1]:7.1f} ms"


def measure(
    client: httpx.Client, path: str, requests: int, server_pid: int
) -> tuple[list[float], float, httpx.Response]:
    """Latencies of `requests` GETs of `path`, and the server's CPU per request in ms (what a
    page costs, whatever else shares the machine)."""
    latencies = []
    response = client.get(path)  # warm: the first of a kind reads its pages from disk
    cpu_before = cpu_seconds(server_pid)
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    cpu_ms = (cpu_seconds(server_pid) - cpu_before) * 1000 / requests
    return latencies, cpu_ms, response


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40, help="per page measured")
    parser.add_argument("--reuse", type=Path, help="an SQLite file this script seeded before")
    args = parser.parse_args()
    if args.reuse:
        path = args.reuse
    else:
        path = Path(tempfile.mkdtemp(prefix="od-dash-")) / "bench.db"
        print(f"seeding {path}")
        seed(path, args.workflows)
    known = facts(path)
    apps = known["applications"]
    size_mib = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20
    print(f"{known['count']:,} workflows, {len(apps)} applications, {size_mib:,.0f} MiB on disk")
    database = f"sqlite:///{path}"
    port = free_port()
    log = (path.parent / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "opendispatch", "serve", "--port", str(port),
         "--database", database],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/health", timeout_s=600)
        client = sign_in(base, database)
        hour_ago = known["newest"] - 3 * 86_400_000
        window = (
            time.strftime("%Y-%m-%dT%H:%M", time.gmtime(hour_ago / 1000)),
            time.strftime("%Y-%m-%dT%H:%M", time.gmtime(hour_ago / 1000 + 3600)),
        )
        pages = [
            ("first page, no filter", "/dashboard/workflows"),
            ("application (50 %)", f"/dashboard/workflows?application={apps[0]}"),
            ("application (1 %)", f"/dashboard/workflows?application={apps[-1]}"),
            ("status completed", "/dashboard/workflows?status=completed"),
            ("status error (2 %)", "/dashboard/workflows?status=error"),
            ("status in_progress (1 %)", "/dashboard/workflows?status=in_progress"),
            ("status cancelled (none)", "/dashboard/workflows?status=cancelled"),
            ("channel sms (all)", "/dashboard/workflows?channel=sms"),
            ("channel messenger (1 %)", "/dashboard/workflows?channel=messenger"),
            ("channel mms (none)", "/dashboard/workflows?channel=mms"),
            ("recipient", f"/dashboard/workflows?recipient={known['recipient']}"),
            ("one hour, 3 days ago", f"/dashboard/workflows?from={window[0]}&until={window[1]}"),
            ("error + application 1 %",
             f"/dashboard/workflows?status=error&application={apps[-1]}"),
            ("messenger + application 1 %",
             f"/dashboard/workflows?channel=messenger&application={apps[-1]}"),
            ("messenger + error", "/dashboard/workflows?channel=messenger&status=error"),
            ("completed + mms (none)", "/dashboard/workflows?status=completed&channel=mms"),
        ]  # fmt: skip
        print(
            f"workflow list, 50 a page, {args.requests} requests each: client latency, and "
            "the server's CPU per request"
        )
        worst = 0.0
        for name, path_query in pages:
            latencies, cpu_ms, response = measure(client, path_query, args.requests, server.pid)
            rows = response.text.count('<a class="uuid"')
            searched = " (searched part)" if "Searched back to" in response.text else ""
            print(
                f"  {name:<30} {percentiles(latencies)}  CPU {cpu_ms:5.1f} ms"
                f"  {rows:>2} rows{searched}"
            )
            worst = max(
                worst, sorted(latencies)[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            )
        # Deep pages: follow "Older" twenty times, unfiltered and by application.
        deep = [
            ("page 1..20, no filter", "/dashboard/workflows"),
            ("page 1..20, application 1 %", f"/dashboard/workflows?application={apps[-1]}"),
        ]
        for name, first in deep:
            latencies, next_path = [], first
            for _ in range(20):
                started = time.perf_counter()
                response = client.get(next_path)
                latencies.append((time.perf_counter() - started) * 1000)
                found = re.search(r'<a rel="next" href="([^"]+)"', response.text)
                if not found:
                    break
                next_path = found[1].replace("&amp;", "&")
            print(f"  {name:<30} {percentiles(latencies)}  {len(latencies)} pages")
            worst = max(worst, max(latencies))
        for name, path_query in [
            ("overview, 24 h", "/dashboard"),
            ("overview, 7 days", "/dashboard?window=7d"),
        ]:
            latencies, cpu_ms, _ = measure(
                client, path_query, max(5, args.requests // 4), server.pid
            )
            print(f"  {name:<30} {percentiles(latencies)}  CPU {cpu_ms:5.1f} ms")
        verdict = "within" if worst <= 200 else "OVER"
        print(f"worst list p99: {worst:.1f} ms ({verdict} 200 ms)")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
