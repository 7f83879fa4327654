"""A dashboard page asked for once a second by a signed-in operator, beside a benchmark's load:
what "neither the dashboard nor /metrics may slow the hot path" is measured with."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import httpx

__all__ = ["DashboardPoller", "sign_in"]


def sign_in(base: str, database: str) -> httpx.Client:
    """A new operator (`opendispatch operators create`), signed in as a browser would."""
    created = subprocess.run(
        [sys.executable, "-m", "opendispatch", "operators", "create", f"bench-{time.time_ns()}",
         "--database", database],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    name = re.search(r"created operator (\S+);", created.stderr)[1]  # type: ignore[index]
    client = httpx.Client(base_url=base, timeout=60)
    form = client.get("/dashboard/login")
    login_token = re.search(r'name="login_token" value="([^"]+)"', form.text)[1]  # type: ignore[index]
    signed = client.post(
        "/dashboard/login",
        data={"login_token": login_token, "operator": name, "token": created.stdout.strip()},
    )
    if signed.status_code != 303:
        raise SystemExit(f"could not sign in to the dashboard: {signed.status_code}")
    return client


class DashboardPoller:
    """GET `path` every `interval_s` on a thread of its own, until `stop()`; keeps latencies."""

    def __init__(self, base: str, database: str, path: str, interval_s: float = 1.0) -> None:
        self._client = sign_in(base, database)
        self._path = path
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self.latencies_ms: list[float] = []
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="dashboard-poller", daemon=True)

    def start(self) -> DashboardPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopped.is_set():
            started = time.perf_counter()
            try:
                status = self._client.get(self._path).status_code
            except httpx.HTTPError:
                status = 0
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.failures += status != 200
            self._stopped.wait(max(0.0, self._interval_s - (time.perf_counter() - started)))

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=120)
        self._client.close()
