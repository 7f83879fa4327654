"""Benchmarks of the failover engine end to end: a real server, sandbox, webhook receiver.

    .venv/bin/python bench/failover.py e2e --rates 1000,1500 --seconds 20
    .venv/bin/python bench/failover.py compare --rates 300,400,500 --repeat 2
    .venv/bin/python bench/failover.py timers --pending 100000
    .venv/bin/python bench/failover.py webhooks --workflows 20000
    .venv/bin/python bench/failover.py isolation --seconds 90
    .venv/bin/python bench/failover.py retention --rate 300 --seconds 180 --retention-s 30

e2e       two-step workflows whose first message is rejected (WhatsApp to ...01, then SMS to
          ...09, delivered at once: sandbox delays 0), offered at fixed rates. Prints accepted/s,
          completed/s (final report received by the receiver), accept-to-final-report latency,
          webhooks/s, and the time from the WhatsApp's rejection to the SMS's send starting
          (read from the database afterwards: rejection time in the workflow's state, send start
          in the sandbox's own log). --poll-dashboard /dashboard: an operator asks for that
          page once a second meanwhile (its latency is printed too).
          First, `GET /health` for 3 s: the machine's yardstick (see YARDSTICK_HEALTH_PER_S);
          and with each rate, transactions committed per second (from the server's /metrics).
timers    fills the server with workflows waiting on a timer (silent WhatsApp, expiry 1 day),
          measures its memory at 1,000 and at --pending, then offers probe workflows with a 15 s
          expiry and prints timer lateness: how long after the step's deadline the next
          message's send started.
compare   e2e at the same rates for SQLite with one server process beside PostgreSQL with
          1..--max-processes (the issue's comparison), in one table. Its last columns say
          what bounds each setup: how busy the first server's event loop was, and the CPU
          the whole machine spent per workflow (the database server's included).
webhooks  creates workflows that end at once (both messages rejected: 3 webhooks each) as fast
          as it can and prints the rate at which the receiver got them.
isolation four applications whose receivers accept webhooks and never answer, each offered
          --hung-rate e2e workflows/s, beside a healthy one at --healthy-rate; prints how late
          the healthy application's final reports arrived and what the hung receivers saw.
retention steady e2e load with a short --retention-s; prints the database's size on disk every
          few seconds: with retention it stops growing once rows start to expire.

The server, the receiver and this load generator share the machine; the figures include that.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_poll import DashboardPoller
from harness import (
    MetricsPoller,
    Server,
    cpu_seconds,
    create_app,
    drop_postgres_schema,
    drop_workdir,
    fresh_postgres_schema,
    machine_cpu_seconds,
    query,
    rss_kib,
    start_receiver,
    start_server,
    use_uvloop,
)
from loadgen import build_request, run_closed, run_fixed_rate

ZERO_DELAY = ["--sandbox-delivered-after-ms", "0", "--sandbox-read-after-ms", "0"]


def step(channel: str, number: str, failover: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "to": {"type": channel, "number": number},
        "from": {"type": channel, "number": "447700900000"},
        "message": {"content": {"type": "text", "text": "Your code is 64873"}},
    }
    if failover is not None:
        message["failover"] = failover
    return message


def post_request(server: Server, workflow: list[dict[str, Any]]) -> bytes:
    credentials = server.credentials
    token = base64.b64encode(f"{credentials['api_key']}:{credentials['api_secret']}".encode())
    body = json.dumps(
        {"template": "failover", "workflow": workflow}, separators=(",", ":")
    ).encode()
    headers = [("Authorization", "Basic " + token.decode()), ("Content-Type", "application/json")]
    return build_request("POST", "/v0.1/dispatch", body=body, headers=headers)


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    return f"p50 {at(0.5):.1f} ms  p99 {at(0.99):.1f} ms  max {ordered[-1]:.1f} ms"


def uuid_ms(dispatch_uuid: str) -> int:
    return int(dispatch_uuid.replace("-", "")[:12], 16)


def receiver_stats(url: str, finals: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(
        f"{url}/stats", params={"finals": "1"} if finals else {}, timeout=30
    ).json()
    return result


def wait_for_finals(receiver: str, expected: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = receiver_stats(receiver)
        if stats["final"] >= expected:
            break
        time.sleep(0.2)
    return receiver_stats(receiver, finals=True)


def next_send_latencies(database: str) -> list[float]:
    """Per workflow: from the first message's rejection to the second's send starting."""
    latencies = []
    sent = dict(query(database, "SELECT message_uuid, first_sent_at_ms FROM sandbox_sends"))
    for (state_json,) in query(database, "SELECT state_json FROM workflows"):
        messages = json.loads(str(state_json))["messages"]
        if len(messages) < 2 or not messages[0]["history"]:
            continue
        rejected_at = messages[0]["history"][0]["at_ms"]
        started = sent.get(messages[1]["message_uuid"])
        if isinstance(started, int):
            latencies.append(float(started - rejected_at))
    return latencies


# -- e2e ---------------------------------------------------------------------------------------


@dataclass
class E2eResult:
    rate: int
    accepted_per_s: float
    completed_per_s: float  # final reports received during the run, per second of it
    finals: int
    accepted: int
    last_after_ms: int  # the last final report, after the load stopped
    overall_per_s: float  # every final report, over the time until the last one
    final_latencies: list[float]
    post_latencies: list[float]
    webhooks: int
    webhooks_per_s: float
    failover_latencies: list[float]  # rejection -> next send started
    rss_kib: int
    peak_kib: int
    cpu_ms_per_workflow: float  # the server processes' CPU, per final report
    # The first server's event loop (its main thread): CPU per final report, and how busy it
    # was while the load was offered. One process serves one event loop, so where this
    # nears 100 % the loop is what bounds throughput, whatever the other threads do.
    loop_ms_per_workflow: float
    loop_busy: float
    # Every core's busy time per final report: the bound where no one loop is (PostgreSQL
    # with several processes on a machine whose cores they share with the database).
    machine_ms_per_workflow: float
    metrics_polls: str | None = None  # with --poll-metrics
    dashboard_polls: list[float] | None = None  # with --poll-dashboard: each one's latency
    dashboard_failures: int = 0
    health_per_s: float | None = None  # with `yardstick_s`: GET /health before the load
    # Database transactions committed per second while the load was offered (every server's):
    # the fewer per workflow, the more each commit's fixed costs are shared.
    commits_per_s: float = 0.0


# The machine's yardstick: issue 9's throughput figures were taken where `GET /health` (64
# connections, the project's load generator) answered this many per second. The same code
# has measured half as fast on other days, so a throughput figure without it says little.
YARDSTICK_HEALTH_PER_S = "19,000-20,000/s"


async def health_rate(ports: list[int], seconds: float) -> float:
    """`GET /health` answered per second over 64 connections, closed loop."""
    health = build_request("GET", "/health")
    result = await run_closed(
        "GET /health", "127.0.0.1", ports, lambda _: health, connections=64, seconds=seconds
    )
    return result.statuses[200] / result.seconds


def commits(ports: list[int]) -> float:
    """Transactions the servers have committed so far, from their `/metrics`."""
    total = 0.0
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("opendispatch_database_commit_seconds_count"):
                total += float(line.split()[-1])
    return total


def e2e_run(
    rate: int,
    seconds: float,
    database: str | None,
    processes: int,
    poll_metrics: bool = False,
    poll_dashboard: str | None = None,
    yardstick_s: float = 0.0,
    serve_args: Sequence[str] = (),
) -> E2eResult:
    """One fixed-rate run against fresh servers (and a fresh PostgreSQL schema);
    `poll_dashboard`: a dashboard page a signed-in operator asks for once a second;
    `yardstick_s`: first measure `GET /health` this long (see `YARDSTICK_HEALTH_PER_S`)."""
    workdir = Path(tempfile.mkdtemp(prefix="od-e2e-"))
    receiver, receiver_url = start_receiver()
    server = start_server(
        workdir,
        status_url=f"{receiver_url}/status",
        final_report_url=f"{receiver_url}/final",
        extra=ZERO_DELAY + list(serve_args),
        database=fresh_postgres_schema(database) if database else None,
        processes=processes,
    )
    try:
        health_per_s = asyncio.run(health_rate(server.ports, yardstick_s)) if yardstick_s else None
        first = step("whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"})
        request = post_request(server, [first, step("sms", "447700900009")])
        dashboard = (
            None
            if poll_dashboard is None
            else DashboardPoller(server.url, server.database, poll_dashboard)
        )
        cpu_before = sum(cpu_seconds(p.pid) for p in server.processes)
        machine_before = machine_cpu_seconds()
        loop = server.process.pid
        loop_before = cpu_seconds(loop, thread=loop)
        commits_before = commits(server.ports)
        if dashboard is not None:
            dashboard.start()
        started_ms = time.time_ns() // 1_000_000
        with MetricsPoller(server.ports if poll_metrics else []) as poller:
            result = asyncio.run(
                run_fixed_rate(
                    f"offered {rate:,}/s", "127.0.0.1", server.ports, lambda _, r=request: r,
                    rate=rate, connections=64, seconds=seconds,
                )
            )  # fmt: skip
            ended_ms = time.time_ns() // 1_000_000
            loop_during = cpu_seconds(loop, thread=loop) - loop_before
            commits_during = commits(server.ports) - commits_before
            accepted = result.statuses[202]
            stats = wait_for_finals(receiver_url, accepted, timeout_s=120)
        if dashboard is not None:
            dashboard.stop()
        finals: dict[str, int] = stats["finals"]
        within = [t for t in finals.values() if t <= ended_ms]
        last = max(finals.values()) if finals else ended_ms
        rss, peak = rss_kib(server.process.pid)  # the first process
        cpu = sum(cpu_seconds(p.pid) for p in server.processes) - cpu_before
        loop_cpu = cpu_seconds(loop, thread=loop) - loop_before
        machine_cpu = machine_cpu_seconds() - machine_before
        webhooks = stats["status"] + stats["final"]
        server.stop()
        return E2eResult(
            rate=rate,
            accepted_per_s=accepted / result.seconds,
            completed_per_s=len(within) / ((ended_ms - started_ms) / 1000),
            finals=len(finals),
            accepted=accepted,
            last_after_ms=last - ended_ms,
            overall_per_s=len(finals) / ((max(last, ended_ms) - started_ms) / 1000),
            final_latencies=[float(t - uuid_ms(u)) for u, t in finals.items()],
            post_latencies=[x * 1000 for x in result.latencies_s],
            webhooks=webhooks,
            webhooks_per_s=webhooks / ((last - started_ms) / 1000),
            failover_latencies=next_send_latencies(server.database),
            rss_kib=rss,
            peak_kib=peak,
            cpu_ms_per_workflow=cpu * 1000 / max(1, len(finals)),
            loop_ms_per_workflow=loop_cpu * 1000 / max(1, len(finals) / processes),
            loop_busy=loop_during / ((ended_ms - started_ms) / 1000),
            machine_ms_per_workflow=machine_cpu * 1000 / max(1, len(finals)),
            health_per_s=health_per_s,
            commits_per_s=commits_during / ((ended_ms - started_ms) / 1000),
            metrics_polls=poller.summary() if poll_metrics else None,
            dashboard_polls=None if dashboard is None else dashboard.latencies_ms,
            dashboard_failures=0 if dashboard is None else dashboard.failures,
        )
    finally:
        server.stop()
        receiver.terminate()
        drop_workdir(workdir)
        drop_postgres_schema(server.database)


def e2e(args: argparse.Namespace) -> None:
    backend = "PostgreSQL" if args.database else "SQLite"
    print("e2e: two-step workflows, WhatsApp rejected -> SMS delivered;", end=" ")
    print(f"{backend}, {args.processes} server process(es), {args.seconds:.0f} s per rate")
    if args.poll_dashboard:
        print(f"  with {args.poll_dashboard} asked for once a second by a signed-in operator")
    for index, rate in enumerate(args.rates):
        r = e2e_run(
            rate, args.seconds, args.database, args.processes, args.poll_metrics,
            args.poll_dashboard, yardstick_s=3.0 if index == 0 else 0.0,
            serve_args=args.serve_args.split(),
        )  # fmt: skip
        if r.health_per_s is not None:
            print_yardstick(r.health_per_s)
        print(
            f"  offered {rate:>6,}/s  accepted {r.accepted_per_s:>7,.0f}/s  "
            f"completed {r.completed_per_s:>7,.0f}/s during the run, {r.finals:,}/{r.accepted:,} "
            f"in all, last {r.last_after_ms:,} ms after ({r.overall_per_s:,.0f}/s overall)"
        )
        print(f"    accept -> final report received: {percentiles(r.final_latencies)}")
        print(f"    POST latency: {percentiles(r.post_latencies)}")
        print(f"    webhooks received {r.webhooks:,} = {r.webhooks_per_s:,.0f}/s")
        print(f"    rejection -> next send started: {percentiles(r.failover_latencies)}")
        print(f"    server RSS {r.rss_kib / 1024:.0f} MiB (peak {r.peak_kib / 1024:.0f} MiB)")
        print(f"    server CPU per workflow: {r.cpu_ms_per_workflow:.2f} ms")
        print(
            f"    event loop thread: {r.loop_ms_per_workflow:.2f} ms per workflow, "
            f"{r.loop_busy:.0%} busy while offered"
        )
        print(
            f"    commits: {r.commits_per_s:,.0f}/s while offered, "
            f"{r.accepted_per_s / max(r.commits_per_s, 1e-9):.1f} workflows accepted per commit"
        )
        print(f"    machine CPU per workflow (every process): {r.machine_ms_per_workflow:.2f} ms")
        if r.metrics_polls is not None:
            print(f"    {r.metrics_polls}")
        if r.dashboard_polls:
            print(
                f"    dashboard page ({len(r.dashboard_polls)} polls, "
                f"{r.dashboard_failures} failed): {percentiles(r.dashboard_polls)}"
            )


def print_yardstick(health_per_s: float) -> None:
    print(
        f"  this machine: GET /health {health_per_s:,.0f}/s before the first run (issue 9's "
        f"figures were taken where it answered {YARDSTICK_HEALTH_PER_S})"
    )


def compare(args: argparse.Namespace) -> None:
    """SQLite with one process beside PostgreSQL with 1..N, at the same offered rates."""
    setups: list[tuple[str, str | None, int]] = [("SQLite", None, 1)]
    setups += [("PostgreSQL", args.database, n) for n in range(1, args.max_processes + 1)]
    print(
        f"compare: e2e (WhatsApp rejected -> SMS delivered), {args.seconds:.0f} s per rate, "
        f"rates {', '.join(map(str, args.rates))}/s, {args.repeat} run(s) each"
    )
    print(
        f"  {'setup':<16} {'offered':>8} {'accepted':>9} {'completed':>10} {'overall':>8} "
        f" failover p50/p99 ms  loop busy  machine ms/wf"
    )
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, database, processes in setups:
            label = f"{name} x{processes}"
            for rate in args.rates:
                # The yardstick once, before the first run (`best` is empty until then).
                r = e2e_run(
                    rate, args.seconds, database, processes, yardstick_s=0.0 if best else 3.0
                )
                if r.health_per_s is not None:
                    print_yardstick(r.health_per_s)
                ordered = sorted(r.failover_latencies) or [float("nan")]
                p50 = ordered[len(ordered) // 2]
                p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
                print(
                    f"  {label:<16} {rate:>6,}/s {r.accepted_per_s:>7,.0f}/s "
                    f"{r.completed_per_s:>8,.0f}/s {r.overall_per_s:>6,.0f}/s  "
                    f"{p50:>6.0f} / {p99:<6.0f}     {r.loop_busy:>5.0%}  "
                    f"{r.machine_ms_per_workflow:>13.2f}",
                    flush=True,
                )
                best[label] = max(best.get(label, 0.0), r.completed_per_s)
    print("  most completed/s during a run:")
    for label, value in best.items():
        print(f"    {label:<16} {value:>7,.0f}/s")


# -- timers --------------------------------------------------------------------------------------


async def create(server: Server, workflow: list[dict[str, Any]], count: int) -> None:
    """Exactly `count` accepted workflows, as fast as 32 connections go."""
    request = post_request(server, workflow)
    accepted = 0
    while accepted < count:
        result = await run_closed(
            "create", "127.0.0.1", server.port, lambda _: request,
            connections=32, seconds=600, total=count - accepted,
        )  # fmt: skip
        accepted += result.statuses[202]


def wait_sent(database: str, count: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    done = 0
    while time.monotonic() < deadline:
        done = int(query(database, "SELECT count(*) FROM sandbox_sends")[0][0])  # type: ignore[call-overload]
        if done >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"only {done} of {count} sends happened")


def timer_lateness(database: str, expiry_ms: int) -> list[float]:
    latencies = []
    sent = dict(query(database, "SELECT message_uuid, first_sent_at_ms FROM sandbox_sends"))
    for (state_json,) in query(
        database,
        "SELECT state_json FROM workflows WHERE request_json LIKE ? ORDER BY dispatch_uuid",
        (f'%"expiry_time":{expiry_ms // 1000},%',),
    ):
        messages = json.loads(str(state_json))["messages"]
        if len(messages) == 2 and messages[1]["message_uuid"] in sent:
            deadline = messages[0]["sent_at_ms"] + expiry_ms
            latencies.append(float(sent[messages[1]["message_uuid"]] - deadline))  # type: ignore[operator]
    return latencies


def timers(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="od-timers-"))
    receiver, receiver_url = start_receiver()
    server = start_server(
        workdir, status_url=f"{receiver_url}/status", final_report_url=f"{receiver_url}/final"
    )
    silent_day = [
        step("whatsapp", "447700900004", {"expiry_time": 86_400, "condition_status": "read"}),
        step("sms", "447700900004"),
    ]
    probe = [
        step("whatsapp", "447700900004", {"expiry_time": 15, "condition_status": "read"}),
        step("sms", "447700900004"),
    ]
    try:
        pending = 1000
        asyncio.run(create(server, silent_day, pending))
        wait_sent(server.database, pending)
        time.sleep(2)
        rss_small, _ = rss_kib(server.process.pid)
        print(f"timers: {pending:,} workflows pending on a timer:", end=" ")
        print(f"server RSS {rss_small / 1024:.1f} MiB")
        asyncio.run(probe_lateness(server, probe, args, "with 1,000 pending"))
        started = time.monotonic()
        asyncio.run(create(server, silent_day, args.pending - pending))
        wait_sent(server.database, args.pending + int(args.probe_rate * args.probe_seconds) * 2)
        print(f"  created {args.pending - pending:,} more in {time.monotonic() - started:.0f} s")
        time.sleep(2)
        rss_large, peak = rss_kib(server.process.pid)
        change = (rss_large - rss_small) / rss_small * 100
        print(
            f"  {args.pending:,} pending: server RSS {rss_large / 1024:.1f} MiB "
            f"({change:+.1f} % vs 1,000 pending; peak {peak / 1024:.1f} MiB)"
        )
        asyncio.run(probe_lateness(server, probe, args, f"with {args.pending:,} pending"))
    finally:
        server.stop()
        receiver.terminate()
        drop_workdir(workdir)


async def probe_lateness(
    server: Server, probe: list[dict[str, Any]], args: argparse.Namespace, label: str
) -> None:
    """Offer 15 s-expiry workflows at a steady rate; measure lateness once they all fired."""
    before = set(timer_lateness_keys(server.database))
    request = post_request(server, probe)
    await run_fixed_rate(
        "probe", "127.0.0.1", server.port, lambda _: request,
        rate=args.probe_rate, connections=8, seconds=args.probe_seconds,
    )  # fmt: skip
    await asyncio.sleep(15 + 3)
    lateness = [
        late
        for key, late in zip(
            timer_lateness_keys(server.database),
            timer_lateness(server.database, 15_000),
            strict=False,
        )
        if key not in before
    ]
    print(
        f"  timer lateness {label} ({args.probe_rate}/s probes for {args.probe_seconds:.0f} s, "
        f"{len(lateness)} fired): {percentiles(lateness)}"
    )


def timer_lateness_keys(database: str) -> list[str]:
    sent = {row[0] for row in query(database, "SELECT message_uuid FROM sandbox_sends")}
    keys = []
    for dispatch_uuid, state_json in query(
        database,
        "SELECT dispatch_uuid, state_json FROM workflows WHERE request_json LIKE ?"
        " ORDER BY dispatch_uuid",
        ('%"expiry_time":15,%',),
    ):
        messages = json.loads(str(state_json))["messages"]
        if len(messages) == 2 and messages[1]["message_uuid"] in sent:
            keys.append(str(dispatch_uuid))
    return keys


# -- webhooks ------------------------------------------------------------------------------------


def webhooks(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="od-webhooks-"))
    receiver, receiver_url = start_receiver()
    server = start_server(
        workdir, status_url=f"{receiver_url}/status", final_report_url=f"{receiver_url}/final"
    )
    workflow = [
        step("whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"}),
        step("sms", "447700900001"),
    ]
    try:
        started = time.monotonic()
        asyncio.run(create(server, workflow, args.workflows))
        created = time.monotonic() - started
        expected = args.workflows * 3  # rejected, rejected, final report
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stats = receiver_stats(receiver_url)
            samples.append((time.monotonic(), stats["status"] + stats["final"]))
            if samples[-1][1] >= expected:
                break
            time.sleep(0.25)
        total = samples[-1][1]
        elapsed = samples[-1][0] - started
        print(f"webhooks: {args.workflows:,} workflows created in {created:.1f} s")
        print(f"  {total:,} of {expected:,} webhooks received in {elapsed:.1f} s:", end=" ")
        print(f"{total / elapsed:,.0f}/s")
        rates = [
            (later[1] - earlier[1]) / (later[0] - earlier[0])
            for earlier, later in zip(samples, samples[4:], strict=False)
        ]
        if rates:
            median, best = statistics.median(rates), max(rates)
            print(f"  delivery rate over 1 s windows: median {median:,.0f}/s, best {best:,.0f}/s")
    finally:
        server.stop()
        receiver.terminate()
        drop_workdir(workdir)


# -- isolation -----------------------------------------------------------------------------------


def isolation(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="od-isolation-"))
    receiver, receiver_url = start_receiver()
    hung = [start_receiver(hang=True) for _ in range(4)]
    server = start_server(
        workdir,
        status_url=f"{receiver_url}/status",
        final_report_url=f"{receiver_url}/final",
        extra=ZERO_DELAY,
    )
    try:
        hung_apps = [
            create_app(server.database, f"hung-{n}", f"{url}/status", f"{url}/final")
            for n, (_, url) in enumerate(hung)
        ]
        first = step("whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"})
        workflow = [first, step("sms", "447700900009")]
        healthy_request = post_request(server, workflow)
        hung_requests = [
            post_request(Server([], [], server.database, app), workflow) for app in hung_apps
        ]

        async def load() -> list[Any]:
            runs = [
                run_fixed_rate(
                    "healthy", "127.0.0.1", server.port, lambda _: healthy_request,
                    rate=args.healthy_rate, connections=4, seconds=args.seconds,
                )
            ] + [
                run_fixed_rate(
                    f"hung-{n}", "127.0.0.1", server.port, lambda _, r=request: r,
                    rate=args.hung_rate, connections=8, seconds=args.seconds,
                )
                for n, request in enumerate(hung_requests)
            ]  # fmt: skip
            return list(await asyncio.gather(*runs))

        started_ms = time.time_ns() // 1_000_000
        results = asyncio.run(load())
        accepted = results[0].statuses[202]
        stats = wait_for_finals(receiver_url, accepted, timeout_s=30)
        finals: dict[str, int] = stats["finals"]
        lateness = [float(t - uuid_ms(u)) for u, t in finals.items() if uuid_ms(u) >= started_ms]
        swallowed = [
            receiver_stats(url)["status"] + receiver_stats(url)["final"] for _, url in hung
        ]
        hung_accepted = [r.statuses[202] for r in results[1:]]
        print(
            f"isolation: 4 applications with hung receivers at {args.hung_rate}/s each "
            f"(accepted {', '.join(map(str, hung_accepted))}), a healthy one at "
            f"{args.healthy_rate}/s, {args.seconds:.0f} s, SQLite"
        )
        print(
            f"  healthy: {len(finals):,} of {accepted:,} final reports received, "
            f"{stats['status']:,} status webhooks"
        )
        print(f"  healthy accept -> final report received: {percentiles(lateness)}")
        print(f"  requests the hung receivers saw: {', '.join(map(str, swallowed))}")
    finally:
        server.stop()
        receiver.terminate()
        drop_workdir(workdir)
        for process, _ in hung:
            process.terminate()


# -- retention -----------------------------------------------------------------------------------


def retention(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="od-retention-"))
    receiver, receiver_url = start_receiver()
    days = args.retention_s / 86_400
    server = start_server(
        workdir,
        status_url=f"{receiver_url}/status",
        final_report_url=f"{receiver_url}/final",
        # --retention-s 0: run without the flag (retention off, or a version without it).
        extra=[*ZERO_DELAY, *(["--retention-days", f"{days:.9f}"] if days > 0 else [])],
    )
    path = server.sqlite_path
    assert path is not None

    def size_mib(suffix: str = "") -> float:
        file = path.with_name(path.name + suffix)
        return file.stat().st_size / 2**20 if file.exists() else 0.0

    first = step("whatsapp", "447700900001", {"expiry_time": 600, "condition_status": "read"})
    request = post_request(server, [first, step("sms", "447700900009")])
    print(
        f"retention: e2e workflows at {args.rate}/s for {args.seconds:.0f} s, retention "
        f"{args.retention_s:.0f} s, SQLite; size on disk every {args.every:.0f} s"
    )
    print(f"  {'t (s)':>6} {'db MiB':>8} {'wal MiB':>8} {'workflows':>10} {'webhooks':>9}")
    samples: list[tuple[float, float]] = []

    async def sample(started: float) -> None:
        while True:
            await asyncio.sleep(args.every)
            rows = await asyncio.to_thread(
                query,
                server.database,
                "SELECT (SELECT count(*) FROM workflows), (SELECT count(*) FROM webhooks)",
            )
            elapsed = time.monotonic() - started
            samples.append((elapsed, size_mib()))
            print(
                f"  {elapsed:>6.0f} {size_mib():>8.1f} {size_mib('-wal'):>8.1f} "
                f"{rows[0][0]:>10,} {rows[0][1]:>9,}",
                flush=True,
            )

    async def run() -> Any:
        sampler = asyncio.ensure_future(sample(time.monotonic()))
        try:
            return await run_fixed_rate(
                "retention", "127.0.0.1", server.port, lambda _: request,
                rate=args.rate, connections=32, seconds=args.seconds,
            )  # fmt: skip
        finally:
            sampler.cancel()

    try:
        result = asyncio.run(run())
        print(f"  accepted {result.statuses[202]:,} workflows")
        later = [size for elapsed, size in samples if elapsed >= args.retention_s * 2]
        if len(later) >= 2:
            print(
                f"  database file from {args.retention_s * 2:.0f} s on: "
                f"{min(later):.1f} .. {max(later):.1f} MiB "
                f"(first {later[0]:.1f}, last {later[-1]:.1f})"
            )
    finally:
        server.stop()
        receiver.terminate()
        drop_workdir(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    e2e_parser = modes.add_parser("e2e")
    e2e_parser.add_argument(
        "--rates", default="1000", type=lambda t: [int(r) for r in t.split(",")]
    )
    e2e_parser.add_argument("--seconds", type=float, default=20)
    e2e_parser.add_argument("--database", help="postgresql://... (default: an SQLite file)")
    e2e_parser.add_argument("--processes", type=int, default=1, help="servers on one database")
    e2e_parser.add_argument(
        "--serve-args",
        default="",
        help='more `opendispatch serve` options, e.g. "--max-queue-delay-ms 50"',
    )
    e2e_parser.add_argument(
        "--poll-metrics", action="store_true", help="GET /metrics once a second during the run"
    )
    e2e_parser.add_argument(
        "--poll-dashboard",
        metavar="PATH",
        help="a dashboard page (e.g. /dashboard) asked for once a second during the run",
    )
    timers_parser = modes.add_parser("timers")
    timers_parser.add_argument("--pending", type=int, default=100_000)
    timers_parser.add_argument("--probe-rate", type=int, default=100)
    timers_parser.add_argument("--probe-seconds", type=float, default=20)
    compare_parser = modes.add_parser("compare")
    compare_parser.add_argument(
        "--rates", default="300,400,500", type=lambda t: [int(r) for r in t.split(",")]
    )
    compare_parser.add_argument("--seconds", type=float, default=20)
    compare_parser.add_argument(
        "--database", default="postgresql://postgres@127.0.0.1:5432/test", help="postgresql://..."
    )
    compare_parser.add_argument("--max-processes", type=int, default=2)
    compare_parser.add_argument("--repeat", type=int, default=1)
    webhooks_parser = modes.add_parser("webhooks")
    webhooks_parser.add_argument("--workflows", type=int, default=20_000)
    isolation_parser = modes.add_parser("isolation")
    isolation_parser.add_argument("--seconds", type=float, default=90)
    isolation_parser.add_argument("--hung-rate", type=int, default=50)
    isolation_parser.add_argument("--healthy-rate", type=int, default=10)
    retention_parser = modes.add_parser("retention")
    retention_parser.add_argument("--rate", type=int, default=300)
    retention_parser.add_argument("--seconds", type=float, default=180)
    retention_parser.add_argument("--retention-s", type=float, default=30)
    retention_parser.add_argument("--every", type=float, default=10)
    args = parser.parse_args()
    use_uvloop()
    modes_run = {
        "e2e": e2e,
        "compare": compare,
        "timers": timers,
        "webhooks": webhooks,
        "isolation": isolation,
        "retention": retention,
    }
    modes_run[args.mode](args)


if __name__ == "__main__":
    main()
