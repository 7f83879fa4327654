"""What every benchmark needs: a real server process, an application, a receiver, memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    database: Path
    credentials: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(
    workdir: Path,
    *,
    status_url: str = "http://127.0.0.1:9/status",
    final_report_url: str | None = None,
    extra: list[str] | None = None,
) -> Server:
    database = workdir / "bench.db"
    url = f"sqlite:///{database}"
    create = [sys.executable, "-m", "opendispatch", "apps", "create", "--name", "bench",
              "--status-url", status_url, "--database", url, "--json"]  # fmt: skip
    if final_report_url:
        create += ["--final-report-url", final_report_url]
    credentials = json.loads(subprocess.run(create, capture_output=True, check=True).stdout)
    port = free_port()
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opendispatch",
            "serve",
            "--port",
            str(port),
            "--database",
            url,
            *(extra or []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until_up(f"http://127.0.0.1:{port}/health")
    return Server(process, port, database, credentials)


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "receiver.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/stats")
    return process, url


def use_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def cpu_count() -> int:
    return os.cpu_count() or 1
