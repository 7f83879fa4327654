"""The container, without a Docker engine: the Dockerfile and compose.yaml read as Docker reads
them, and their command lines run here as a container would run them.

No Docker engine runs on the test machines (the client answers, the daemon does not), so the
image is never built there. What can be checked without one is what the image *does* once
built: its entrypoint and command, with the environment its `ENV` lines give, in the working
directory its `WORKDIR` names, as the user its `USER` names, and its `HEALTHCHECK` command
against that. `LocalContainer` does exactly that, mapping the image's paths to this machine's:
the image's virtual environment (`/opt/opendispatch`) is the one running the tests, and the
`/data` volume is a fresh directory made as the Dockerfile makes it (owner and mode from its
`install --directory` line). Only the port differs: each server gets a free one
(`OPENDISPATCH_PORT`, as `docker run -e` would set it), since the tests share one network.

The Dockerfile is parsed by `dockerfile`, which wraps Docker's own (BuildKit's) parser; the
compose file by PyYAML, with compose's `${VAR}` interpolation applied as `docker compose`
applies it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerfile
import yaml

from tests.support import REPO, free_port, wait_until_healthy

__all__ = [
    "COMPOSE",
    "DOCKERFILE",
    "PROXY_CONFIG",
    "Image",
    "LocalContainer",
    "eventually",
    "interpolate",
    "load_compose",
    "opendispatch_services",
    "parse_image",
    "readme_container_commands",
    "readme_dotenv",
]

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
# Where the Dockerfile installs OpenDispatch; here, the environment running the tests.
IMAGE_PREFIX = "/opt/opendispatch"


@dataclass
class Image:
    """The final stage of the Dockerfile, as `docker build` would configure the image."""

    bases: list[str] = field(default_factory=list)  # every FROM, in order
    copies: list[tuple[str, ...]] = field(default_factory=list)  # from the context, any stage
    runs: list[str] = field(default_factory=list)  # RUN lines of the final stage
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    volumes: list[str] = field(default_factory=list)
    user: str = "root"
    expose: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    @property
    def uid(self) -> int:
        return int(self.user.split(":")[0])

    @property
    def gid(self) -> int:
        return int(self.user.partition(":")[2] or self.user)

    def data_directory_mode(self, path: str) -> tuple[int, int, int]:
        """(uid, gid, mode) that the final stage's `install --directory` gives `path`."""
        pattern = (
            r"install --directory --owner=(\d+) --group=(\d+) --mode=(0[0-7]{3}) "
            + re.escape(path)
            + r"(?:\s|$)"
        )
        for run in self.runs:
            found = re.search(pattern, run)
            if found:
                return int(found[1]), int(found[2]), int(found[3], 8)
        raise AssertionError(f"the Dockerfile's final stage does not make {path} for its user")


# What the python:3.11-slim base image sets that the Dockerfile's ENV lines build on.
PYTHON_SLIM_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def parse_image(path: Path = DOCKERFILE) -> Image:
    """Read the Dockerfile with Docker's parser. Each FROM starts a stage afresh; what is
    returned is the last stage, the image. `ENV` values are expanded (`$PATH`) against the
    base image's environment and the earlier `ENV` lines, as Docker does."""
    image = Image()
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            image = Image(bases=[*image.bases, command.value[0]], copies=image.copies)
            image.env = dict(PYTHON_SLIM_ENV)
        elif command.cmd == "COPY":
            if not any(flag.startswith("--from=") for flag in command.flags):
                image.copies.append(tuple(command.value[:-1]))  # from the build context
        elif command.cmd == "RUN":
            image.runs.append(" ".join(command.value))
        elif command.cmd == "ENV":
            pairs = command.value
            for name, value in zip(pairs[0::2], pairs[1::2], strict=True):
                assert not set(value) & set("\"'\\"), f"ENV {name}: keep values unquoted"
                image.env[name] = _expand(value, image.env)
        elif command.cmd == "WORKDIR":
            image.workdir = command.value[0]
        elif command.cmd == "VOLUME":
            image.volumes.extend(command.value)
        elif command.cmd == "USER":
            image.user = command.value[0]
        elif command.cmd == "EXPOSE":
            image.expose.extend(command.value)
        elif command.cmd == "HEALTHCHECK":
            assert command.json, "HEALTHCHECK CMD in exec form"
            assert command.value[0] == "CMD", "HEALTHCHECK CMD in exec form"
            image.healthcheck = list(command.value[1:])
            image.healthcheck_options = dict(flag.lstrip("-").split("=") for flag in command.flags)
        elif command.cmd in ("ENTRYPOINT", "CMD"):
            assert command.json, f"{command.cmd} in exec form (signals reach the server)"
            setattr(image, command.cmd.lower(), list(command.value))
        else:
            raise AssertionError(f"the tests do not know what {command.cmd} does to an image")
    return image


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda found: env.get(found[1], ""), value)


# -- compose ------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>\w+))"
)


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
    `${VAR?error}` and `$$`, as `docker compose` applies them to the file's values."""

    def replace(found: re.Match[str]) -> str:
        if found["escaped"]:
            return "$"
        name = found["braced"] or found["plain"]
        value = variables.get(name)
        op, arg = found["op"], found["arg"] or ""
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and unset:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def load_compose(variables: Mapping[str, str], path: Path = COMPOSE) -> dict[str, Any]:
    """compose.yaml as `docker compose config` would resolve it (anchors and merge keys by
    YAML, then interpolation of every string)."""

    def resolve(node: Any) -> Any:
        if isinstance(node, str):
            return interpolate(node, variables)
        if isinstance(node, dict):
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(yaml.safe_load(path.read_text()))
    return resolved


def opendispatch_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile."""
    return {name: svc for name, svc in compose["services"].items() if svc.get("build") == "."}


# -- the README's "Container" section -----------------------------------------------------------

README = REPO / "README.md"


def readme_container_commands() -> list[str]:
    """The shell commands of the README's "Container" section, one per command, with their
    continuation lines joined and their whitespace collapsed."""
    section = README.read_text().split("\n## Container\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    lines = "".join(blocks).replace("\\\n", " ").splitlines()
    return [" ".join(line.split()) for line in lines if line.strip()]


def readme_dotenv(directory: Path) -> dict[str, str]:
    """Run the README's command that writes `.env` in `directory`; returns what it wrote."""
    [command] = [line for line in readme_container_commands() if line.endswith("> .env")]
    subprocess.run(["bash", "-c", command], cwd=directory, check=True, timeout=30)
    lines = (directory / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip())


# -- the proxy in front ------------------------------------------------------------------------

PROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"


def proxy_lines(text: str) -> list[list[str]]:
    """haproxy.cfg as words per line, comments and blank lines left out."""
    return [line.split("#")[0].split() for line in text.splitlines() if line.split("#")[0].strip()]


def proxy_servers(text: str) -> dict[str, str]:
    """`server NAME ADDRESS ...` lines: name -> address."""
    return {words[1]: words[2] for words in proxy_lines(text) if words[0] == "server"}


def proxy_binds(text: str) -> list[str]:
    return [words[1] for words in proxy_lines(text) if words[0] == "bind"]


def proxy_config_here(text: str, bind: str, addresses: Mapping[str, str]) -> str:
    """The committed config with only its addresses changed to this machine's: the one it
    listens on and the servers' (what Docker's network and DNS give it in compose)."""
    lines = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["bind"]:
            line = line.replace(words[1], bind)
        elif words[:1] == ["server"]:
            line = line.replace(words[2], addresses[words[1]])
        lines.append(line)
    return "\n".join(lines) + "\n"


# -- the image's command line, run here ---------------------------------------------------------


class LocalContainer:
    """One container of the image, as processes on this machine (see the module docstring)."""

    def __init__(self, image: Image, environment: Mapping[str, str] | None = None) -> None:
        self.image = image
        self.data = Path(tempfile.mkdtemp(prefix="opendispatch-data-"))
        uid, gid, mode = image.data_directory_mode("/data")
        os.chmod(self.data, mode)
        self.as_image_user = os.geteuid() == 0
        if self.as_image_user:
            os.chown(self.data, uid, gid)
        self.port = free_port()
        # The image's ENV, then the container's (compose `environment:`, `docker run -e`).
        self.environment = {**image.env, **(environment or {}), "OPENDISPATCH_PORT": str(self.port)}
        self.server: subprocess.Popen[bytes] | None = None
        self.log_path = self.data.with_name(self.data.name + ".log")

    # Paths: the image's, mapped to this machine's.

    def local(self, value: str) -> str:
        value = value.replace(IMAGE_PREFIX, sys.prefix)
        return re.sub(r"(?<![\w.])/data(?=/|$)", str(self.data), value)

    def env(self) -> dict[str, str]:
        env = {name: self.local(value) for name, value in self.environment.items()}
        env["HOME"] = self.local("/data")  # the image user's home, from its passwd entry
        if "PYTHONPATH" in os.environ:  # the tests' own source, when run from a checkout
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env

    def argv(self, command: Sequence[str]) -> list[str]:
        """`command` as the container would run it: the program found on the image's PATH,
        run as the image's user. Running as root, the user's identity is taken with only one
        privilege kept, reading and searching (not writing) what it could not: the tests'
        Python may live under a directory only root can enter, where the image's is readable
        by all. Whether it can *write* /data is exactly what the image's user would face."""
        env = self.env()
        program = shutil.which(command[0], path=env["PATH"])
        assert program is not None, (
            f"{command[0]!r} is not on the image's PATH mapped here ({env['PATH']}): "
            "install the package (pip install -e .) into the environment running the tests"
        )
        argv = [program, *command[1:]]
        if not self.as_image_user:
            return argv
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) runs the command as the image's user"
        return [
            setpriv,
            f"--reuid={self.image.uid}",
            f"--regid={self.image.gid}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            "--",
            *argv,
        ]

    def exec(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`docker exec`: a command run in this container."""
        return subprocess.run(
            self.argv(command),
            env=self.env(),
            cwd=self.local(self.image.workdir),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """`docker run IMAGE ARGS` or `docker compose run SERVICE ARGS`: the image's entrypoint
        with other arguments in place of its CMD."""
        return self.exec(*self.image.entrypoint, *arguments)

    def start(self) -> LocalContainer:
        """Start the container's own command: ENTRYPOINT followed by CMD."""
        with self.log_path.open("wb") as log:
            self.server = subprocess.Popen(
                self.argv([*self.image.entrypoint, *self.image.cmd]),
                env=self.env(),
                cwd=self.local(self.image.workdir),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.server is not None
        wait_until_healthy(self.server, self.url, self.log, timeout)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK command, run in the container as Docker runs it."""
        timeout = float(self.image.healthcheck_options["timeout"].rstrip("s"))
        return self.exec(*self.image.healthcheck, timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """`docker stop`: SIGTERM, then SIGKILL after Docker's 10 s grace period."""
        assert self.server is not None
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        return self.server.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def remove(self) -> None:
        """`docker rm -v`: stop, and drop the volume and the log."""
        if self.server is not None:
            self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


def eventually(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Wait for something separate processes do in real time (no clock of ours drives them)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what or condition}"
        time.sleep(0.1)
