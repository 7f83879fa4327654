"""The container, run as its files say, with or without a Docker engine.

Without one (the test machines have none): the Dockerfile's command line, environment, working
directory, user and health check, run here by `tests/container.LocalContainer`; compose.yaml's
two servers started at once on the real PostgreSQL with the environment compose gives them;
and the committed HAProxy config, with only its addresses changed to this machine's, in front
of them when `haproxy` is installed. With a working engine, the image is also built and run.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.container import (
    PROXY_CONFIG,
    REPO,
    LocalContainer,
    eventually,
    load_compose,
    opendispatch_services,
    parse_image,
    proxy_config_here,
    readme_dotenv,
)
from tests.databases import TestDatabase
from tests.support import AppCredentials, free_port, two_step_workflow

pytestmark = pytest.mark.slow

READ_THEN_COMPLETED = "447700900005"  # the sandbox delivers it, then it is read


@pytest.fixture
def containers() -> Iterator[list[LocalContainer]]:
    made: list[LocalContainer] = []
    yield made
    for container in made:
        container.remove()


APPS_CREATE = (
    "apps", "create", "--name", "shop", "--status-url", "http://127.0.0.1:9/status",
    "--allow-private-webhooks", "--json",
)  # fmt: skip
# The status URL receives nothing (the servers refuse loopback webhooks): nothing leaves here.


def credentials(created: subprocess.CompletedProcess[str]) -> AppCredentials:
    assert created.returncode == 0, created.stderr
    return AppCredentials.from_json(json.loads(created.stdout))


def test_image_serves_on_every_interface_as_its_user_with_the_database_in_the_volume(
    containers: list[LocalContainer],
) -> None:
    container = LocalContainer(parse_image())
    containers.append(container)
    container.start().wait_ready()

    # 0.0.0.0, not serve's default 127.0.0.1: another address of the machine reaches it too.
    assert httpx.get(f"http://127.0.0.2:{container.port}/health").status_code == 200
    check = container.healthcheck()
    assert check.returncode == 0, check.stderr

    # As the README says: `docker exec opendispatch opendispatch apps create ...`, while it runs.
    application = credentials(container.exec("opendispatch", *APPS_CREATE))
    accepted = httpx.post(
        f"{container.url}/v0.1/dispatch",
        json=two_step_workflow(READ_THEN_COMPLETED),
        headers=application.basic(),
    )
    assert accepted.status_code == 202, accepted.text

    # Everything the database writes is in the volume, and the image's user owns it.
    files = {path.name: path.stat() for path in container.data.iterdir()}
    database = "opendispatch.db"
    assert set(files) == {database, f"{database}-wal", f"{database}-shm", f"{database}.lock",
                          f"{database}.wake"}  # fmt: skip
    if container.as_image_user:
        assert {(s.st_uid, s.st_gid) for s in files.values()} == {(container.image.uid,) * 2}

    # docker stop: SIGTERM, and a clean stop within Docker's grace period (uvicorn re-raises
    # the signal once it has shut down): the database closed, its -wal, -shm and wake socket
    # gone.
    assert container.stop() in (0, -signal.SIGTERM), container.log()
    assert {path.name for path in container.data.iterdir()} == {database, f"{database}.lock"}
    assert container.healthcheck().returncode != 0  # and the check says so once it is down


# -- compose: two servers on PostgreSQL, one port in front -------------------------------------


def start_compose_servers(
    database: TestDatabase, containers: list[LocalContainer], directory: Path
) -> dict[str, LocalContainer]:
    """compose.yaml's OpenDispatch services, with the environment compose gives them (the
    secrets from the .env the README's command writes); the `postgres` service is the test's
    PostgreSQL, in an empty schema. Both start at the same moment, so both migrate at once."""
    image = parse_image()
    servers = {}
    for name, service in opendispatch_services(load_compose(readme_dotenv(directory))).items():
        environment = {key: str(value) for key, value in service["environment"].items()}
        environment["OPENDISPATCH_DATABASE"] = database.url
        servers[name] = LocalContainer(image, environment)
        containers.append(servers[name])
    for server in servers.values():
        server.start()
    for server in servers.values():
        server.wait_ready()
    return servers


def workflow_status(url: str, dispatch_uuid: str, application: AppCredentials) -> str:
    response = httpx.get(f"{url}/v0.1/dispatch/{dispatch_uuid}", headers=application.basic())
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def test_compose_servers_start_together_and_each_serves_what_the_other_accepted(
    postgres_database: TestDatabase, containers: list[LocalContainer], tmp_path: Path
) -> None:
    servers = list(start_compose_servers(postgres_database, containers, tmp_path).values())
    # As the README says: `docker compose run --rm opendispatch-1 apps create ...`.
    application = credentials(servers[0].run(*APPS_CREATE))

    for accepting, other in (servers, servers[::-1]):
        accepted = httpx.post(
            f"{accepting.url}/v0.1/dispatch",
            json=two_step_workflow(READ_THEN_COMPLETED),
            headers=application.basic(),
        )
        assert accepted.status_code == 202, accepted.text
        dispatch_uuid = accepted.json()["dispatch_uuid"]
        workflow_status(other.url, dispatch_uuid, application)  # 200 there at once
        eventually(
            lambda u=dispatch_uuid, o=other: workflow_status(o.url, u, application) == "completed",
            timeout=30,
        )


@pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="haproxy is not installed (apt-get install haproxy): the proxy in front of the "
    "compose servers is checked only as a file (tests/unit/test_container_files.py)",
)
def test_proxy_config_balances_over_both_servers_and_routes_around_a_stopped_one(
    postgres_database: TestDatabase, containers: list[LocalContainer], tmp_path: Path
) -> None:
    servers = start_compose_servers(postgres_database, containers, tmp_path)
    application = credentials(servers["opendispatch-2"].run(*APPS_CREATE))
    proxy_port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        proxy_config_here(
            PROXY_CONFIG.read_text(),
            bind=f"127.0.0.1:{proxy_port}",
            addresses={name: f"127.0.0.1:{server.port}" for name, server in servers.items()},
        )
    )
    log_path = tmp_path / "haproxy.log"
    with log_path.open("wb") as log:
        proxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        eventually(lambda: _answers(f"{proxy_url}/health"), timeout=15)
        accepted = []
        with httpx.Client(base_url=proxy_url, headers=application.basic(), timeout=10) as client:
            for _ in range(6):
                response = client.post("/v0.1/dispatch", json=two_step_workflow())
                assert response.status_code == 202, response.text
                accepted.append(response.json()["dispatch_uuid"])
        eventually(lambda: all(f"opendispatch/{name} " in _text(log_path) for name in servers))

        stopped, running = servers.values()
        assert stopped.stop() in (0, -signal.SIGTERM)
        with httpx.Client(base_url=proxy_url, headers=application.basic(), timeout=10) as client:
            for dispatch_uuid in accepted:
                assert client.get(f"/v0.1/dispatch/{dispatch_uuid}").status_code == 200
            assert client.post("/v0.1/dispatch", json=two_step_workflow()).status_code == 202
        assert running.server is not None
        assert running.server.poll() is None
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


# -- with a Docker engine ----------------------------------------------------------------------


def _docker_unavailable() -> str | None:
    """Why the image cannot be built here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if info.returncode != 0:
        return (
            "no Docker engine: " + (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        )
    return None


DOCKER_UNAVAILABLE = _docker_unavailable()


@pytest.mark.skipif(
    DOCKER_UNAVAILABLE is not None,
    reason=f"{DOCKER_UNAVAILABLE}; the image's command line, user, volume and health check are "
    "run without it by the tests above",
)
def test_docker_builds_the_image_and_it_becomes_healthy() -> None:
    base = parse_image().bases[-1]
    pulled = subprocess.run(["docker", "pull", base], capture_output=True, timeout=300, check=False)
    if pulled.returncode != 0:
        pytest.skip(f"the engine cannot pull {base}: {pulled.stderr.decode().strip()[-200:]}")
    tag = f"opendispatch-test:{uuid.uuid4().hex[:12]}"
    name = tag.replace(":", "-")
    subprocess.run(["docker", "build", "--tag", tag, str(REPO)], check=True, timeout=900)
    try:
        subprocess.run(
            ["docker", "run", "--detach", "--name", name, "--publish", "127.0.0.1::8080", tag],
            check=True,
            timeout=60,
        )

        def health() -> str:
            return subprocess.run(
                ["docker", "inspect", "--format", "{{.State.Health.Status}}", name],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout.strip()  # fmt: skip

        eventually(lambda: health() == "healthy", timeout=90)
        listing = subprocess.run(
            ["docker", "exec", name, "sh", "-c", "id -u && ls -n /data"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        assert listing.splitlines()[0] == "10001"
        assert "opendispatch.db.lock" in listing
        assert " 10001 10001 " in listing
    finally:
        subprocess.run(["docker", "rm", "--force", "--volumes", name], check=False, timeout=60)
        subprocess.run(["docker", "image", "rm", tag], check=False, timeout=60)
