"""The engine imports no I/O: no database, no network, no event loop, no clock, no randomness.

Two independent checks, because each misses something the other sees:

- at run time, a fresh interpreter imports `opendispatch.engine.failover` and reports (a) every
  module that import added to `sys.modules`, against a baseline that already holds what the
  engine may use (dataclasses, enum, typing), and (b) every `import` statement executed by
  the engine's own modules, caught by a wrapper around `builtins.__import__`. (b) matters for
  `time`, which CPython loads at start-up, so it is never "new" in (a);
- statically, `ast` lists the imports written in every module under `engine/`, lazy ones in
  functions included, and they must belong to a short allowed set.

The interpreter runs with `-I -S` (no site-packages, no `.pth` hooks) and `src` on its path, so
nothing but the engine and the standard library can add modules.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

import opendispatch.engine

ENGINE_DIR = Path(opendispatch.engine.__file__).parent
SRC_DIR = ENGINE_DIR.parent.parent

FORBIDDEN = (
    "sqlite3",
    "asyncio",
    "socket",
    "http",
    "urllib.request",
    "httpx",
    "aiohttp",
    "asyncpg",
    "psycopg",
    "time",
    "datetime",
    "random",
    "threading",
    # Not named in STYLE.md, but I/O or nondeterminism all the same.
    "os",
    "uuid",
    "secrets",
    "select",
    "selectors",
    "ssl",
    "subprocess",
    "anyio",
    "uvloop",
)

# What the engine may import, and nothing else: adding a module here is a design decision.
ALLOWED_IMPORTS = frozenset(
    {
        "__future__",
        "collections.abc",
        "dataclasses",
        "enum",
        "typing",
        # A data library (C structs and JSON), no I/O: the engine's types are msgspec Structs.
        "msgspec",
        "msgspec.structs",
        "opendispatch.engine",
        "opendispatch.engine.model",
        "opendispatch.engine.failover",
        "opendispatch.errors",
    }
)

PROBE = textwrap.dedent(
    """
    import builtins, json, sys
    import __future__, dataclasses, enum, typing, collections.abc  # pure, and allowed
    import msgspec, msgspec.structs  # allowed; what it loads for its own types is not the engine's

    baseline = set(sys.modules)
    executed = []
    original_import = builtins.__import__

    def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__", "")
        if importer == "opendispatch" or importer.startswith("opendispatch."):
            executed.append([importer, name, level, list(fromlist or ())])
        return original_import(name, globals, locals, fromlist, level)

    builtins.__import__ = recording_import
    import opendispatch.engine.failover
    builtins.__import__ = original_import

    print(json.dumps({"new": sorted(set(sys.modules) - baseline), "executed": executed}))
    """
)


def probe_engine_import(src_dir: Path = SRC_DIR) -> dict[str, Any]:
    """What importing `opendispatch.engine.failover` from `src_dir` did, in a fresh interpreter."""
    site_packages = str(Path(msgspec.__file__).parent.parent)  # the one third-party dependency
    script = (
        f"import sys\nsys.path.insert(0, {site_packages!r})\n"
        f"sys.path.insert(0, {str(src_dir)!r})\n{PROBE}"
    )
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    report = json.loads(completed.stdout)
    assert isinstance(report, dict)
    return report


@pytest.fixture(scope="module")
def engine_import() -> dict[str, Any]:
    return probe_engine_import()


def is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN)


def written_imports(path: Path, root: Path = SRC_DIR) -> set[str]:
    """The absolute names of every module a source file imports, wherever the import sits."""
    package = ".".join(path.relative_to(root).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                found.add(f"{base}.{node.module}" if node.module else base)
            else:
                assert node.module is not None
                found.add(node.module)
    return found


def test_importing_the_engine_loads_no_io_module(engine_import: dict[str, Any]) -> None:
    report = engine_import

    assert "opendispatch.engine.failover" in report["new"]  # the probe did import it
    assert [module for module in report["new"] if is_forbidden(module)] == []


def test_importing_the_engine_loads_only_the_engine_and_the_errors(
    engine_import: dict[str, Any],
) -> None:
    report = engine_import

    outside = [
        module
        for module in report["new"]
        if module not in {"opendispatch", "opendispatch.errors"}
        and not module.startswith("opendispatch.engine")
    ]
    assert outside == []


def test_the_engine_executes_no_import_of_an_io_module_even_one_already_loaded(
    engine_import: dict[str, Any],
) -> None:
    report = engine_import

    engine_imports = [
        (importer, name)
        for importer, name, level, _fromlist in report["executed"]
        if importer.startswith("opendispatch.engine")
        and level == 0  # the engine writes absolute imports; the ast test covers the rest
    ]
    assert ("opendispatch.engine.failover", "opendispatch.engine.model") in engine_imports
    assert [(importer, name) for importer, name in engine_imports if is_forbidden(name)] == []
    assert [
        (importer, name) for importer, name in engine_imports if name not in ALLOWED_IMPORTS
    ] == []


def test_engine_source_imports_only_the_allowed_modules() -> None:
    sources = sorted(ENGINE_DIR.rglob("*.py"))
    assert {path.name for path in sources} >= {"__init__.py", "failover.py", "model.py"}

    imports = {path.name: written_imports(path) for path in sources}

    assert {name: found - ALLOWED_IMPORTS for name, found in imports.items()} == {
        name: set() for name in imports
    }


def test_these_checks_catch_an_engine_that_reads_the_clock_and_opens_a_database(
    tmp_path: Path,
) -> None:
    # A stand-in package shaped like ours, whose engine does what the habits forbid; `time` is
    # already loaded at start-up, so only the import hook can see that one.
    engine = tmp_path / "opendispatch" / "engine"
    engine.mkdir(parents=True)
    (tmp_path / "opendispatch" / "__init__.py").write_text("")
    (engine / "__init__.py").write_text("")
    (engine / "failover.py").write_text(
        "import time\nimport sqlite3\n\ndef now():\n    import random\n"
    )

    report = probe_engine_import(tmp_path)

    assert "sqlite3" in [module for module in report["new"] if is_forbidden(module)]
    assert "time" not in report["new"]
    executed = [name for _importer, name, _level, _fromlist in report["executed"]]
    assert [name for name in executed if is_forbidden(name)] == ["time", "sqlite3"]
    assert written_imports(engine / "failover.py", tmp_path) - ALLOWED_IMPORTS == {
        "time",
        "sqlite3",
        "random",
    }
