"""Benchmark: durably accepted workflows/s, against `GET /health` on the same server.

    .venv/bin/python bench/accept.py                    # starts its own server on SQLite
    .venv/bin/python bench/accept.py --connections 64 --seconds 10 --rates 1000,3000,6000
    .venv/bin/python bench/accept.py --url http://127.0.0.1:8080 --api-key K --api-secret S

Prints, for POST /v0.1/dispatch with a two-step workflow (WhatsApp failing over to SMS) and
for GET /health: closed-loop throughput with p50/p99 over N keep-alive connections; then POST
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
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import build_request, run_closed, run_fixed_rate

TWO_STEP = {
    "template": "failover",
    "workflow": [
        {
            "to": {"type": "whatsapp", "number": "447700900001"},
            "from": {"type": "whatsapp", "number": "447700900000"},
            "message": {"content": {"type": "text", "text": "Your code is 64873"}},
            "failover": {"expiry_time": 600, "condition_status": "read"},
        },
        {
            "to": {"type": "sms", "number": "447700900001"},
            "from": {"type": "sms", "number": "447700900000"},
            "message": {"content": {"type": "text", "text": "Your code is 64873"}},
        },
    ],
}


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def start_server(
    workdir: Path, port: int, extra: list[str]
) -> tuple[subprocess.Popen[bytes], dict]:
    database = f"sqlite:///{workdir / 'bench.db'}"
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "opendispatch",
            "apps",
            "create",
            "--name",
            "bench",
            "--status-url",
            "http://127.0.0.1:9/status",
            "--database",
            database,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    credentials = json.loads(created.stdout)
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opendispatch",
            "serve",
            "--port",
            str(port),
            "--database",
            database,
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server, credentials
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("server did not start; see " + str(workdir / "server.log"))


async def measure(args: argparse.Namespace, port: int, authorization: str) -> tuple[list[str], int]:
    """Returns the report lines and how many 202s were received in all runs."""
    body = json.dumps(TWO_STEP).encode()
    post = build_request(
        "POST",
        "/v0.1/dispatch",
        body=body,
        headers=[("Authorization", authorization), ("Content-Type", "application/json")],
    )
    health = build_request("GET", "/health")
    # Warm up: first requests pay for imports, caches and SQLite's first pages.
    warm = await run_closed("warm-up", "127.0.0.1", port, lambda _: post, connections=8, seconds=1)
    accepted = await run_closed(
        f"POST /v0.1/dispatch c={args.connections}",
        "127.0.0.1",
        port,
        lambda _: post,
        connections=args.connections,
        seconds=args.seconds,
    )
    healthy = await run_closed(
        f"GET /health c={args.connections}",
        "127.0.0.1",
        port,
        lambda _: health,
        connections=args.connections,
        seconds=args.seconds,
    )
    lines = [accepted.line(), healthy.line()]
    lines.append(f"accepted/health ratio: {accepted.rate / healthy.rate:.2f}")
    answered_202 = warm.statuses[202] + accepted.statuses[202]
    for rate in args.rates:
        fixed = await run_fixed_rate(
            f"POST at {rate:,}/s offered",
            "127.0.0.1",
            port,
            lambda _: post,
            rate=rate,
            connections=args.connections,
            seconds=args.seconds,
        )
        lines.append(fixed.line())
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
    args = parser.parse_args()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    server = None
    workdir = Path(tempfile.mkdtemp(prefix="od-bench-"))
    if args.url:
        port = int(args.url.rsplit(":", 1)[1].strip("/"))
        key, secret = args.api_key, args.api_secret
    else:
        port = 18080 + os.getpid() % 1000
        server, credentials = start_server(workdir, port, args.server_arg)
        key, secret = credentials["api_key"], credentials["api_secret"]
    authorization = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()

    print(
        f"OpenDispatch accept benchmark: {os.cpu_count()} CPUs, load generator in this "
        f"process, {args.connections} connections, {args.seconds:.0f} s per run"
    )
    try:
        lines, answered_202 = asyncio.run(measure(args, port, authorization))
        for line in lines:
            print(line)
        if server is not None:
            rss, peak = rss_kib(server.pid)
            print(f"server RSS {rss / 1024:.0f} MiB (peak {peak / 1024:.0f} MiB)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    if server is not None:
        with sqlite3.connect(workdir / "bench.db") as connection:
            stored = connection.execute("SELECT count(*) FROM workflows").fetchone()[0]
        verdict = "every 202 is on disk" if stored == answered_202 else "MISMATCH"
        print(f"202s received {answered_202:,}, workflows on disk {stored:,}: {verdict}")


if __name__ == "__main__":
    main()
