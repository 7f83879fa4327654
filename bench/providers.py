"""Benchmarks of the real-provider path: a real server sending through a local fake provider.

    .venv/bin/python bench/providers.py e2e --kind twilio --rate 300 --seconds 20
    .venv/bin/python bench/providers.py callbacks --kind twilio --count 20000

e2e        the same two-step workflow (WhatsApp refused at send -> SMS delivered) offered at
           the same fixed rate twice, on fresh servers: once from a sandbox application
           (sandbox delays 0), once from a live application routed to a fake provider in its
           own process (the WhatsApp refused with a 4xx, the SMS accepted, then its callbacks:
           two per SMS with every kind). Prints completed/s, accept -> final report latency and
           the server's CPU per workflow for both, and the ratio of the two CPU figures.
callbacks  signed status callbacks posted as fast as 64 connections can to one server
           process: one per message of --count messages sent through the fake beforehand, so
           none is a repeat. Prints accepted/s and latency percentiles.

The server, the fake, the receiver and this load generator share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from failover import percentiles, post_request, step, uuid_ms, wait_for_finals
from harness import (
    HERE,
    Server,
    cpu_seconds,
    drop_workdir,
    free_port,
    start_receiver,
    start_server,
    use_uvloop,
    wait_until_up,
)
from loadgen import build_request, run_closed, run_fixed_rate

KEY = "vCq3Vh0Yy3H8rB7x0cJd9yDxg2QmH7d8b0Pz1uS4wQ0="
ENV = {**os.environ, "OPENDISPATCH_SECRET_KEY": KEY}
ZERO_DELAY = ["--sandbox-delivered-after-ms", "0", "--sandbox-read-after-ms", "0"]
# Which channel each kind carries the first (refused) and second (delivered) message on.
CHANNELS = {
    "vonage": ("whatsapp", "sms"),
    "twilio": ("whatsapp", "sms"),
    "whatsapp-cloud": ("whatsapp", "whatsapp"),
    "telnyx": ("sms", "sms"),
}


def cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "opendispatch", *args],
        capture_output=True, text=True, check=True, env=ENV,
    ).stdout  # fmt: skip


def start_fake(kind: str, callback_url: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "fake_provider.py"), kind, callback_url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, json.loads(line)


def start_live_server(
    workdir: Path, kind: str, fake: dict[str, Any], port: int, receiver_url: str
) -> Server:
    """A live application routed to the fake, on one server process with --public-url."""
    database = f"sqlite:///{workdir / 'bench.db'}"
    sets = [item for key, value in fake["settings"].items() for item in ("--set", f"{key}={value}")]
    # The fake answers as fast as it can; the account's pacing must not be the limit.
    cli("providers", "add", "fake", "--kind", kind, "--base-url", fake["url"], *sets,
        "--set", "rate=100000", "--database", database)  # fmt: skip
    credentials = json.loads(cli(
        "apps", "create", "--name", "bench", "--live", "--status-url", f"{receiver_url}/status",
        "--final-report-url", f"{receiver_url}/final", "--allow-private-webhooks",
        "--database", database, "--json",
    ))  # fmt: skip
    for channel in set(CHANNELS[kind]):
        cli("apps", "route", credentials["application_id"], "--channel", channel,
            "--providers", "fake", "--database", database)  # fmt: skip
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "opendispatch", "serve", "--port", str(port), "--database",
         database, "--allow-private-webhooks", "--public-url", f"http://127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=ENV,
    )  # fmt: skip
    wait_until_up(f"http://127.0.0.1:{port}/health")
    return Server([process], [port], database, credentials)


def run_load(server: Server, receiver_url: str, kind: str, rate: int, seconds: float) -> str:
    first, second = CHANNELS[kind]
    workflow = [
        step(first, "447700900001", {"expiry_time": 600, "condition_status": "read"}),
        step(second, "447700900009"),
    ]
    request = post_request(server, workflow)
    cpu_before = cpu_seconds(server.process.pid)
    started_ms = time.time_ns() // 1_000_000
    result = asyncio.run(
        run_fixed_rate("", "127.0.0.1", server.ports, lambda _, r=request: r,
                       rate=rate, connections=64, seconds=seconds)
    )  # fmt: skip
    ended_ms = time.time_ns() // 1_000_000
    accepted = result.statuses[202]
    stats = wait_for_finals(receiver_url, accepted, timeout_s=120)
    cpu = cpu_seconds(server.process.pid) - cpu_before
    finals: dict[str, int] = stats["finals"]
    completed = [t for t in finals.values() if t <= ended_ms]
    latencies = [float(t - uuid_ms(u)) for u, t in finals.items()]
    cpu_ms = cpu * 1000 / max(1, len(finals))
    return json.dumps(
        {
            "accepted": accepted,
            "finals": len(finals),
            "completed_per_s": len(completed) / ((ended_ms - started_ms) / 1000),
            "latency": percentiles(latencies),
            "cpu_ms": cpu_ms,
            "statuses": dict(result.statuses),
        }
    )


def e2e(args: argparse.Namespace) -> None:
    print(
        f"e2e: WhatsApp refused -> SMS delivered, {args.rate}/s for {args.seconds:.0f} s, "
        f"one SQLite server process; provider: a fake {args.kind} in its own process"
    )
    figures: dict[str, dict[str, Any]] = {}
    for path in ("sandbox", args.kind):
        workdir = Path(tempfile.mkdtemp(prefix="od-providers-"))
        receiver, receiver_url = start_receiver()
        fake_process = None
        try:
            if path == "sandbox":
                server = start_server(
                    workdir,
                    status_url=f"{receiver_url}/status",
                    final_report_url=f"{receiver_url}/final",
                    extra=ZERO_DELAY,
                )
            else:
                port = free_port()
                fake_process, fake = start_fake(
                    args.kind, f"http://127.0.0.1:{port}/v0.1/providers/fake/callbacks"
                )
                server = start_live_server(workdir, args.kind, fake, port, receiver_url)
            try:
                figures[path] = json.loads(
                    run_load(server, receiver_url, args.kind, args.rate, args.seconds)
                )
            finally:
                server.stop()
        finally:
            receiver.terminate()
            if fake_process is not None:
                fake_process.terminate()
            drop_workdir(workdir)
        f = figures[path]
        print(
            f"  {path:<15} completed {f['completed_per_s']:>6,.0f}/s during the run, "
            f"{f['finals']:,}/{f['accepted']:,} in all; accept -> final report {f['latency']}; "
            f"server CPU {f['cpu_ms']:.2f} ms per workflow"
        )
    ratio = figures[args.kind]["cpu_ms"] / figures["sandbox"]["cpu_ms"]
    print(f"  CPU per workflow, {args.kind} path / sandbox path: {ratio:.2f}")


def callbacks(args: argparse.Namespace) -> None:
    """Pre-sign one callback per message, then post them all as fast as possible."""
    from tests.fakes.base import CallbackPlan
    from tests.fakes.telnyx import FakeTelnyx
    from tests.fakes.twilio import FakeTwilio
    from tests.fakes.vonage import FakeVonage
    from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

    kinds = {"vonage": FakeVonage, "twilio": FakeTwilio, "whatsapp-cloud": FakeWhatsAppCloud,
             "telnyx": FakeTelnyx}  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="od-callbacks-"))
    receiver, receiver_url = start_receiver()
    port = free_port()
    fake = kinds[args.kind]()
    fake.auto_callbacks = False
    fake.callback_url = f"http://127.0.0.1:{port}/v0.1/providers/fake/callbacks"
    with fake:
        info = {"url": fake.url, "settings": fake.account_settings()}
        server = start_live_server(workdir, args.kind, info, port, receiver_url)
        try:
            channel = CHANNELS[args.kind][1]
            request = post_request(server, [step(channel, "447700900009")])
            print(f"callbacks: sending {args.count:,} {channel} messages through the fake...")
            accepted = 0  # admission control may answer 503: send until `count` were taken
            while accepted < args.count:
                sent = asyncio.run(run_closed("", "127.0.0.1", server.ports, lambda _: request,
                                              connections=32, seconds=600,
                                              total=args.count - accepted))  # fmt: skip
                accepted += sent.statuses[202]
            fake.wait_for(lambda f: len(f.messages) >= args.count, timeout_s=600)
            signed = []
            for message in fake.messages[: args.count]:
                url, headers, body = fake.callback_request(
                    CallbackPlan(message=message, status="delivered")
                )
                path = url.removeprefix(f"http://127.0.0.1:{port}")
                signed.append(build_request("POST", path, body=body, headers=list(headers.items())))
            cpu_before = cpu_seconds(server.process.pid)
            result = asyncio.run(
                run_closed(
                    f"signed {args.kind} callbacks", "127.0.0.1", server.ports,
                    lambda index: signed[(index - 1) % len(signed)],
                    connections=64, seconds=120, total=len(signed),
                )
            )  # fmt: skip
            cpu = cpu_seconds(server.process.pid) - cpu_before
            print(
                f"  accepted {result.statuses[200]:,} of {len(signed):,}: {result.rate:,.0f}/s  "
                f"p50 {result.percentile_ms(0.5):.1f} ms  p99 {result.percentile_ms(0.99):.1f} ms"
                f"  max {result.percentile_ms(1.0):.1f} ms  statuses {dict(result.statuses)}"
            )
            print(f"  server CPU per callback: {cpu * 1000 / max(1, len(signed)):.3f} ms")
        finally:
            server.stop()
            receiver.terminate()


def main() -> None:
    use_uvloop()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    e2e_parser = modes.add_parser("e2e")
    e2e_parser.add_argument("--kind", choices=sorted(CHANNELS), default="twilio")
    e2e_parser.add_argument("--rate", type=int, default=300)
    e2e_parser.add_argument("--seconds", type=float, default=20)
    callbacks_parser = modes.add_parser("callbacks")
    callbacks_parser.add_argument("--kind", choices=sorted(CHANNELS), default="twilio")
    callbacks_parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    {"e2e": e2e, "callbacks": callbacks}[args.mode](args)


if __name__ == "__main__":
    main()
