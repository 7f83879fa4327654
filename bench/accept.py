"""Benchmark: durably accepted workflows/s, against `GET /health` on the same server.

Accepting a workflow also starts it: the engine sends its first message in the same server.
The recipient here ends in 4 (the sandbox sends and then stays silent), so each workflow costs
its accept, one send and one `submitted` webhook (to a local receiver), and waits on its
600 s expiry: this measures accepting, not the rest of a workflow's life (`failover.py e2e`
measures that).

    .venv/bin/python bench/accept.py                    # starts its own server on SQLite
    .venv/bin/python bench/accept.py --connections 64 --seconds 10 --rates 1000,3000,6000
    .venv/bin/python bench/accept.py --url http://127.0.0.1:8080 --api-key K --api-secret S
    .venv/bin/python bench/accept.py --api both --rates 1000   # v0.1 and v1, one server

Prints, for POST /v0.1/dispatch with a two-step workflow (WhatsApp failing over to SMS), or
with `--api v1` the same through POST /v1/messages (a `failover` list), and for GET /health:
closed-loop throughput with p50/p99 over N keep-alive connections; then POST
latency at fixed offered rates (measured from each request's scheduled time); then the
server's memory. When it started the server itself, it checks afterwards that the database
holds exactly as many workflows as it received 202s: "accepted" means "durable".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    MetricsPoller,
    cpu_seconds,
    drop_postgres_schema,
    drop_workdir,
    fresh_postgres_schema,
    query,
    rss_kib,
    start_receiver,
    start_server,
    use_uvloop,
)
from loadgen import build_request, run_closed, run_fixed_rate

TWO_STEP = {
    "template": "failover",
    "workflow": [
        {
            "to": {"type": "whatsapp", "number": "447700900004"},
            "from": {"type": "whatsapp", "number": "447700900000"},
            "message": {"content": {"type": "text", "text": "Your code is 64873"}},
            "failover": {"expiry_time": 600, "condition_status": "read"},
        },
        {
            "to": {"type": "sms", "number": "447700900004"},
            "from": {"type": "sms", "number": "447700900000"},
            "message": {"content": {"type": "text", "text": "Your code is 64873"}},
        },
    ],
}
# The same workflow through the Messages API v1: WhatsApp, failing over to SMS on rejection.
V1_WITH_FAILOVER = {
    "channel": "whatsapp",
    "message_type": "text",
    "to": "447700900004",
    "from": "447700900000",
    "text": "Your code is 64873",
    "failover": [
        {
            "channel": "sms",
            "message_type": "text",
            "to": "447700900004",
            "from": "447700900000",
            "text": "Your code is 64873",
        }
    ],
}
APIS = {"v0.1": ("/v0.1/dispatch", TWO_STEP), "v1": ("/v1/messages", V1_WITH_FAILOVER)}


async def measure(
    args: argparse.Namespace, ports: list[int], authorization: str, pids: list[int]
) -> tuple[list[str], int]:
    """Returns the report lines and how many 202s were received in all runs. `pids`: the
    servers this script started, whose CPU per 202 is reported at each fixed rate (steadier
    than throughput on a shared machine)."""
    headers = [("Authorization", authorization), ("Content-Type", "application/json")]
    posts = {
        api: (path, build_request("POST", path, body=json.dumps(body).encode(), headers=headers))
        for api, (path, body) in APIS.items()
        if args.api in (api, "both")
    }
    health = build_request("GET", "/health")
    lines: list[str] = []
    answered_202 = 0
    closed_rates: dict[str, float] = {}
    for api, (path, post) in posts.items():
        # Warm up: first requests pay for imports, caches and SQLite's first pages.
        warm = await run_closed(
            "warm-up", "127.0.0.1", ports, lambda _, post=post: post, connections=8, seconds=1
        )
        accepted = await run_closed(
            f"POST {path} c={args.connections}",
            "127.0.0.1",
            ports,
            lambda _, post=post: post,
            connections=args.connections,
            seconds=args.seconds,
        )
        lines.append(accepted.line())
        # Above capacity admission control answers 503 at once: only the 202s are accepted.
        closed_rates[api] = accepted.statuses[202] / accepted.seconds
        lines.append(f"  accepted (202) {closed_rates[api]:,.0f}/s")
        answered_202 += warm.statuses[202] + accepted.statuses[202]
    healthy = await run_closed(
        f"GET /health c={args.connections}",
        "127.0.0.1",
        ports,
        lambda _: health,
        connections=args.connections,
        seconds=args.seconds,
    )
    lines.append(healthy.line())
    for api, rate in closed_rates.items():
        lines.append(f"accepted/health ratio ({api}): {rate / healthy.rate:.2f}")
    if len(closed_rates) == 2:
        lines.append(
            f"v1/v0.1 accepted (202) ratio: {closed_rates['v1'] / closed_rates['v0.1']:.2f}"
        )
    for path, post in posts.values():
        for rate in args.rates:
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            fixed = await run_fixed_rate(
                f"POST {path} at {rate:,}/s offered",
                "127.0.0.1",
                ports,
                lambda _, post=post: post,
                rate=rate,
                connections=args.connections,
                seconds=args.seconds,
            )
            lines.append(fixed.line())
            if pids:
                cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
                per_202 = cpu * 1000 / max(1, fixed.statuses[202])
                lines.append(f"  server CPU per 202: {per_202:.2f} ms")
            answered_202 += fixed.statuses[202]
    return lines, answered_202


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--api-key")
    parser.add_argument("--api-secret")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rates",
        default="1000,3000,6000",
        type=lambda text: [int(r) for r in text.split(",") if r],
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for the server this script starts",
    )
    parser.add_argument(
        "--api",
        choices=("v0.1", "v1", "both"),
        default="v0.1",
        help="POST /v0.1/dispatch (the Dispatch API), /v1/messages (the Messages API v1, "
        "the same two-step failover), or both in turn on the same server",
    )
    parser.add_argument("--database", help="postgresql://... (default: an SQLite file)")
    parser.add_argument("--processes", type=int, default=1, help="servers on one database")
    parser.add_argument(
        "--poll-metrics", action="store_true", help="GET /metrics once a second during the run"
    )
    args = parser.parse_args()
    use_uvloop()

    server = receiver = None
    workdir = Path(tempfile.mkdtemp(prefix="od-bench-"))
    if args.url:
        ports = [int(args.url.rsplit(":", 1)[1].strip("/"))]
        key, secret = args.api_key, args.api_secret
    else:
        receiver, receiver_url = start_receiver()
        server = start_server(
            workdir,
            status_url=f"{receiver_url}/status",
            extra=args.server_arg,
            database=fresh_postgres_schema(args.database) if args.database else None,
            processes=args.processes,
        )
        ports = server.ports
        key, secret = server.credentials["api_key"], server.credentials["api_secret"]
    authorization = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()

    backend = "PostgreSQL" if args.database else "SQLite"
    print(
        f"OpenDispatch accept benchmark: {os.cpu_count()} CPUs, {backend}, "
        f"{len(ports)} server process(es), load generator in this process, "
        f"{args.connections} connections, {args.seconds:.0f} s per run"
    )
    try:
        with MetricsPoller(ports if args.poll_metrics else []) as poller:
            pids = [] if server is None else [p.pid for p in server.processes]
            lines, answered_202 = asyncio.run(measure(args, ports, authorization, pids))
        for line in lines:
            print(line)
        if args.poll_metrics:
            print(poller.summary())
        if server is not None:
            rss, peak = rss_kib(server.process.pid)
            print(f"server RSS {rss / 1024:.0f} MiB (peak {peak / 1024:.0f} MiB) per process")
    finally:
        if server is not None:
            server.stop()
        if receiver is not None:
            receiver.terminate()
    if server is not None:
        stored = query(server.database, "SELECT count(*) FROM workflows")[0][0]
        verdict = "every 202 is stored" if stored == answered_202 else "MISMATCH"
        print(f"202s received {answered_202:,}, workflows stored {stored:,}: {verdict}")
        drop_postgres_schema(server.database)
    drop_workdir(workdir)


if __name__ == "__main__":
    main()
