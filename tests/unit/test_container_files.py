"""The Dockerfile and .dockerignore agree with each other and with the server, read as Docker
reads them (no engine needed). What the image does when run is
tests/acceptance/test_container.py."""

from __future__ import annotations

import tomllib

from tests.container import (
    parse_image,
)
from tests.support import REPO


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
