"""The Dockerfile, .dockerignore, compose.yaml and the proxy's config agree with each other and
with the server: read as Docker, compose and HAProxy read them (no engine needed). What they
do when run is tests/acceptance/test_container.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.container import (
    COMPOSE,
    PROXY_CONFIG,
    load_compose,
    opendispatch_services,
    parse_image,
    proxy_binds,
    proxy_lines,
    proxy_servers,
    readme_container_commands,
    readme_dotenv,
)
from tests.support import REPO


@pytest.fixture
def dotenv(tmp_path: Path) -> dict[str, str]:
    """The .env file the README's command writes."""
    return readme_dotenv(tmp_path)


def test_image_is_slim_python_running_serve_on_every_interface_as_a_non_root_user() -> None:
    image = parse_image()
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    for base in image.bases:
        name, _, tag = base.partition(":")
        assert name == "python", base
        assert tag.endswith("-slim"), base
        assert tag.removesuffix("-slim") in ("3.11", "3.12"), f"{base} vs {requires}"
    assert image.entrypoint + image.cmd == ["opendispatch", "serve"]
    assert image.uid != 0
    assert image.gid != 0
    assert image.env["OPENDISPATCH_HOST"] == "0.0.0.0"
    assert image.expose == [image.env["OPENDISPATCH_PORT"]]
    assert image.workdir == "/data"
    assert image.volumes == ["/data"]
    # The database, and so its -wal, -shm and .lock files beside it, in the volume.
    assert image.env["OPENDISPATCH_DATABASE"] == "sqlite:////data/opendispatch.db"
    owner, group, mode = image.data_directory_mode("/data")
    assert (owner, group) == (image.uid, image.gid)
    assert mode & 0o700 == 0o700
    assert image.env["PATH"].startswith("/opt/opendispatch/bin:")


def test_healthcheck_gives_up_before_docker_does() -> None:
    """Docker kills a check after `--timeout`: the request's own timeout must be shorter, so a
    hung server reads as unhealthy from the check rather than from a killed process."""
    image = parse_image()
    command = " ".join(image.healthcheck)
    assert "/health" in command
    assert "OPENDISPATCH_PORT" in command
    request_timeout = float(command.rsplit("timeout=", 1)[1].split(")")[0])
    assert request_timeout < float(image.healthcheck_options["timeout"].rstrip("s"))


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the context is an allow-list: everything out, then what is used"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied = {source.rstrip("/") for sources in parse_image().copies for source in sources}
    assert copied == allowed
    for source in copied:
        assert (REPO / source).exists(), source


def test_compose_servers_use_the_postgres_service_with_its_credentials(
    dotenv: dict[str, str],
) -> None:
    compose = load_compose(dotenv)
    servers = opendispatch_services(compose)
    assert len(servers) == 2
    postgres = compose["services"]["postgres"]
    assert postgres["healthcheck"]["test"]
    for server in servers.values():
        url = urlsplit(server["environment"]["OPENDISPATCH_DATABASE"])
        assert url.scheme == "postgresql"
        assert (url.hostname, url.port) == ("postgres", 5432)
        assert url.username == postgres["environment"]["POSTGRES_USER"]
        assert url.password == postgres["environment"]["POSTGRES_PASSWORD"]
        assert url.path == "/" + postgres["environment"]["POSTGRES_DB"]
        assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
        secret_key = server["environment"]["OPENDISPATCH_SECRET_KEY"]
        assert secret_key == dotenv["OPENDISPATCH_SECRET_KEY"]
        assert "ports" not in server, "only the proxy publishes a port"


@pytest.mark.parametrize("missing", ["POSTGRES_PASSWORD", "OPENDISPATCH_SECRET_KEY"])
def test_compose_refuses_to_start_without_its_secrets(missing: str, dotenv: dict[str, str]) -> None:
    """No default password or key: `docker compose up` stops and names the missing one."""
    given = {name: value for name, value in dotenv.items() if name != missing}
    with pytest.raises(ValueError, match=missing):
        load_compose(given)
    with pytest.raises(ValueError, match=missing):
        load_compose({**given, missing: ""})


def test_proxy_publishes_one_port_and_balances_over_both_servers_on_their_health(
    dotenv: dict[str, str],
) -> None:
    compose = load_compose(dotenv)
    image = parse_image()
    proxy = compose["services"]["proxy"]
    [published] = proxy["ports"]
    host_port, _, container_port = published.rpartition(":")
    assert host_port == "8080"  # OPENDISPATCH_PUBLISHED_PORT's default
    config_mount = next(v for v in proxy["volumes"] if v.endswith("haproxy.cfg:ro"))
    assert (REPO / config_mount.split(":")[0]).resolve() == PROXY_CONFIG

    text = PROXY_CONFIG.read_text()
    assert proxy_binds(text) == [f":{container_port}"]
    port = image.env["OPENDISPATCH_PORT"]
    assert proxy_servers(text) == {
        name: f"{name}:{port}" for name in opendispatch_services(compose)
    }
    lines = [" ".join(words) for words in proxy_lines(text)]
    assert "balance roundrobin" in lines
    assert "option httpchk GET /health" in lines
    assert "http-check expect status 200" in lines


def test_readme_container_commands_name_what_the_files_define(dotenv: dict[str, str]) -> None:
    """The README's docker commands use the image's port, volume and command, and compose's
    service names; its .env holds exactly the secrets compose requires."""
    image = parse_image()
    commands = readme_container_commands()
    [run] = [command for command in commands if command.startswith("docker run ")]
    port = image.env["OPENDISPATCH_PORT"]
    assert f" -p {port}:{port} " in run
    [volume] = re.findall(r" -v (\S+) ", run)
    assert volume.split(":")[1] in image.volumes
    name = re.search(r"--name (\S+)", run)
    assert name is not None
    [exec_] = [command for command in commands if command.startswith("docker exec ")]
    assert exec_.startswith(f"docker exec {name[1]} {image.entrypoint[0]} apps create ")

    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert set(dotenv) == required
    services = opendispatch_services(load_compose(dotenv))
    [compose_run] = [command for command in commands if command.startswith("docker compose run")]
    assert compose_run.split()[4] in services
    assert compose_run.split()[5:7] == ["apps", "create"]
