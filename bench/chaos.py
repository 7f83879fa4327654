"""Chaos: steady load while server processes are killed with SIGKILL, then a check of every 202.

    .venv/bin/python bench/chaos.py --seconds 120 --rate 300 --kill-every 5
    .venv/bin/python bench/chaos.py --database postgresql://postgres@127.0.0.1/test --processes 2

Workflows are offered at a fixed rate, round robin over the processes, three kinds in turn,
each with an outcome the sandbox's statuses dictate:

rejected  WhatsApp to a number ending in 1 (rejected at once) -> SMS delivered: `completed`,
          both messages in the report.
read      WhatsApp read 0.6 s after it is sent, expiry 15 s, condition `read` -> SMS: the read
          happened before the deadline, so `completed` with one message, whatever the
          downtime (the SMS is never sent).
error     one SMS to a number ending in 2: undeliverable, `error`.

Every `--kill-every` seconds one process (in turn) is killed with SIGKILL and started again on
the same port at once. After the run every process is up and the script waits for the final
reports, then prints: workflows accepted, kills and the time each restart took to answer
/health, and per kind whether every accepted workflow got exactly one final report (one
`webhook-id`; a redelivery of the same one is counted apart, as the README's crash window
allows) with the outcome its statuses dictate. It exits 1 if any did not.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import percentiles, step
from harness import create_app, drop_postgres_schema, free_port, fresh_postgres_schema

KINDS: dict[str, tuple[list[dict[str, Any]], str, list[tuple[str, str]]]] = {
    # kind: (workflow, final status, [(channel, status) of each message in the report])
    "rejected": (
        [
            step("whatsapp", "447700900001", {"expiry_time": 60, "condition_status": "delivered"}),
            step("sms", "447700900005"),
        ],
        "completed",
        [("whatsapp", "rejected"), ("sms", "delivered")],
    ),
    "read": (
        [
            step("whatsapp", "447700900005", {"expiry_time": 15, "condition_status": "read"}),
            step("sms", "447700900005"),
        ],
        "completed",
        [("whatsapp", "read")],
    ),
    "error": ([step("sms", "447700900002")], "error", [("sms", "undeliverable")]),
}


@dataclass
class Finals:
    """What the receiver saw: per workflow, each distinct final report and each redelivery."""

    by_workflow: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    redelivered: int = 0
    statuses: int = 0

    async def final(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        reports = self.by_workflow.setdefault(body["dispatch_uuid"], {})
        webhook_id = request.headers.get("webhook-id", "")
        if webhook_id in reports:
            self.redelivered += 1
        reports[webhook_id] = body
        return web.Response(status=200)

    async def status(self, request: web.Request) -> web.Response:
        await request.read()
        self.statuses += 1
        return web.Response(status=200)


class Fleet:
    """The server processes, each always restarted on its own port."""

    def __init__(self, database: str, workdir: Path, processes: int, lease_s: int) -> None:
        self.database, self.workdir, self.lease_s = database, workdir, lease_s
        self.ports = [free_port() for _ in range(processes)]
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts_ms: list[float] = []

    def start(self, port: int) -> None:
        log = (self.workdir / f"server-{port}.log").open("ab")
        command = [sys.executable, "-m", "opendispatch", "serve", "--port", str(port),
                   "--database", self.database, "--allow-private-webhooks",
                   "--sandbox-delivered-after-ms", "300", "--sandbox-read-after-ms", "300",
                   "--lease-timeout", str(self.lease_s)]  # fmt: skip
        self.running[port] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    async def until_up(self, session: aiohttp.ClientSession, port: int) -> None:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as answer:
                    if answer.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.05)

    async def kill_and_restart(self, session: aiohttp.ClientSession, port: int) -> None:
        process = self.running[port]
        process.send_signal(signal.SIGKILL)
        process.wait()
        started = time.perf_counter()
        self.start(port)
        await self.until_up(session, port)
        self.restarts_ms.append((time.perf_counter() - started) * 1000)

    def stop(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


async def offer_load(
    session: aiohttp.ClientSession,
    fleet: Fleet,
    credentials: dict[str, str],
    rate: int,
    seconds: float,
    accepted: dict[str, str],
    answers: Counter[str],
) -> None:
    token = base64.b64encode(f"{credentials['api_key']}:{credentials['api_secret']}".encode())
    headers = {"Authorization": "Basic " + token.decode(), "Content-Type": "application/json"}
    bodies = {
        kind: json.dumps({"template": "failover", "workflow": workflow}).encode()
        for kind, (workflow, _, _) in KINDS.items()
    }
    kinds, ports = itertools.cycle(KINDS), itertools.cycle(fleet.ports)
    pending: set[asyncio.Task[None]] = set()

    async def post(kind: str, port: int) -> None:
        try:
            async with session.post(
                f"http://127.0.0.1:{port}/v0.1/dispatch", data=bodies[kind], headers=headers
            ) as answer:
                body = await answer.read()
                answers[str(answer.status)] += 1
                if answer.status == 202:
                    accepted[json.loads(body)["dispatch_uuid"]] = kind
        except (TimeoutError, aiohttp.ClientError):
            answers["connection error"] += 1

    start = time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(post(next(kinds), next(ports)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def chaos(session: aiohttp.ClientSession, fleet: Fleet, every_s: float, until: float) -> int:
    kills = 0
    for port in itertools.cycle(fleet.ports):
        next_kill = time.perf_counter() + every_s
        if next_kill >= until:
            return kills
        await asyncio.sleep(every_s)
        await fleet.kill_and_restart(session, port)
        kills += 1
    return kills


async def check(
    session: aiohttp.ClientSession,
    url: str,
    credentials: dict[str, str],
    accepted: dict[str, str],
    finals: Finals,
) -> tuple[dict[str, Counter[str]], bool]:
    """Each accepted workflow against the outcome its statuses dictate. A `read` workflow
    fails over only if its read came after its deadline (a long downtime, or overload, can
    delay the WhatsApp send itself): those are looked up with GET and judged by timestamps."""
    token = base64.b64encode(f"{credentials['api_key']}:{credentials['api_secret']}".encode())
    auth = {"Authorization": "Basic " + token.decode()}
    verdicts: dict[str, Counter[str]] = defaultdict(Counter)
    for dispatch_uuid, kind in accepted.items():
        _, status, messages = KINDS[kind]
        reports = finals.by_workflow.get(dispatch_uuid, {})
        if not reports:
            verdicts[kind]["no final report"] += 1
            continue
        if len(reports) > 1:
            verdicts[kind]["several final reports"] += 1
            continue
        report = next(iter(reports.values()))
        seen = [(m["channel"], m["status"]) for m in report["_links"]["messages"]]
        if report["status"] == status and seen == messages:
            verdicts[kind]["right outcome"] += 1
            continue
        if (
            kind == "read"
            and report["status"] == "completed"
            and seen[1:] == [("sms", "delivered")]
        ):
            async with session.get(f"{url}/v0.1/dispatch/{dispatch_uuid}", headers=auth) as answer:
                whatsapp = (await answer.json())["messages"][0]
            deadline = _ms(whatsapp["sent_at"]) + 15_000
            read = [_ms(h["timestamp"]) for h in whatsapp["history"] if h["status"] == "read"]
            if not read or read[0] > deadline:
                verdicts[kind]["right outcome (read after its deadline: SMS sent)"] += 1
                continue
        verdicts[kind][f"wrong outcome: {report['status']} {seen}"] += 1
    good = all(
        all(verdict.startswith("right outcome") for verdict in counts)
        for counts in verdicts.values()
    )
    return verdicts, good


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def run(args: argparse.Namespace) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="od-chaos-"))
    database = (
        await asyncio.to_thread(fresh_postgres_schema, args.database)
        if args.database
        else f"sqlite:///{workdir / 'c.db'}"
    )
    finals = Finals()
    receiver = web.Application()
    receiver.add_routes([web.post("/final", finals.final), web.post("/status", finals.status)])
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    receiver_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    credentials = create_app(database, "chaos", f"{receiver_url}/status", f"{receiver_url}/final")
    fleet = Fleet(database, workdir, args.processes, args.lease_timeout)
    accepted: dict[str, str] = {}
    answers: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=128)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for port in fleet.ports:
                fleet.start(port)
            for port in fleet.ports:
                await fleet.until_up(session, port)
            until = time.perf_counter() + args.seconds
            killer = asyncio.create_task(chaos(session, fleet, args.kill_every, until))
            await offer_load(
                session, fleet, credentials, args.rate, args.seconds, accepted, answers
            )
            kills = await killer
            loaded_at = time.perf_counter()
            for _ in range(int(args.wait * 2)):  # the receiver fills `finals` meanwhile
                if all(uuid in finals.by_workflow for uuid in accepted):
                    break
                await asyncio.sleep(0.5)
            settled_s = time.perf_counter() - loaded_at
            await asyncio.sleep(2)  # a late second report, if any, has time to arrive
            url = f"http://127.0.0.1:{fleet.ports[0]}"
            verdicts, good = await check(session, url, credentials, accepted, finals)
    finally:
        fleet.stop()
        await runner.cleanup()
        if args.database:
            await asyncio.to_thread(drop_postgres_schema, database)
    where = "PostgreSQL" if args.database else "SQLite"
    print(
        f"chaos: {where}, {args.processes} process(es), {args.rate}/s offered for "
        f"{args.seconds:.0f} s, one SIGKILL every {args.kill_every:.0f} s"
    )
    print(f"  kills {kills}; restart to /health 200: {percentiles(fleet.restarts_ms)}")
    print(f"  answers {dict(answers)}; accepted {len(accepted):,}")
    print(f"  status webhooks {finals.statuses:,}; final reports redelivered (same webhook-id) "
          f"{finals.redelivered}; all settled {settled_s:.1f} s after the load")  # fmt: skip
    for kind in KINDS:
        print(f"  {kind:9} {dict(verdicts.get(kind, Counter()))}")
    print("  every accepted workflow: one final report, the right outcome" if good else "  FAILED")
    missing = [uuid for uuid in accepted if uuid not in finals.by_workflow]
    if missing:
        print(f"  without a final report ({workdir}): {' '.join(missing[:10])}")
    return good


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--kill-every", type=float, default=5)
    parser.add_argument("--database", help="a PostgreSQL URL (default: an SQLite file)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--lease-timeout", type=int, default=5, help="seconds (PostgreSQL)")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for reports")
    args = parser.parse_args()
    if args.processes > 1 and not args.database:
        parser.error("several processes need PostgreSQL (--database postgresql://...)")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
