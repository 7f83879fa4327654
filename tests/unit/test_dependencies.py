"""Every library the server imports is a runtime dependency, not only a test one: the README's
first command installs without the test extras, and CI (which installs them) cannot tell."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Import names that differ from their distribution's, or come with another one.
DISTRIBUTION = {
    "jwt": "pyjwt",
    "pydantic_core": "pydantic",
    "openapi_ui_bundles": "openapi-ui-bundles",
}


def imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "opendispatch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"opendispatch"}


def test_every_imported_library_is_a_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=;\[ ]", spec)[0].lower() for spec in project["dependencies"]}
    needed = {DISTRIBUTION.get(name, name).lower() for name in imported_top_levels()}
    assert needed - declared == set()
