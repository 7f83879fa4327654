"""What every benchmark needs: a real server process, an application, a receiver, memory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

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


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User plus system CPU time a process, or one of its threads, has used so far (from
    /proc). A server's event loop runs on its main thread, whose id is the process's."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_cpu_seconds() -> float:
    """CPU time every core of the machine has spent busy so far (from /proc/stat): what a
    run costs in all, the database server's, load generator's and receiver's included."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """One or more `opendispatch serve` processes on one database (`process` is the first)."""

    processes: list[subprocess.Popen[bytes]]
    ports: list[int]
    database: str  # the URL the servers use
    credentials: dict[str, str]

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.processes[0]

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sqlite_path(self) -> Path | None:
        return (
            Path(self.database.removeprefix("sqlite:///"))
            if self.database.startswith("sqlite:")
            else None
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


class MetricsPoller:
    """`GET /metrics` on each server once a second, from a thread, while a benchmark runs
    (issue 13: scraping must not slow the hot path). `with MetricsPoller(ports) as poller:`;
    then `poller.summary()`."""

    def __init__(self, ports: list[int], every_s: float = 1.0) -> None:
        self._ports = ports
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-poller", daemon=True)
        self.answers: dict[int, int] = {}
        self.slowest_ms = 0.0

    def __enter__(self) -> MetricsPoller:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(self._every_s):
                for port in self._ports:
                    started = time.perf_counter()
                    try:
                        status = client.get(f"http://127.0.0.1:{port}/metrics").status_code
                    except httpx.TransportError:
                        status = 0
                    self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)
                    self.answers[status] = self.answers.get(status, 0) + 1

    def summary(self) -> str:
        return (
            f"GET /metrics polled once a second: {self.answers}, slowest {self.slowest_ms:.1f} ms"
        )


def _private_webhooks_flag() -> list[str]:
    """`--allow-private-webhooks` (the receivers are on 127.0.0.1) where this version has it,
    so the same benchmark runs against an older checkout for a before/after comparison."""
    global _PRIVATE_FLAG
    if _PRIVATE_FLAG is None:
        help_text = subprocess.run(
            [sys.executable, "-m", "opendispatch", "serve", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        _PRIVATE_FLAG = (
            ["--allow-private-webhooks"] if "--allow-private-webhooks" in help_text else []
        )
    return _PRIVATE_FLAG


_PRIVATE_FLAG: list[str] | None = None


def create_app(
    database: str, name: str, status_url: str, final_report_url: str | None = None
) -> dict[str, str]:
    """An application, as `opendispatch apps create --json` prints it."""
    create = [sys.executable, "-m", "opendispatch", "apps", "create", "--name", name,
              "--status-url", status_url, *_private_webhooks_flag(), "--database", database,
              "--json"]  # fmt: skip
    if final_report_url:
        create += ["--final-report-url", final_report_url]
    result: dict[str, str] = json.loads(
        subprocess.run(create, capture_output=True, check=True).stdout
    )
    return result


def start_server(
    workdir: Path,
    *,
    status_url: str = "http://127.0.0.1:9/status",
    final_report_url: str | None = None,
    extra: list[str] | None = None,
    database: str | None = None,
    processes: int = 1,
) -> Server:
    """`database`: an SQLite file in `workdir` by default, or a PostgreSQL URL (one schema)."""
    url = database or f"sqlite:///{workdir / 'bench.db'}"
    credentials = create_app(url, "bench", status_url, final_report_url)
    started, ports = [], []
    for index in range(processes):
        port = free_port()
        log = (workdir / f"server-{index}.log").open("wb")
        command = [sys.executable, "-m", "opendispatch", "serve", "--port", str(port),
                   "--database", url, *_private_webhooks_flag(), *(extra or [])]  # fmt: skip
        started.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        ports.append(port)
    for port in ports:
        wait_until_up(f"http://127.0.0.1:{port}/health")
    return Server(started, ports, url, credentials)


def fresh_postgres_schema(dsn: str) -> str:
    """A new, empty schema in `dsn`'s database; returns the URL that uses it."""
    import asyncio
    import uuid

    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        connection = await asyncpg.connect(dsn)
        await connection.execute(f"CREATE SCHEMA {schema}")
        await connection.close()

    asyncio.run(create())
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


def start_receiver(*, hang: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """bench/receiver.py in its own process; `hang`: one that accepts and never answers
    (`GET /stats` still answers, with the requests it swallowed)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "receiver.py"), str(port), *(["--hang"] if hang else [])],
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


def query(database: str, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read a benchmark's database afterwards, whichever kind it is (`?` placeholders)."""
    if database.startswith("sqlite:"):
        import sqlite3

        path = database.removeprefix("sqlite:///")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            return [tuple(row) for row in connection.execute(sql, parameters).fetchall()]
    import asyncio

    import asyncpg

    numbered = sql
    for index in range(1, len(parameters) + 1):
        numbered = numbered.replace("?", f"${index}", 1)

    async def fetch() -> list[tuple[object, ...]]:
        connection = await asyncpg.connect(database)
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *parameters)]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def drop_workdir(workdir: Path) -> None:
    """Remove a run's folder (its SQLite file, tens of MB, and the server's log), or keep it
    when OPENDISPATCH_BENCH_KEEP_SCHEMA is set, as `drop_postgres_schema` keeps its tables.
    Runs left behind filled /tmp by gigabytes over a session of `compare`."""
    if os.environ.get("OPENDISPATCH_BENCH_KEEP_SCHEMA"):
        print(f"kept {workdir}")
        return
    shutil.rmtree(workdir, ignore_errors=True)


def drop_postgres_schema(url: str) -> None:
    """Undo `fresh_postgres_schema` (nothing for an SQLite URL; nothing either when
    OPENDISPATCH_BENCH_KEEP_SCHEMA is set, to look at the tables after a run)."""
    if "search_path=" not in url:
        return
    if os.environ.get("OPENDISPATCH_BENCH_KEEP_SCHEMA"):
        print(f"kept schema {url.rpartition('search_path=')[2]}")
        return
    import asyncio

    import asyncpg

    base, _, schema = url.rpartition("search_path=")
    dsn = base.rstrip("?&")

    async def drop() -> None:
        connection = await asyncpg.connect(dsn)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()

    asyncio.run(drop())
