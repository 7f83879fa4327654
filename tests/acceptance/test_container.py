"""The container, run as its files say, with or without a Docker engine.

Without one (the test machines have none): the Dockerfile's command line, environment, working
directory, user and health check, run here by `tests/container.LocalContainer`. With a working
engine, the image is also built and run.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.container import (
    REPO,
    LocalContainer,
    eventually,
    parse_image,
)
from tests.support import AppCredentials, two_step_workflow

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
    assert set(files) == {database, f"{database}-wal", f"{database}-shm", f"{database}.lock"}
    if container.as_image_user:
        assert {(s.st_uid, s.st_gid) for s in files.values()} == {(container.image.uid,) * 2}

    # docker stop: SIGTERM, and a clean stop within Docker's grace period (uvicorn re-raises
    # the signal once it has shut down): the database closed, its -wal and -shm gone.
    assert container.stop() in (0, -signal.SIGTERM), container.log()
    assert {path.name for path in container.data.iterdir()} == {database, f"{database}.lock"}
    assert container.healthcheck().returncode != 0  # and the check says so once it is down


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
